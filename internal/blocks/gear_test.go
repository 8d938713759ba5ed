package blocks

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	"github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
	"pgregory.net/rapid"
)

// cuts returns the chunk lengths algo cuts data into with tandem's sizes.
func cuts(t interface{ Fatalf(string, ...any) }, algo string, data []byte) []int {
	ch, err := chunkers.NewChunker(algo, bytes.NewReader(data), &chunkers.ChunkerOpts{MinSize: MinSize, NormalSize: NormalSize, MaxSize: MaxSize})
	if err != nil {
		t.Fatalf("%s: %v", algo, err)
	}
	var out []int
	for {
		c, err := ch.Next()
		if len(c) > 0 {
			out = append(out, len(c))
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", algo, err)
		}
	}
}

// TestGearMatchesLibrary: the fast loop cuts every input exactly where
// the library's FastCDC does (cut points are part of the protocol), on
// random data, on data of little entropy (cuts at the normal and maximum
// sizes) and at every length around the size bounds.
func TestGearMatchesLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		seed := rapid.Uint64().Draw(t, "seed")
		n := rapid.IntRange(0, 3<<20).Draw(t, "size")
		alphabet := rapid.IntRange(1, 256).Draw(t, "alphabet")
		r := rand.New(rand.NewPCG(seed, 7))
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.IntN(alphabet))
		}
		want, got := cuts(t, algorithm, data), cuts(t, gearAlgorithm, data)
		if !slices.Equal(got, want) {
			t.Fatalf("gear cuts %v, the library %v", got, want)
		}
	})
	data := randBytes(2*MaxSize+10, 11)
	for _, n := range []int{0, 1, MinSize - 1, MinSize, MinSize + 1, NormalSize - 1, NormalSize, NormalSize + 1, MaxSize - 1, MaxSize, MaxSize + 1, 2 * MaxSize} {
		for _, d := range [][]byte{data[:n], make([]byte, n)} {
			if got, want := cuts(t, gearAlgorithm, d), cuts(t, algorithm, d); !slices.Equal(got, want) {
				t.Fatalf("%d bytes: gear cuts %v, the library %v", n, got, want)
			}
		}
	}
}

// TestScanStepsLikeOneByteAtATime: the two-byte steps find the same first
// cut and leave the same hash as one byte at a time, for every length up
// to 70 (odd ones end with a single byte), masks that cut often (so cuts
// fall on both bytes of a step and on the last byte) and never, and any
// starting hash.
func TestScanStepsLikeOneByteAtATime(t *testing.T) {
	ref := func(fp uint64, d []byte, mask uint64) (uint64, int) {
		for i, b := range d {
			fp = fp<<1 + fastcdc.G[b]
			if fp&mask == 0 {
				return fp, i
			}
		}
		return fp, -1
	}
	data := randBytes(4096, 3)
	cuts := 0
	for _, mask := range []uint64{spacedMask(1), spacedMask(2), spacedMask(3), spacedMask(5), ^uint64(0)} {
		for _, fp0 := range []uint64{0, 1, 0xdeadbeefcafe, ^uint64(0)} {
			for off := 0; off < 200; off += 7 {
				for n := 0; n <= 70; n++ {
					d := data[off : off+n]
					wantFP, want := ref(fp0, d, mask)
					fp, got := scan(fp0, d, mask)
					ok := got >= 0
					if got != want || (!ok && fp != wantFP) {
						t.Fatalf("mask %x, hash %x, %d bytes at %d: cut at %d (hash %x), want %d (hash %x)", mask, fp0, n, off, got, fp, want, wantFP)
					}
					if ok && got == n-1 && n%2 == 1 {
						cuts++
					}
				}
			}
		}
	}
	if cuts == 0 {
		t.Fatal("no cut fell on the last byte of an odd length: the test does not reach the single-byte tail")
	}
}

func BenchmarkChunk(b *testing.B) {
	data := randBytes(64<<20, 5)
	for _, algo := range []string{algorithm, gearAlgorithm} {
		b.Run(algo, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				cuts(b, algo, data)
			}
		})
	}
}

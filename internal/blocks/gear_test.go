package blocks

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
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

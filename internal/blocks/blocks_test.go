package blocks

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/zeebo/xxh3"
	"pgregory.net/rapid"

	"tandem/internal/record"
)

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestHash(t *testing.T) {
	for _, n := range []int{0, 1, MinSize - 1, MinSize, 3*MaxSize + 17} {
		data := randBytes(n, uint64(n))
		bl, size, err := Hash(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if size != int64(n) {
			t.Fatalf("size %d, want %d", size, n)
		}
		off := 0
		for _, b := range bl {
			if b.Size == 0 || b.Size > MaxSize {
				t.Fatalf("block size %d out of bounds", b.Size)
			}
			part := data[off : off+int(b.Size)]
			if sha256.Sum256(part) != b.Hash {
				t.Fatalf("block at %d does not match its hash", off)
			}
			if want := xxh3.Hash(part); b.Check != want && !(want == 0 && b.Check == 1) {
				t.Fatalf("block at %d: check %x, want %x", off, b.Check, want)
			}
			if !Verify(part, b) {
				t.Fatalf("block at %d does not verify", off)
			}
			off += int(b.Size)
		}
		if off != n {
			t.Fatalf("blocks cover %d of %d bytes", off, n)
		}
	}
}

// An insertion near the start must leave most blocks unchanged.
func TestInsertionShiftsFewBlocks(t *testing.T) {
	data := randBytes(16<<20, 1)
	a, _, _ := Hash(bytes.NewReader(data))
	b, _, _ := Hash(bytes.NewReader(append(randBytes(100, 2), data...)))
	have := map[[32]byte]bool{}
	for _, x := range a {
		have[x.Hash] = true
	}
	var newBytes int
	for _, x := range b {
		if !have[x.Hash] {
			newBytes += int(x.Size)
		}
	}
	if newBytes > 2*MaxSize {
		t.Fatalf("insertion of 100 bytes changed %d bytes of blocks", newBytes)
	}
}

func BenchmarkHash(b *testing.B) {
	data := randBytes(64<<20, 3)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Hash(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// HashReporting reports, while hashing, blocks that follow on from each
// other from the start, each with its hash and offset, and ends with the
// same blocks as Hash.
func TestHashReporting(t *testing.T) {
	data := randBytes(24<<20+5, 9)
	want, _, err := Hash(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var got []record.Block
	calls := 0
	bl, size, err := HashReporting(bytes.NewReader(data), 2<<20, func(off int64, bs []record.Block) {
		calls++
		var at int64
		for _, b := range got {
			at += int64(b.Size)
		}
		if off != at {
			t.Errorf("report %d starts at %d, want %d", calls, off, at)
		}
		for _, b := range bs {
			part := data[off : off+int64(b.Size)]
			if sha256.Sum256(part) != b.Hash || b.Check != CheckSum(part) {
				t.Errorf("reported block at %d does not match its hash and check", off)
			}
			off += int64(b.Size)
		}
		got = append(got, bs...)
	})
	if err != nil || size != int64(len(data)) {
		t.Fatalf("size %d err %v", size, err)
	}
	if !slices.Equal(bl, want) {
		t.Fatalf("blocks differ from Hash's")
	}
	if calls < 4 {
		t.Errorf("%d reports for 24 MiB every 2 MiB", calls)
	}
	if len(got) == 0 || len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
		t.Errorf("reported %d blocks, not a prefix of the %d final ones", len(got), len(want))
	}
	if len(got) < len(want)/2 {
		t.Errorf("only %d of %d blocks reported before the end", len(got), len(want))
	}
}

// shortReader returns at most n bytes per Read, and sometimes none.
type shortReader struct {
	r    io.Reader
	n    int
	call int
}

func (s *shortReader) Read(p []byte) (int, error) {
	s.call++
	if s.call%7 == 0 {
		return 0, nil
	}
	return s.r.Read(p[:min(len(p), s.n)])
}

// TestHashMatchesLibrary: Hash (its own cutting loop, blocks hashed in
// parallel) gives exactly the blocks of the library's chunker (cut
// points are part of the protocol) with each block's SHA-256 and XXH3, whatever
// the sizes of the reads, for inputs from empty to several megabytes.
func TestHashMatchesLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		seed := rapid.Uint64().Draw(t, "seed")
		n := rapid.OneOf(rapid.IntRange(0, 2*MaxSize), rapid.IntRange(2*MaxSize, 8<<20)).Draw(t, "size")
		alphabet := rapid.IntRange(1, 256).Draw(t, "alphabet")
		r := rand.New(rand.NewPCG(seed, 3))
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.IntN(alphabet))
		}
		var want []record.Block
		off := 0
		for _, size := range cuts(t, algorithm, data) {
			part := data[off : off+size]
			want = append(want, record.Block{Size: uint32(size), Hash: sha256.Sum256(part), Check: xxh3.Hash(part)})
			off += size
		}
		var in io.Reader = bytes.NewReader(data)
		if rapid.Bool().Draw(t, "short reads") {
			in = &shortReader{r: in, n: rapid.IntRange(1, 3*MaxSize).Draw(t, "read size")}
		}
		got, size, err := Hash(in)
		if err != nil || size != int64(n) {
			t.Fatalf("size %d, err %v; want %d bytes", size, err, n)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d blocks, the library's chunker and SHA-256 give %d (or they differ)", len(got), len(want))
		}
	})
}

// A read error ends hashing with that error.
func TestHashReadError(t *testing.T) {
	boom := errors.New("boom")
	_, _, err := Hash(io.MultiReader(bytes.NewReader(randBytes(3*MaxSize, 4)), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want %v", err, boom)
	}
}

// Verify checks by the block's XXH3 where the record has one and by
// SHA-256 where it has not (records of earlier releases).
func TestVerify(t *testing.T) {
	data := randBytes(70000, 9)
	good := record.Block{Hash: sha256.Sum256(data), Size: uint32(len(data)), Check: CheckSum(data)}
	changed := bytes.Clone(data)
	changed[len(changed)/2] ^= 1
	old := good
	old.Check = 0
	wrongHash := good
	wrongHash.Hash[0] ^= 1
	wrongCheck := good
	wrongCheck.Check ^= 1
	for _, c := range []struct {
		name string
		data []byte
		b    record.Block
		want bool
	}{
		{"same bytes", data, good, true},
		{"one bit changed", changed, good, false},
		{"one byte short", data[:len(data)-1], good, false},
		{"no check, same bytes", data, old, true},
		{"no check, one bit changed", changed, old, false},
		{"check decides, not the hash", data, wrongHash, true},
		{"wrong check", data, wrongCheck, false},
	} {
		if got := Verify(c.data, c.b); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
}

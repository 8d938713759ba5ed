package blocks

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

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
			if !Check(data[off:off+int(b.Size)], b.Hash) {
				t.Fatalf("block at %d does not match its hash", off)
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
			if !Check(data[off:off+int64(b.Size)], b.Hash) {
				t.Errorf("reported block at %d does not match its hash", off)
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

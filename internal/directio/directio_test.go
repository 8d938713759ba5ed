package directio

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// create makes an empty file and opens it; presize, if positive, sets its
// size first as fetchFile does for a file of several blocks.
func create(t *testing.T, presize int64) (*File, string) {
	t.Helper()
	w, name := createIn(t, t.TempDir(), presize)
	t.Cleanup(func() { w.Discard(); w.f.Close() })
	return w, name
}

func createIn(t interface {
	Helper()
	Fatal(...any)
}, dir string, presize int64) (*File, string) {
	t.Helper()
	name := filepath.Join(dir, "f")
	os.Remove(name)
	if err := os.WriteFile(name, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if presize > 0 {
		if err := os.Truncate(name, presize); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	return w, name
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestDirectOnTempDir makes sure the tests exercise direct I/O where the
// filesystem has it (tmpfs and ext4 do).
func TestDirectOnTempDir(t *testing.T) {
	w, _ := create(t, 0)
	if !w.Direct() {
		t.Logf("the filesystem of %s refuses O_DIRECT: only ordinary writes are tested", t.TempDir())
	}
}

// TestSequentialWritesMatchPwrite applies random writes, one after the
// other, overlapping or not, anywhere, and compares the file after Flush
// with the same writes applied to a byte slice (what pwrite would leave).
func TestSequentialWritesMatchPwrite(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		presize := rapid.SampledFrom([]int64{0, 3 * Align, 5*Align + 77}).Draw(rt, "presize")
		w, name := createIn(rt, dir, presize)
		defer w.f.Close()
		want := make([]byte, presize)
		seed := rapid.Uint64().Draw(rt, "seed")
		r := rand.New(rand.NewPCG(seed, 1))
		n := rapid.IntRange(1, 30).Draw(rt, "writes")
		for i := range n {
			off := rapid.Int64Range(0, 6*Align).Draw(rt, "off")
			size := rapid.IntRange(1, 3*Align+10).Draw(rt, "size")
			p := randomBytes(r, size)
			if got, err := w.WriteAt(p, off); err != nil || got != size {
				rt.Fatalf("write %d: %d, %v", i, got, err)
			}
			if end := off + int64(size); end > int64(len(want)) {
				want = append(want, make([]byte, end-int64(len(want)))...)
			}
			copy(want[off:], p)
		}
		flushAndCheck(rt, w, name, want)
	})
}

// flushAndCheck flushes w and checks that its file, name, holds want.
func flushAndCheck(t interface {
	Fatal(...any)
	Fatalf(string, ...any)
}, w *File, name string, want []byte) {
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs: %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestConcurrentBlocks writes a file as fetchFile does: blocks of
// content-defined sizes, from many goroutines, in random order.
func TestConcurrentBlocks(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { concurrentBlocks(t, seed) })
	}
}

func concurrentBlocks(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	content := randomBytes(r, 24<<20+1234)
	type blk struct{ at, end int }
	var bs []blk
	for at := 0; at < len(content); {
		end := min(len(content), at+32<<10+r.IntN(480<<10))
		bs = append(bs, blk{at, end})
		at = end
	}
	r.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
	w, name := create(t, int64(len(content)))
	var wg sync.WaitGroup
	next := make(chan blk)
	for range 8 {
		wg.Go(func() {
			for b := range next {
				if _, err := w.WriteAt(content[b.at:b.end], int64(b.at)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, b := range bs {
		next <- b
	}
	close(next)
	wg.Wait()
	w.mu.Lock()
	held := len(w.partial)
	w.mu.Unlock()
	if w.Direct() && held != 1 {
		// Every page but the last is completed by its neighbours.
		t.Errorf("%d partial pages held after every block was written, want 1 (the last)", held)
	}
	flushAndCheck(t, w, name, content)
}

// TestManyGaps leaves more partial pages than are held in memory: those
// beyond the bound are merged with the file at once, and the content is
// still what the writes made.
func TestManyGaps(t *testing.T) {
	w, name := create(t, 0)
	pages := maxPartial + 100
	want := make([]byte, pages*Align)
	r := rand.New(rand.NewPCG(3, 3))
	for i := range pages {
		off := i*Align + 100
		p := randomBytes(r, 200)
		if _, err := w.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	want = want[:(pages-1)*Align+300]
	w.mu.Lock()
	held := len(w.partial)
	w.mu.Unlock()
	if w.Direct() && held > maxPartial {
		t.Errorf("%d partial pages held, bound %d", held, maxPartial)
	}
	flushAndCheck(t, w, name, want)
}

// TestFallBack switches to ordinary writes halfway, as after a refused
// direct write: the held pages are written as they are.
func TestFallBack(t *testing.T) {
	w, name := create(t, 0)
	r := rand.New(rand.NewPCG(5, 5))
	content := randomBytes(r, 10*Align+123)
	if _, err := w.WriteAt(content[:Align+10], 0); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	if err := w.fallBack(); err != nil {
		t.Fatal(err)
	}
	w.mu.Unlock()
	if w.Direct() {
		t.Fatal("still direct after falling back")
	}
	if _, err := w.WriteAt(content[Align+10:], Align+10); err != nil {
		t.Fatal(err)
	}
	flushAndCheck(t, w, name, content)
}

func TestNegativeOffset(t *testing.T) {
	w, _ := create(t, 0)
	if _, err := w.WriteAt([]byte("x"), -1); err == nil {
		t.Fatal("write at a negative offset accepted")
	}
}

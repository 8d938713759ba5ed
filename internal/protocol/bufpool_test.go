package protocol

import "testing"

func TestBlockBufClasses(t *testing.T) {
	for _, c := range []struct{ n, cap int }{
		{1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10}, {128 << 10, 128 << 10},
		{512 << 10, 512 << 10}, {512<<10 + 1, 1 << 20}, {1 << 20, 1 << 20},
		{1<<20 + 1, 1<<20 + 1}, // beyond the pools: allocated as asked
	} {
		b := BlockBuf(c.n)
		if len(b) != c.n || cap(b) != c.cap {
			t.Errorf("BlockBuf(%d): len %d cap %d, want cap %d", c.n, len(b), cap(b), c.cap)
		}
	}
	if b := BlockBuf(0); len(b) != 0 {
		t.Errorf("BlockBuf(0) has %d bytes", len(b))
	}
}

// TestReleaseTakesOnlyPoolSizes: a buffer handed back is reused; one of a
// size the pools do not make (not from BlockBuf) never enters a pool.
func TestReleaseTakesOnlyPoolSizes(t *testing.T) {
	same := func(a, b []byte) bool { return &a[:cap(a)][cap(a)-1] == &b[:cap(b)][cap(b)-1] }
	// sync.Pool may drop what it is given (always possible, and at random
	// under the race detector): one reuse in a hundred tries shows that
	// released buffers go in.
	reused := false
	for range 100 {
		b := BlockBuf(64 << 10)
		ReleaseBlock(b)
		if c := BlockBuf(64 << 10); same(b, c) {
			reused = true
			break
		}
	}
	if !reused {
		t.Error("a released buffer was never handed out again")
	}
	odd := make([]byte, 5000)
	ReleaseBlock(odd)
	for range 100 {
		if b := BlockBuf(5000); same(b, odd) {
			t.Fatal("a buffer of another size entered the pool")
		}
	}
}

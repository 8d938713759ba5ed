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
	reused := func(n int, release []byte) bool {
		ReleaseBlock(release)
		for range 100 { // sync.Pool may drop an entry; one reuse shows it went in
			b := BlockBuf(n)
			if &b[:cap(b)][cap(b)-1] == &release[:cap(release)][cap(release)-1] {
				return true
			}
		}
		return false
	}
	whole := BlockBuf(64 << 10)
	if !reused(64<<10, whole) {
		t.Error("a released buffer was never handed out again")
	}
	odd := make([]byte, 5000)
	if reused(5000, odd) {
		t.Error("a buffer of another size entered the pool")
	}
}

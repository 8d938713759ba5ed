package folder

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"tandem/internal/identity"
	"tandem/internal/version"
)

// TestEventCountersAreUniqueAcrossPaths: events on different paths never
// share a counter, even when the clock stands still and many are issued at
// once, and a counter is always above the path's own earlier one. (Two
// events with one dot on different paths were once taken for each other:
// a copy of a conflict copy was deleted as replaced by a change that had
// only replaced an older version of the original.)
func TestEventCountersAreUniqueAcrossPaths(t *testing.T) {
	frozen := time.Unix(1_800_000_000, 0)
	f := New(Options{Me: identity.ID{1, 2, 3}, Now: func() time.Time { return frozen }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	me := f.meShort
	ahead := version.Vector{}.Update(me, uint64(frozen.UnixNano())+1000)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				prev := version.Vector{}
				if (g+i)%7 == 0 {
					prev = ahead // a path whose counter ran ahead of the clock
				}
				n := f.eventAt(prev)
				if n <= prev.Get(me) {
					t.Errorf("counter %d not above the path's %d", n, prev.Get(me))
				}
				mu.Lock()
				if seen[n] {
					t.Errorf("counter %d issued twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 8*500 {
		t.Fatalf("%d distinct counters for %d events", len(seen), 8*500)
	}
}

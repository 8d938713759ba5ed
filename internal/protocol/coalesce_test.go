package protocol

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// gatedWriter blocks its first Write until released and counts writes.
type gatedWriter struct {
	mu      sync.Mutex
	writes  int
	buf     bytes.Buffer
	entered chan struct{}
	release chan struct{}
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	g.writes++
	first := g.writes == 1
	g.mu.Unlock()
	if first {
		close(g.entered)
		<-g.release
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gatedWriter) Read([]byte) (int, error) { select {} }

// Messages sent while another Send is writing are flushed together by
// the last of them, and every one arrives, in one piece.
func TestConcurrentSendsShareAFlush(t *testing.T) {
	g := &gatedWriter{entered: make(chan struct{}), release: make(chan struct{})}
	c := New(g)
	var wg sync.WaitGroup
	send := func(id uint32) {
		wg.Go(func() {
			if err := c.Send(&Request{ID: id, Folder: "www", Path: "a", Size: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	send(0)
	<-g.entered // the first flush is under way, holding the lock
	const later = 10
	for i := range later {
		send(uint32(i + 1))
	}
	deadline := time.Now().Add(10 * time.Second)
	// The first sender has counted itself out before flushing.
	for c.senders.Load() != later {
		if time.Now().After(deadline) {
			t.Fatalf("%d senders waiting, want %d", c.senders.Load(), later)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	wg.Wait()
	if g.writes != 2 {
		t.Errorf("%d writes for %d messages, want 2 (the first, then the rest together)", g.writes, later+1)
	}
	r := New(&readOnly{&g.buf})
	seen := map[uint32]bool{}
	for range later + 1 {
		m, err := r.Receive()
		if err != nil {
			t.Fatal(err)
		}
		seen[m.(*Request).ID] = true
	}
	if len(seen) != later+1 {
		t.Errorf("received %d distinct requests, want %d", len(seen), later+1)
	}
}

type readOnly struct{ b *bytes.Buffer }

func (r *readOnly) Read(p []byte) (int, error)  { return r.b.Read(p) }
func (r *readOnly) Write(p []byte) (int, error) { return len(p), nil }

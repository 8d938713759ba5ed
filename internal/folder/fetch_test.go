package folder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tandem/internal/crashpoint"
	"tandem/internal/identity"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// heldPeers serves blocks from memory and holds every request until
// release is closed, counting how many are held at once.
type heldPeers struct {
	mu      sync.Mutex
	data    map[[32]byte][]byte
	held    int
	maxHeld int
	release chan struct{}
}

func (p *heldPeers) Connected(identity.ID) bool { return true }
func (p *heldPeers) Hint(*protocol.Hint)        {}

func (p *heldPeers) Request(ctx context.Context, _ identity.ID, req *protocol.Request) ([]byte, error) {
	p.mu.Lock()
	d := p.data[req.Hash]
	p.held++
	p.maxHeld = max(p.maxHeld, p.held)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
	}()
	select {
	case <-p.release:
		return append([]byte(nil), d...), nil // the folder may release it
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *heldPeers) counts() (held, maxHeld int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held, p.maxHeld
}

// TestBlockRequestsInFlightAreBounded announces more files than there are
// fetch workers, each of several blocks, so that the workers' windows
// together could ask for twice maxRequests blocks at once: no more than
// maxRequests may be in flight (they are held in memory), and all files
// still arrive.
func TestBlockRequestsInFlightAreBounded(t *testing.T) {
	const files, perFile = fetchWorkers + 8, 4
	if fetchWorkers*min(perFile, window) <= maxRequests {
		t.Fatalf("the test needs fetchWorkers*%d > maxRequests", perFile)
	}
	peers := &heldPeers{data: map[[32]byte][]byte{}, release: make(chan struct{})}
	f, root := startFolder(t, peers)
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	var recs []record.Record
	for i := range files {
		var v version.Vector
		for range i + 1 {
			v = v.Update(by, 0)
		}
		r := record.Record{Path: fmt.Sprintf("f%03d", i), Type: record.File, Mode: 0o644, MTime: 1e18,
			Version: v, ModifiedBy: by, Dot: uint64(i + 1)}
		for b := range perFile {
			data := []byte(fmt.Sprintf("file %d block %d", i, b))
			h := sha256.Sum256(data)
			peers.data[h] = data
			r.Blocks = append(r.Blocks, record.Block{Hash: h, Size: uint32(len(data))})
			r.Size += int64(len(data))
		}
		recs = append(recs, r)
	}
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: recs, Last: uint64(files)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "maxRequests block requests in flight", func() bool {
		held, _ := peers.counts()
		return held >= maxRequests
	})
	// Without the bound, the workers' remaining requests follow at once;
	// give them a moment to show up before the held ones are answered.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, m := peers.counts(); m > maxRequests {
			t.Fatalf("%d block requests in flight, want at most %d", m, maxRequests)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(peers.release)
	waitFor(t, "every file to arrive", func() bool {
		for _, r := range recs {
			if fi, err := os.Lstat(filepath.Join(root, r.Path)); err != nil || fi.Size() != r.Size {
				return false
			}
		}
		return true
	})
	if _, m := peers.counts(); m > maxRequests {
		t.Fatalf("%d block requests in flight, want at most %d", m, maxRequests)
	}
}

// TestNextFilesFetchedWhileABatchIsPlaced holds the placing of a batch
// (at the crash point after its renames) and announces another file
// meanwhile: the new file is fetched at once, not after the batch, and
// both end up in place.
func TestNextFilesFetchedWhileABatchIsPlaced(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	placing, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(point string) {
		if point == crashpoint.ApplyAfterRename {
			once.Do(func() { close(placing); <-release })
		}
	}
	f.testHook.Store(&hook)
	first := remoteFile(peers, "first", "one", 0o644, by, 1)
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{first}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-placing:
	case <-time.After(10 * time.Second):
		t.Fatal("the first file was never placed")
	}
	gate := make(chan struct{})
	peers.mu.Lock()
	peers.hold["second"] = gate
	peers.mu.Unlock()
	second := remoteFile(peers, "second", "two", 0o644, by, 2)
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{second}, Last: 2}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-peers.requested:
		if p != "second" {
			t.Fatalf("requested %q", p)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the second file was not fetched while the first batch was being placed")
	}
	close(release)
	close(gate)
	waitFor(t, "both files in place", func() bool {
		a, errA := os.ReadFile(filepath.Join(root, "first"))
		b, errB := os.ReadFile(filepath.Join(root, "second"))
		return errA == nil && errB == nil && string(a) == "one" && string(b) == "two"
	})
}

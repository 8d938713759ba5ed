package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/protocol"
)

// TestQueuedRequestsGoTogether fills the queue of small requests before
// the sender starts: they must leave as Requests batches within the
// bounds (count and bytes), in order, and a request alone as a Request.
func TestQueuedRequestsGoTogether(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{pc: protocol.New(a), done: make(chan struct{}), reqQ: make(chan protocol.Request, protocol.MaxBatch)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 20 requests of 64 KiB: 8 fill a batch's bytes.
	for i := range 20 {
		c.reqQ <- protocol.Request{ID: uint32(i + 1), Folder: "f", Path: fmt.Sprint(i), Size: protocol.MaxBatched}
	}
	go c.sendRequests(ctx)
	pb := protocol.New(b)
	next := uint32(1)
	for _, want := range []int{8, 8, 4} {
		m, err := pb.Receive()
		if err != nil {
			t.Fatal(err)
		}
		batch, ok := m.(*protocol.Requests)
		if !ok {
			t.Fatalf("got %T, want a batch of %d", m, want)
		}
		if len(batch.Reqs) != want {
			t.Fatalf("batch of %d requests, want %d", len(batch.Reqs), want)
		}
		if err := batch.Check(); err != nil {
			t.Fatalf("batch out of bounds: %v", err)
		}
		for _, r := range batch.Reqs {
			if r.ID != next {
				t.Fatalf("request %d sent where %d was next", r.ID, next)
			}
			next++
		}
	}
	// Nothing else waiting: a request goes alone, as it is.
	c.reqQ <- protocol.Request{ID: 99, Folder: "f", Path: "x", Size: 10}
	m, err := pb.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m.(*protocol.Request); !ok || r.ID != 99 {
		t.Fatalf("got %#v, want request 99 on its own", m)
	}
	// A full queue of tiny requests: batches of at most MaxBatch.
	for i := range protocol.MaxBatch {
		c.reqQ <- protocol.Request{ID: uint32(1000 + i), Folder: "f", Path: "x", Size: 1}
	}
	got := 0
	for got < protocol.MaxBatch {
		m, err := pb.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *protocol.Requests:
			if len(m.Reqs) > protocol.MaxBatch {
				t.Fatalf("batch of %d", len(m.Reqs))
			}
			got += len(m.Reqs)
		case *protocol.Request:
			got++
		}
	}
}

// TestBatchedRequestsAreAnswered sends a batch as a peer: every request
// gets its own response, with the file's bytes or an error, and names
// leaving the folder are refused inside a batch too.
func TestBatchedRequestsAreAnswered(t *testing.T) {
	n, dir, peer := server(t)
	files := map[string][]byte{
		"a.txt":     []byte("first file"),
		"sub/b.txt": bytes.Repeat([]byte("second "), 3000),
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.txt"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, _ := dial(t, n, peer, n.me)
	reqs := []protocol.Request{
		{ID: 1, Folder: "f", Path: "a.txt", Size: uint32(len(files["a.txt"]))},
		{ID: 2, Folder: "f", Path: "../secret.txt", Size: 6},
		{ID: 3, Folder: "f", Path: "sub/b.txt", Offset: 7, Size: 700},
		{ID: 4, Folder: "f", Path: "missing", Size: 5},
		{ID: 5, Folder: "other", Path: "a.txt", Size: 5},
	}
	if err := pc.Send(&protocol.Requests{Reqs: reqs}); err != nil {
		t.Fatal(err)
	}
	want := map[uint32][]byte{1: files["a.txt"], 3: files["sub/b.txt"][7:707]}
	seen := map[uint32]bool{}
	for len(seen) < len(reqs) {
		resp := nextResponse(t, pc)
		if seen[resp.ID] {
			t.Fatalf("request %d answered twice", resp.ID)
		}
		seen[resp.ID] = true
		var size int
		for _, r := range reqs {
			if r.ID == resp.ID {
				size = int(r.Size)
			}
		}
		data, derr := resp.Payload(size)
		if w, ok := want[resp.ID]; ok {
			if resp.Err != "" || derr != nil || !bytes.Equal(data, w) {
				t.Errorf("request %d: err %q %v, %d bytes, want the file's %d", resp.ID, resp.Err, derr, len(data), len(w))
			}
		} else if resp.Err == "" {
			t.Errorf("request %d was served: %q", resp.ID, data)
		}
	}
}

// TestOversizedBatchClosesTheConnection: a peer asking for more than a
// batch may hold is disconnected.
func TestOversizedBatchClosesTheConnection(t *testing.T) {
	for name, reqs := range map[string][]protocol.Request{
		"too many":       make([]protocol.Request, protocol.MaxBatch+1),
		"too large":      {{ID: 1, Folder: "f", Path: "a", Size: protocol.MaxBatched + 1}},
		"too many bytes": {{ID: 1, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 2, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 3, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 4, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 5, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 6, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 7, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 8, Folder: "f", Path: "a", Size: protocol.MaxBatched}, {ID: 9, Folder: "f", Path: "a", Size: 1}},
		"empty":          {},
	} {
		t.Run(name, func(t *testing.T) {
			n, _, peer := server(t)
			pc, raw := dial(t, n, peer, n.me)
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			if err := pc.Send(&protocol.Requests{Reqs: reqs}); err != nil {
				t.Fatal(err)
			}
			for {
				m, err := pc.Receive()
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the connection stayed open")
					}
					return
				}
				if _, ok := m.(*protocol.Response); ok {
					t.Fatalf("an oversized batch was served")
				}
			}
		})
	}
}

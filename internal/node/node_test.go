package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/folder"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// server starts a node with one folder and returns it with the identity of
// a configured peer that the test plays.
func server(t *testing.T) (n *Node, dir string, peer *identity.Identity) {
	t.Helper()
	n, dir, peer, _ = serverIndex(t)
	return n, dir, peer
}

// serverIndex is server that also returns the folder's index.
func serverIndex(t *testing.T) (n *Node, dir string, peer *identity.Identity, fi *index.Folder) {
	t.Helper()
	base := t.TempDir()
	me, err := identity.Generate(filepath.Join(base, "me"))
	if err != nil {
		t.Fatal(err)
	}
	peer, err = identity.Generate(filepath.Join(base, "peer"))
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(base, "root", "folder")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// bbolt's own small first mapping, so that a test can make the index
	// outgrow it (TestStatusWhileTheIndexGrows).
	db, err := index.OpenMapping(filepath.Join(base, "index.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fi, err = db.Folder("f")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n = New(Options{Identity: me, Listen: "127.0.0.1:0", Peers: []Peer{{ID: peer.ID}}, Log: log})
	f := folder.New(folder.Options{Config: config.Folder{ID: "f", Path: dir, Rescan: time.Hour}, Me: me.ID, Index: fi, Peers: n, Log: log, Changed: n.Changed})
	n.SetFolders([]*folder.Folder{f})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { n.Run(ctx); done <- struct{}{} }()
	go func() { f.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	deadline := time.Now().Add(10 * time.Second)
	for f.Status().State != "idle" {
		if time.Now().After(deadline) {
			t.Fatalf("folder did not start: %+v", f.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return n, dir, peer, fi
}

func dial(t *testing.T, n *Node, as *identity.Identity, expect identity.ID) (*protocol.Conn, net.Conn) {
	t.Helper()
	raw, err := net.Dial("tcp", n.ListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	tc := tls.Client(raw, as.ClientTLS(expect))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	pc := protocol.New(tc)
	if err := pc.Send(&protocol.Hello{Version: protocol.ProtocolVersion, Folders: []protocol.FolderHello{{ID: "f", IndexID: 42}}}); err != nil {
		t.Fatal(err)
	}
	m, err := pc.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*protocol.Hello); !ok {
		t.Fatalf("got %T, want hello", m)
	}
	return pc, tc
}

// nextResponse reads until a Response arrives (the server also sends its
// index) and returns it.
func nextResponse(t *testing.T, pc *protocol.Conn) *protocol.Response {
	t.Helper()
	for {
		m, err := pc.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if resp, ok := m.(*protocol.Response); ok {
			return resp
		}
	}
}

// drainUntilClosed reads until the server closes the connection.
func drainUntilClosed(t *testing.T, pc *protocol.Conn) {
	t.Helper()
	for {
		if _, err := pc.Receive(); err != nil {
			return
		}
	}
}

func TestMaliciousNamesAreRejected(t *testing.T) {
	for _, bad := range []string{"../escape.txt", "/etc/evil", "a/../../escape", ".tandem/tmp/x", "a//b", "./a", ""} {
		t.Run(bad, func(t *testing.T) {
			n, dir, peer := server(t)
			pc, _ := dial(t, n, peer, n.me)
			v := version.Vector{}.Update(peer.ID.Short64(), 1)
			rec := record.Record{Path: bad, Type: record.File, Size: 1, Mode: 0o644, Version: v,
				ModifiedBy: peer.ID.Short64(), Dot: 1, Blocks: []record.Block{{Size: 1}}}
			if bad != "" {
				good := rec
				good.Path = "fine.txt"
				if err := good.Validate(); err != nil {
					t.Fatalf("the record is invalid for another reason than its name: %v", err)
				}
			}
			if err := pc.Send(&protocol.Index{Folder: "f", IndexID: 42, Records: []record.Record{rec}, Last: 1}); err != nil {
				t.Fatal(err)
			}
			drainUntilClosed(t, pc)
			for _, p := range []string{filepath.Join(dir, "..", "escape.txt"), filepath.Join(filepath.Dir(dir), "..", "escape")} {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("%s was created", p)
				}
			}
		})
	}
}

func TestRequestsCannotReadOutsideTheFolder(t *testing.T) {
	n, dir, peer := server(t)
	secret := filepath.Join(filepath.Dir(dir), "secret.txt")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}
	pc, _ := dial(t, n, peer, n.me)
	for i, p := range []string{"../secret.txt", "up/secret.txt", "/etc/passwd", ".tandem/../../secret.txt"} {
		if err := pc.Send(&protocol.Request{ID: uint32(i + 1), Folder: "f", Path: p, Size: 6}); err != nil {
			t.Fatal(err)
		}
		if resp := nextResponse(t, pc); resp.Err == "" || len(resp.Data) != 0 {
			t.Fatalf("request for %q was served: %q", p, resp.Data)
		}
	}
}

func TestGarbageFromPeerClosesOnlyThatConnection(t *testing.T) {
	n, _, peer := server(t)
	_, tc := dial(t, n, peer, n.me)
	if _, err := tc.Write([]byte("\xff\xff\xff\xffthis is not a frame")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	for {
		if _, err := tc.Read(buf); err != nil {
			break
		}
	}
	// The node still accepts the peer afterwards.
	pc, _ := dial(t, n, peer, n.me)
	if err := pc.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	// An unknown node is refused at the TLS handshake.
	stranger, err := identity.Generate(filepath.Join(t.TempDir(), "x"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", n.ListenAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, stranger.ClientTLS(n.me))
	err = c.Handshake()
	if err == nil {
		_, err = c.Read(buf)
	}
	if err == nil {
		t.Fatal("an unconfigured node was accepted")
	}
}

// waitForStack polls the goroutine stacks until one contains what.
func waitForStack(t *testing.T, what string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(buf[:runtime.Stack(buf, true)]), what) {
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine reached %s", what)
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// TestStatusWhileTheIndexGrows: a folder asks Connected from inside an
// index read transaction (the planner does). If Status held the node's
// lock while it read the index, and a writer were waiting to grow the
// index file (bbolt then lets no new reader in until the open ones end),
// the three would wait for each other for good (3-node fault run, round
// 1524).
func TestStatusWhileTheIndexGrows(t *testing.T) {
	n, _, peer, fi := serverIndex(t)
	dial(t, n, peer, n.me)
	deadline := time.Now().Add(10 * time.Second)
	for !n.Connected(peer.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the peer never connected")
		}
		time.Sleep(time.Millisecond) // poll interval
	}
	var wdone chan error
	sdone := make(chan struct{})
	err := fi.View(func(*index.Tx) error {
		// A writer that must grow the file: it waits for this transaction.
		wdone = make(chan error, 1)
		go func() {
			wdone <- fi.Update(func(tx *index.Tx) error {
				for i := range 20000 {
					if err := tx.SetNeed(fmt.Sprintf("grow/%06d/%s", i, strings.Repeat("x", 200))); err != nil {
						return err
					}
				}
				return nil
			})
		}()
		waitForStack(t, "bbolt.(*DB).mmap(")
		go func() { n.Status(); close(sdone) }()
		waitForStack(t, "(*Folder).LocalIndexID(")
		// Now, from inside this transaction, as the planner does.
		asked := make(chan struct{})
		go func() { n.Connected(peer.ID); close(asked) }()
		select {
		case <-asked:
		case <-time.After(5 * time.Second):
			t.Error("Connected blocked while Status waited to read the index: deadlock")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-wdone; err != nil {
		t.Fatal(err)
	}
	<-sdone
}

package folder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/crashpoint"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// fakePeers serves blocks from memory. A request for a path in hold
// blocks until that path's channel is closed; requested reports each
// such request.
type fakePeers struct {
	mu        sync.Mutex
	data      map[[32]byte][]byte
	next      map[[32]byte][32]byte // the block that follows in its file (serve)
	files     map[string]fakeFile   // paths served by offset, as a peer does
	hold      map[string]chan struct{}
	requested chan string
}

func newFakePeers() *fakePeers {
	return &fakePeers{data: map[[32]byte][]byte{}, next: map[[32]byte][32]byte{}, files: map[string]fakeFile{}, hold: map[string]chan struct{}{}, requested: make(chan string, 1)}
}

func (p *fakePeers) Connected(identity.ID) bool { return true }

func (p *fakePeers) Hint(*protocol.Hint) {}

func (p *fakePeers) Request(ctx context.Context, _ identity.ID, req *protocol.Request) ([]byte, error) {
	p.mu.Lock()
	d, _ := p.answer(req)
	gate := p.hold[req.Path]
	p.mu.Unlock()
	if gate != nil {
		p.requested <- req.Path
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return d, nil
}

// fakeFile is a file a fakePeers serves by offset: its content and the
// offset of each of its blocks.
type fakeFile struct {
	data []byte
	at   map[int64][32]byte
}

// answer returns what a peer sends for req and the blocks it covers: for
// a file registered by path, the bytes at req's offset; otherwise the
// bytes from the block whose hash req carries on (spanFrom). p.mu must be
// held.
func (p *fakePeers) answer(req *protocol.Request) ([]byte, [][32]byte) {
	ff, ok := p.files[req.Path]
	if !ok {
		return spanFrom(p.data, p.next, req)
	}
	end := min(int64(len(ff.data)), req.Offset+int64(req.Size))
	var covered [][32]byte
	for at, h := range ff.at {
		if at >= req.Offset && at < end {
			covered = append(covered, h)
		}
	}
	return append([]byte(nil), ff.data[min(req.Offset, end):end]...), covered
}

// spanFrom answers req as a peer would: req.Size bytes from the block
// whose hash req carries on, through the blocks that follow it (next), as
// far as they are known, and the hashes of the blocks it covers. The bytes
// are a copy: the folder may hand them back to the block pools.
func spanFrom(data map[[32]byte][]byte, next map[[32]byte][32]byte, req *protocol.Request) ([]byte, [][32]byte) {
	h := req.Hash
	out := append([]byte(nil), data[h]...)
	covered := [][32]byte{h}
	for len(out) < int(req.Size) {
		n, ok := next[h]
		if !ok {
			break
		}
		out = append(out, data[n]...)
		covered = append(covered, n)
		h = n
	}
	return out[:min(len(out), int(req.Size))], covered
}

// remoteFile is a one-block file record of node by at counter n.
func remoteFile(p *fakePeers, path, content string, mode uint32, by uint64, n uint64) record.Record {
	h := sha256.Sum256([]byte(content))
	p.mu.Lock()
	p.data[h] = []byte(content)
	p.mu.Unlock()
	var v version.Vector
	for range n {
		v = v.Update(by, 0)
	}
	return record.Record{Path: path, Type: record.File, Size: int64(len(content)), Mode: mode, MTime: 1e18,
		Blocks: []record.Block{{Hash: h, Size: uint32(len(content))}}, Version: v, ModifiedBy: by, Dot: n}
}

func startFolder(t testing.TB, peers Peers) (*Folder, string) {
	t.Helper()
	return startFolderWith(t, peers, config.Folder{})
}

// startFolderWith is startFolder with settings of cfg that are not zero
// (TrashDays so far).
func startFolderWith(t testing.TB, peers Peers, cfg config.Folder) (*Folder, string) {
	t.Helper()
	return startFolderHooked(t, peers, cfg, nil, nil)
}

// startFolderHooked is startFolderWith that calls before, if not nil,
// with the index and the root before the folder starts, and passes
// changed, if not nil, as Options.Changed.
func startFolderHooked(t testing.TB, peers Peers, cfg config.Folder, before func(*index.Folder, string), changed func()) (*Folder, string) {
	t.Helper()
	f, root := newTestFolder(t, peers, cfg, before, changed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, root
}

// newTestFolder makes a folder "f" on a new root, with a new index,
// without running it. before, if not nil, is called with the index and
// the root first; changed, if not nil, is Options.Changed.
func newTestFolder(t testing.TB, peers Peers, cfg config.Folder, before func(*index.Folder, string), changed func()) (*Folder, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := index.Open(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fi, err := db.Folder("f")
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(fi, root)
	}
	f := New(Options{
		Config:  config.Folder{ID: "f", Path: root, Rescan: time.Hour, TrashDays: cfg.TrashDays},
		Me:      identity.ID{1, 2, 3},
		Index:   fi,
		Peers:   peers,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Changed: changed,
	})
	return f, root
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestNewerVersionDuringApplyIsApplied delivers a newer version of a path
// while the older one is being fetched: once the old one is placed, the
// new one must still be applied (the work item must not be cleared by the
// commit of the old one).
func TestNewerVersionDuringApplyIsApplied(t *testing.T) {
	peers := newFakePeers()
	gate := make(chan struct{})
	peers.hold["zz"] = gate
	f, root := startFolder(t, peers)
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	old := remoteFile(peers, "zz", "content", 0o644, by, 1)
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{old}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-peers.requested:
	case <-time.After(10 * time.Second):
		t.Fatal("the folder never fetched zz")
	}
	// Same bytes, new mode: a metadata-only change, so the blocks being
	// fetched stay valid.
	newer := remoteFile(peers, "zz", "content", 0o600, by, 2)
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{newer}, Last: 2}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitFor(t, "zz to get mode 0600", func() bool {
		fi, err := os.Lstat(filepath.Join(root, "zz"))
		return err == nil && fi.Mode().Perm() == 0o600
	})
	waitFor(t, "the index to hold the newer version", func() bool {
		var r record.Record
		_ = f.idx.View(func(tx *index.Tx) error { r, _, _ = tx.Get("zz"); return nil })
		return r.Dot == 2 && r.Mode == 0o600
	})
}

// recordedFile writes content to name in the folder and waits until the
// scan has recorded it, returning its record. It waits for the final
// content: the watcher may record the file empty first (created, then
// written), and a remote change that saw only that version is rightly
// concurrent with the next.
func recordedFile(t *testing.T, f *Folder, root, name, content string) record.Record {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	var local record.Record
	waitFor(t, "the scan to record "+name, func() bool {
		var ok bool
		_ = f.idx.View(func(tx *index.Tx) error { local, ok, _ = tx.Get(name); return nil })
		return ok && !local.Deleted && local.Size == int64(len(content))
	})
	return local
}

// TestLocalWriteRacingRemoteChangeIsKept writes to a local file just
// after the last check before a remote version replaces (or deletes) it.
// The write did not reach the index, so the remote version, which saw the
// old content only, must not take it away: it is kept as a conflict copy
// (replace) or stays at its name (delete).
func TestLocalWriteRacingRemoteChangeIsKept(t *testing.T) {
	for _, del := range []bool{false, true} {
		t.Run(map[bool]string{false: "replace", true: "delete"}[del], func(t *testing.T) {
			peers := newFakePeers()
			f, root := startFolder(t, peers)
			p := filepath.Join(root, "doc.txt")
			local := recordedFile(t, f, root, "doc.txt", "original\n")
			hook := func(path string) {
				if path != "doc.txt" {
					return
				}
				fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Error(err)
					return
				}
				fh.WriteString("local edit\n")
				fh.Close()
			}
			testHookChecked.Store(&hook)
			t.Cleanup(func() { testHookChecked.Store(nil) })
			sendOver(t, f, peers, local, del)
			want := "original\nlocal edit\n"
			waitFor(t, "the remote change to be applied and the local write kept", func() bool {
				es, _ := os.ReadDir(root)
				kept, atName := false, ""
				for _, e := range es {
					b, err := os.ReadFile(filepath.Join(root, e.Name()))
					if err != nil {
						continue
					}
					if e.Name() == "doc.txt" {
						atName = string(b)
					}
					if string(b) == want && (del == (e.Name() == "doc.txt")) {
						kept = true
					}
				}
				if del {
					return kept
				}
				return kept && atName == "remote\n"
			})
		})
	}
}

// copyScene is a folder holding node c's version of x.txt (mtime 1e18),
// with node a's newer version (va, mtime 2e18) ready to win the conflict
// over it: c's version then becomes a conflict copy here.
type copyScene struct {
	f      *Folder
	root   string
	pc, pa identity.ID
	c, a   uint64
	va     record.Record
}

func newCopyScene(t *testing.T) *copyScene {
	t.Helper()
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	s := &copyScene{f: f, root: root, pc: identity.ID{0xc0}, pa: identity.ID{0xa0}}
	s.c, s.a = s.pc.Short64(), s.pa.Short64()
	vc := remoteFile(peers, "x.txt", "version of c\n", 0o644, s.c, 1)
	vc.MTime = 1e18
	s.send(t, s.pc, 1, 1, vc)
	waitFor(t, "c's version", func() bool { return s.read("x.txt") == "version of c\n" })
	s.va = remoteFile(peers, "x.txt", "version of a\n", 0o644, s.a, 1)
	s.va.MTime = 2e18 // newer: wins
	return s
}

// send delivers records as peer's index message.
func (s *copyScene) send(t *testing.T, peer identity.ID, indexID, last uint64, recs ...record.Record) {
	t.Helper()
	if err := s.f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: indexID, Records: recs, Last: last}); err != nil {
		t.Fatal(err)
	}
}

// sendA delivers a's winning version.
func (s *copyScene) sendA(t *testing.T) { t.Helper(); s.send(t, s.pa, 2, 1, s.va) }

func (s *copyScene) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.root, name))
	return string(b)
}

// copies lists the conflict copies of x.txt.
func (s *copyScene) copies() []string {
	ms, _ := filepath.Glob(filepath.Join(s.root, "x.conflict-*"))
	return ms
}

// waitCopy waits for a's version at the name and one copy of c's.
func (s *copyScene) waitCopy(t *testing.T) {
	t.Helper()
	waitFor(t, "a's version and a copy of c's", func() bool {
		return s.read("x.txt") == "version of a\n" && len(s.copies()) == 1
	})
}

// waitCopyGone waits for the copy to go and a's version to stay.
func (s *copyScene) waitCopyGone(t *testing.T) {
	t.Helper()
	waitFor(t, "the copy to go, a's version to stay", func() bool {
		return s.read("x.txt") == "version of a\n" && len(s.copies()) == 0
	})
}

// TestConflictCopyOfDeletedVersionGoes: node c's version of x.txt loses a
// conflict here and is kept as a copy; then c's delete of x.txt arrives,
// made while c still held that version (the delete replaced it). The copy
// must go too, or the delete would come back as a copy. A delete that
// replaced the winner instead (made after c adopted it) leaves the copy.
func TestConflictCopyOfDeletedVersionGoes(t *testing.T) {
	for _, replacedLoser := range []bool{true, false} {
		t.Run(map[bool]string{true: "delete of the kept version", false: "delete of the winner"}[replacedLoser], func(t *testing.T) {
			s := newCopyScene(t)
			s.sendA(t)
			s.waitCopy(t)
			c, a := s.c, s.a
			del := record.Record{Path: "x.txt", Type: record.File, Deleted: true, MTime: 3e18, ModifiedBy: c, Dot: 2,
				Version: version.Vector{}.Update(c, 0).Update(c, 0), PrevBy: c, PrevDot: 1}
			if !replacedLoser {
				del.Version = del.Version.Merge(s.va.Version)
				del.PrevBy, del.PrevDot = a, 1
			}
			s.send(t, s.pc, 1, 2, del)
			if replacedLoser {
				s.waitCopyGone(t)
				return
			}
			waitFor(t, "x.txt to be deleted", func() bool {
				_, err := os.Lstat(filepath.Join(s.root, "x.txt"))
				return os.IsNotExist(err)
			})
			if cs := s.copies(); len(cs) != 1 {
				t.Fatalf("copies %v, want the copy of c's version to stay", cs)
			}
		})
	}
}

// TestFileOverDirectoryWithUnseenEntries: a peer deleted directory x
// (having seen it) and created a file x, while an entry inside x was made
// here that the peer never saw. The directory keeps the name, the file is
// kept as a conflict copy, and the directory gets a version that
// supersedes the file (before, the item waited forever for x to empty;
// 2-node fault run, round 202).
func TestFileOverDirectoryWithUnseenEntries(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	if err := os.Mkdir(filepath.Join(root, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.requestScan([]string{"x"}, false)
	var dir record.Record
	waitFor(t, "x recorded", func() bool {
		r, ok, err := f.get("x")
		dir = r
		return err == nil && ok && r.Type == record.Dir
	})
	if err := os.WriteFile(filepath.Join(root, "x", "unseen.txt"), []byte("made here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.requestScan([]string{"x/unseen.txt"}, false)
	waitFor(t, "x/unseen.txt recorded", func() bool {
		_, ok, err := f.get("x/unseen.txt")
		return err == nil && ok
	})
	pa := identity.ID{0xa0}
	a := pa.Short64()
	file := remoteFile(peers, "x", "file of a\n", 0o644, a, 1)
	file.MTime = 2e18
	file.Version = dir.Version.Merge(file.Version) // saw the directory
	file.PrevBy, file.PrevDot = dir.ModifiedBy, dir.Dot
	if err := f.HandleIndex(pa, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{file}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	copyName := ConflictName("x", time.Unix(0, file.MTime).UTC().Format(stampLayout), shortOf(a))
	waitFor(t, "x kept as a directory, the file as a copy, nothing needed", func() bool {
		st, err := os.Lstat(filepath.Join(root, "x"))
		if err != nil || !st.IsDir() {
			return false
		}
		b, err := os.ReadFile(filepath.Join(root, copyName))
		if err != nil || string(b) != "file of a\n" {
			return false
		}
		if u, err := os.ReadFile(filepath.Join(root, "x", "unseen.txt")); err != nil || string(u) != "made here\n" {
			return false
		}
		r, ok, err := f.get("x")
		s := f.Status()
		return err == nil && ok && r.Type == record.Dir && r.Version.Dominates(file.Version) && s.Needed == 0
	})
}

// TestCopyOfVersionReplacedTwiceGoes: c's version of x.txt loses a
// conflict here and is kept as a copy; c meanwhile overwrote it (a version
// this node never hears of) and then deleted that. The delete names only
// the middle version as replaced, and the one before it in Earlier: the
// copy must go (3-node fault run, round 1976).
func TestCopyOfVersionReplacedTwiceGoes(t *testing.T) {
	s := newCopyScene(t)
	s.sendA(t)
	s.waitCopy(t)
	// c's second version (dot 2, replacing dot 1) was never sent; its
	// delete (dot 3) replaced dot 2.
	c := s.c
	mid := record.Record{Path: "x.txt", Type: record.File, ModifiedBy: c, Dot: 2, PrevBy: c, PrevDot: 1}
	del := record.Record{Path: "x.txt", Type: record.File, Deleted: true, MTime: 3e18}.Replacing(&mid)
	del.ModifiedBy, del.Dot = c, 3
	del.Version = version.Vector{}.Update(c, 3)
	s.send(t, s.pc, 1, 2, del)
	s.waitCopyGone(t)
}

// TestCopyObsoleteBeforeItsCommitGoes: the record that replaces the
// version a conflict copy keeps arrives while the copy is being made, after
// it is on disk and before the index has it, so receiving it finds no copy
// to flag. Recording the copy must find it obsolete; otherwise the copy of
// a deleted version stays for good (3-node fault run).
func TestCopyObsoleteBeforeItsCommitGoes(t *testing.T) {
	s := newCopyScene(t)
	c := s.c
	del := record.Record{Path: "x.txt", Type: record.File, Deleted: true, MTime: 3e18, ModifiedBy: c, Dot: 2,
		Version: version.Vector{}.Update(c, 0).Update(c, 0), PrevBy: c, PrevDot: 1}
	var once sync.Once
	delivered := make(chan error, 1)
	hook := func(point string) {
		if point != crashpoint.ApplyAfterRename {
			return
		}
		once.Do(func() {
			delivered <- s.f.HandleIndex(s.pc, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{del}, Last: 2})
		})
	}
	s.f.testHook.Store(&hook)
	s.sendA(t) // c's version becomes a copy
	select {
	case err := <-delivered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a's version was never placed")
	}
	s.waitCopyGone(t)
}

// TestWriteToNewCopyStaysThere: a conflict copy is a file of its own from
// the moment it appears. A write to it before the winner replaces the
// original name must not show at the name (a hard-linked copy shared the
// inode until then; 3-node fault run).
func TestWriteToNewCopyStaysThere(t *testing.T) {
	s := newCopyScene(t)
	f, root := s.f, s.root
	var once sync.Once
	wrote := make(chan error, 1)
	hook := func(point string) {
		if point != crashpoint.ConflictAfterCopy {
			return
		}
		once.Do(func() {
			ms := s.copies()
			if len(ms) != 1 {
				wrote <- fmt.Errorf("copies %v, want one", ms)
				return
			}
			fh, err := os.OpenFile(ms[0], os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				_, err = fh.WriteString("edit of the copy\n")
				fh.Close()
			}
			wrote <- err
		})
	}
	f.testHook.Store(&hook)
	s.sendA(t) // c's version becomes a copy
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no conflict copy was made")
	}
	contents := func() map[string]string {
		out := map[string]string{}
		es, _ := os.ReadDir(root)
		for _, e := range es {
			if b, err := os.ReadFile(filepath.Join(root, e.Name())); err == nil {
				out[e.Name()] = string(b)
			}
		}
		return out
	}
	waitFor(t, "a's version at the name, the edited copy next to it", func() bool {
		cs := contents()
		if cs["x.txt"] != "version of a\n" || len(cs) != 2 {
			return false
		}
		for name, s := range cs {
			if strings.HasPrefix(name, "x.conflict-") && s == "version of c\nedit of the copy\n" {
				return true
			}
		}
		return false
	})
	// The edit is recorded as a local change of the copy, which makes it
	// an ordinary file.
	ms := s.copies()
	if len(ms) != 1 {
		t.Fatalf("copies %v", ms)
	}
	waitFor(t, "the edited copy recorded", func() bool {
		r, ok, err := f.get(filepath.Base(ms[0]))
		return err == nil && ok && r.Size == int64(len("version of c\nedit of the copy\n")) && r.CopyOf == ""
	})
	if cs := contents(); cs["x.txt"] != "version of a\n" || len(cs) != 2 {
		t.Fatalf("tree %v", cs)
	}
}

// TestLocalDeleteRevivesConcurrentPeerVersion: a peer's concurrent
// version of x.txt loses to the local one (older mtime). Then x.txt is
// deleted here. The delete did not see the peer's version, which now
// wins (a delete never beats an edit it did not see): it must be taken,
// although no new record arrived from the peer.
func TestLocalDeleteRevivesConcurrentPeerVersion(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	p := filepath.Join(root, "x.txt")
	if err := os.WriteFile(p, []byte("local\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scan to record x.txt", func() bool {
		var r record.Record
		var ok bool
		_ = f.idx.View(func(tx *index.Tx) error { r, ok, _ = tx.Get("x.txt"); return nil })
		return ok && !r.Deleted
	})
	peer := identity.ID{0xbb}
	remote := remoteFile(peers, "x.txt", "peer\n", 0o644, peer.Short64(), 1)
	remote.MTime = 1 // older: loses to the local version
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{remote}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the work list to empty", func() bool {
		n := 0
		_ = f.idx.View(func(tx *index.Tx) error { n = tx.NeedCount(); return nil })
		return n == 0
	})
	if b, _ := os.ReadFile(p); string(b) != "local\n" {
		t.Fatalf("x.txt = %q, want the local version to win", b)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the peer's version to come back", func() bool {
		b, err := os.ReadFile(p)
		return err == nil && string(b) == "peer\n"
	})
}

// TestLocalCreateRacingRemoteFileIsKept creates a file locally just after
// the last check before a remote file of the same name is renamed into
// place. The local file is unknown to the index; it must not be replaced:
// both contents end up kept (one at the name, one as a conflict copy).
func TestLocalCreateRacingRemoteFileIsKept(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	p := filepath.Join(root, "new.txt")
	var once sync.Once
	hook := func(path string) {
		if path == "new.txt" {
			once.Do(func() {
				if err := os.WriteFile(p, []byte("local\n"), 0o644); err != nil {
					t.Error(err)
				}
			})
		}
	}
	testHookChecked.Store(&hook)
	t.Cleanup(func() { testHookChecked.Store(nil) })
	peer := identity.ID{0xbb}
	remote := remoteFile(peers, "new.txt", "peer\n", 0o644, peer.Short64(), 1)
	remote.MTime = 4e18 // newer than the local file: the peer's wins the name
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{remote}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both versions to be kept", func() bool {
		es, _ := os.ReadDir(root)
		got := map[string]bool{}
		for _, e := range es {
			if b, err := os.ReadFile(filepath.Join(root, e.Name())); err == nil {
				got[string(b)] = true
			}
		}
		return got["local\n"] && got["peer\n"]
	})
}

// TestDotlessTombstoneWithSameContextApplies: a peer sends a tombstone
// without a dot (the outcome of two crossed resolutions) whose context is
// exactly the local record's. It carries no event unseen here, yet the
// decision rules take it; the path must go on the work list and the file
// must be deleted (in a 3-node long run the node kept its file and
// reported itself in sync).
func TestDotlessTombstoneWithSameContextApplies(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	pa, pb := identity.ID{0xa0}, identity.ID{0xb0}
	a := pa.Short64()
	v := remoteFile(peers, "x.txt", "live version\n", 0o644, a, 5)
	if err := f.HandleIndex(pa, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{v}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the live version", func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "x.txt"))
		return string(b) == "live version\n"
	})
	var local record.Record
	waitFor(t, "the live version in the index", func() bool {
		_ = f.idx.View(func(tx *index.Tx) error { local, _, _ = tx.Get("x.txt"); return nil })
		return len(local.Version) > 0 && !local.Deleted
	})
	tomb := record.Record{Path: "x.txt", Type: record.File, Deleted: true, MTime: v.MTime, Version: local.Version}
	if err := f.HandleIndex(pb, &protocol.Index{Folder: "f", IndexID: 2, Records: []record.Record{tomb}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file to be deleted", func() bool {
		_, err := os.Lstat(filepath.Join(root, "x.txt"))
		return os.IsNotExist(err)
	})
}

// TestCopySupersededBySiblingCopyGoes: a conflict copy keeps version 1 of
// x.txt; another copy arrives keeping version 2, which replaced version 1
// (its CopyPrev names it) before it lost a conflict itself. No record of
// x.txt tells any more that version 1 was replaced, but the sibling copy
// does: the first copy must go (in a 3-node long run it came back).
func TestCopySupersededBySiblingCopyGoes(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	pb, pc := identity.ID{0xb0}, identity.ID{0xc0}
	b, c := pb.Short64(), pc.Short64()
	c1 := remoteFile(peers, "x.conflict-20260101-000000-B.txt", "version 1\n", 0o644, c, 1)
	c1.CopyOf, c1.CopyBy, c1.CopyDot = "x.txt", b, 1
	if err := f.HandleIndex(pc, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{c1}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first copy", func() bool {
		got, _ := os.ReadFile(filepath.Join(root, c1.Path))
		return string(got) == "version 1\n"
	})
	c2 := remoteFile(peers, "x.conflict-20260101-000001-B.txt", "version 2\n", 0o644, c, 2)
	c2.CopyOf, c2.CopyBy, c2.CopyDot = "x.txt", b, 2
	c2.CopyPrevBy, c2.CopyPrevDot = b, 1
	if err := f.HandleIndex(pc, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{c2}, Last: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second copy, and the first one gone", func() bool {
		got, _ := os.ReadFile(filepath.Join(root, c2.Path))
		_, err := os.Lstat(filepath.Join(root, c1.Path))
		return string(got) == "version 2\n" && os.IsNotExist(err)
	})
}

// TestDeleteBelowAFileIsDone: a peer deletes d/x while d, here, is now a
// file (renamed away and recreated as a file meanwhile; 3-node fault run,
// round 394). Nothing of the folder is at d/x: the delete is done, not
// retried forever.
func TestDeleteBelowAFileIsDone(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	if err := os.WriteFile(filepath.Join(root, "d"), []byte("a file now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.requestScan([]string{"d"}, false)
	waitFor(t, "d recorded", func() bool { r, ok, _ := f.get("d"); return ok && !r.Deleted })
	peer := identity.ID{0xd0}
	by := peer.Short64()
	del := record.Record{Path: "d/x", Type: record.File, Deleted: true, MTime: 5,
		Version: version.Vector{}.Update(by, 0).Update(by, 0), ModifiedBy: by, Dot: 2, PrevBy: by, PrevDot: 1}
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{del}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete to be done", func() bool {
		st := f.Status()
		return st.Needed == 0 && len(st.ItemError) == 0
	})
	if b, err := os.ReadFile(filepath.Join(root, "d")); err != nil || string(b) != "a file now\n" {
		t.Fatalf("d: %q %v", b, err)
	}
}

// TestFoldedVersionsAreAbsorbed: a peer holds the version this node holds
// (same event, same content) and has folded its own concurrent version of
// the same content into it (record.Record.Merged). The local record takes
// in the peer's context and its Merged list, and the work is done: were
// only the context taken in, the rules would ask for the same absorb
// forever.
func TestFoldedVersionsAreAbsorbed(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	pa, pb := identity.ID{0xa0}, identity.ID{0xb0}
	a, b := pa.Short64(), pb.Short64()
	v := remoteFile(peers, "x.txt", "same content\n", 0o644, a, 5)
	if err := f.HandleIndex(pa, &protocol.Index{Folder: "f", IndexID: 1, Records: []record.Record{v}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the version", func() bool {
		got, _ := os.ReadFile(filepath.Join(root, "x.txt"))
		return string(got) == "same content\n" && f.Status().Needed == 0
	})
	folded := v
	folded.Version = v.Version.Update(b, 0).Update(b, 0).Update(b, 0)
	folded.Merged = []record.Dot{{By: b, Dot: 3}}
	if err := f.HandleIndex(pb, &protocol.Index{Folder: "f", IndexID: 2, Records: []record.Record{folded}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the folded version recorded and nothing left to do", func() bool {
		var r record.Record
		_ = f.idx.View(func(tx *index.Tx) error { r, _, _ = tx.Get("x.txt"); return nil })
		return record.SameDots(r.Merged, folded.Merged) && r.Version.Get(b) == 3 && r.Dot == 5 && f.Status().Needed == 0
	})
}

package folder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"tandem/internal/blocks"
	"tandem/internal/config"
	"tandem/internal/crashpoint"
	"tandem/internal/fsutil"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// heldPeers serves blocks from memory and holds every request until
// release is closed, counting how many are held at once.
type heldPeers struct {
	mu      sync.Mutex
	data    map[[32]byte][]byte
	next    map[[32]byte][32]byte
	held    int
	maxHeld int
	release chan struct{}
}

func (p *heldPeers) Connected(identity.ID) bool { return true }
func (p *heldPeers) Hint(*protocol.Hint)        {}

func (p *heldPeers) Request(ctx context.Context, _ identity.ID, req *protocol.Request) ([]byte, error) {
	p.mu.Lock()
	d, _ := spanFrom(p.data, p.next, req)
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
		return d, nil
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
// fetch workers, each of several blocks too large for two to share a
// request, so that the workers' windows together could ask for twice
// maxRequests blocks at once: no more than maxRequests may be in flight
// (they are held in memory), and all files still arrive.
func TestBlockRequestsInFlightAreBounded(t *testing.T) {
	const files, perFile = fetchWorkers + 8, 2
	if fetchWorkers*min(perFile, window) <= maxRequests {
		t.Fatalf("the test needs fetchWorkers*%d > maxRequests", perFile)
	}
	peers := &heldPeers{data: map[[32]byte][]byte{}, next: map[[32]byte][32]byte{}, release: make(chan struct{})}
	// Blocks of more than half blocks.MaxSize: one request each.
	const blockSize = blocks.MaxSize/2 + 1
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
			data := make([]byte, blockSize)
			copy(data, fmt.Sprintf("file %d block %d", i, b))
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

// holdFirstBatch starts a folder, announces a file "first" from peer
// 9.9.9 (content "one") and returns once the batch placing it is held
// at the point after its renames, under the folder lock, until release
// is closed.
func holdFirstBatch(t *testing.T) (f *Folder, root string, peers *fakePeers, release chan struct{}) {
	t.Helper()
	peers = newFakePeers()
	f, root = startFolder(t, peers)
	peer := identity.ID{9, 9, 9}
	placing := make(chan struct{})
	release = make(chan struct{})
	var once sync.Once
	hook := func(point string) {
		if point == crashpoint.ApplyAfterRename {
			once.Do(func() { close(placing); <-release })
		}
	}
	f.testHook.Store(&hook)
	first := remoteFile(peers, "first", "one", 0o644, peer.Short64(), 1)
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{first}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-placing:
	case <-time.After(10 * time.Second):
		t.Fatal("the first file was never placed")
	}
	return f, root, peers, release
}

// fetchedWhileHeld announces recs from peer 9.9.9 (sequence numbers
// following "first") while the batch of holdFirstBatch is held, holds
// the fetch of the last of them, and checks that it is requested before
// the batch is released; then releases both.
func fetchedWhileHeld(t *testing.T, f *Folder, peers *fakePeers, release chan struct{}, recs []record.Record) {
	t.Helper()
	want := recs[len(recs)-1].Path
	gate := make(chan struct{})
	peers.mu.Lock()
	peers.hold[want] = gate
	peers.mu.Unlock()
	if err := f.HandleIndex(identity.ID{9, 9, 9}, &protocol.Index{Folder: "f", IndexID: 7, Records: recs, Last: uint64(1 + len(recs))}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-peers.requested:
		if p != want {
			t.Fatalf("requested %q, want %q", p, want)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatalf("%s was not fetched while the first batch was being placed", want)
	}
	close(release)
	close(gate)
}

// TestNextFilesFetchedWhileABatchIsPlaced holds the placing of a batch
// (at the crash point after its renames) and announces another file
// meanwhile: the new file is fetched at once, not after the batch, and
// both end up in place.
func TestNextFilesFetchedWhileABatchIsPlaced(t *testing.T) {
	f, root, peers, release := holdFirstBatch(t)
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	second := remoteFile(peers, "second", "two", 0o644, by, 2)
	fetchedWhileHeld(t, f, peers, release, []record.Record{second})
	waitFor(t, "both files in place", func() bool {
		a, errA := os.ReadFile(filepath.Join(root, "first"))
		b, errB := os.ReadFile(filepath.Join(root, "second"))
		return errA == nil && errB == nil && string(a) == "one" && string(b) == "two"
	})
}

// TestDirectoryOfNextPlanDoesNotHoldItsFiles is
// TestNextFilesFetchedWhileABatchIsPlaced with a directory: while a batch
// is being placed (under the folder lock), a directory and a file in it
// are announced. The file is fetched at once: placing the directory
// waits for the batch, but must not hold back fetching the files of its
// plan. The directory is placed before the file in it, with its mode.
func TestDirectoryOfNextPlanDoesNotHoldItsFiles(t *testing.T) {
	f, root, peers, release := holdFirstBatch(t)
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	var v version.Vector
	v = v.Update(by, 0).Update(by, 0)
	dir := record.Record{Path: "dir", Type: record.Dir, Mode: 0o750, MTime: 1e18, Version: v, ModifiedBy: by, Dot: 2}
	second := remoteFile(peers, "dir/second", "two", 0o644, by, 3)
	fetchedWhileHeld(t, f, peers, release, []record.Record{dir, second})
	waitFor(t, "everything in place", func() bool {
		a, errA := os.ReadFile(filepath.Join(root, "first"))
		b, errB := os.ReadFile(filepath.Join(root, "dir", "second"))
		fi, errD := os.Stat(filepath.Join(root, "dir"))
		return errA == nil && errB == nil && errD == nil && string(a) == "one" && string(b) == "two" && fi.Mode().Perm() == 0o750 && f.Status().Needed == 0
	})
	// The directory was placed as the remote one, not found by the scan
	// as a local one: its record is the peer's event.
	wantEvent(t, f, "dir", by, 2)
}

// wantEvent checks that the index records path as the event (by, dot).
func wantEvent(t *testing.T, f *Folder, path string, by, dot uint64) {
	t.Helper()
	r, ok, err := f.get(path)
	if err != nil || !ok {
		t.Fatalf("no record of %s: %v", path, err)
	}
	if r.ModifiedBy != by || r.Dot != dot {
		t.Fatalf("%s recorded as %d/%d, want %d/%d", path, r.ModifiedBy, r.Dot, by, dot)
	}
}

// TestConsecutiveBlocksShareARequest announces a file of many blocks that
// no local file holds: runs of consecutive blocks are asked for together
// (up to blocks.MaxSize a request), every block exactly once, and the file
// placed is exact.
func TestConsecutiveBlocksShareARequest(t *testing.T) {
	peers := newCountingPeers()
	f, root := startFolder(t, peers)
	waitReady(t, f)
	data := randomData(8<<20, 21) // under hintMin: no hints
	bl, _, err := blocks.Hash(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	serve(peers.fakePeers, "many.bin", data, bl)
	announce(t, f, root, identity.ID{9, 9, 9}, "many.bin", bl, data)
	for i, b := range bl {
		if n := peers.requests(b.Hash); n != 1 {
			t.Errorf("block %d covered by %d requests, want 1", i, n)
		}
	}
	peers.cmu.Lock()
	reqs := peers.reqs
	peers.cmu.Unlock()
	if min := (len(data) + blocks.MaxSize - 1) / blocks.MaxSize; reqs < min || reqs >= len(bl) {
		t.Errorf("%d requests for %d blocks of %d bytes, want from %d to fewer than one a block", reqs, len(bl), len(data), min)
	}
}

// TestSpanChecksEveryBlock: a run of blocks is accepted only if each of
// its blocks matches its own hash, and a run never grows past what one
// request may ask for.
func TestSpanChecksEveryBlock(t *testing.T) {
	data := randomData(3<<20, 22)
	bl, _, err := blocks.Hash(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var sp span
	var at int64
	for i, b := range bl {
		if i == 0 {
			sp = span{at: 0}
			sp.add(b)
		} else if sp.extends(at, b) {
			sp.add(b)
		} else {
			break
		}
		at += int64(b.Size)
	}
	if sp.size > blocks.MaxSize || len(sp.blocks) < 2 {
		t.Fatalf("span of %d blocks, %d bytes", len(sp.blocks), sp.size)
	}
	if sp.extends(at+1, bl[len(sp.blocks)]) {
		t.Fatal("a block that does not follow on extends the span")
	}
	good := data[:sp.size]
	if got := sp.mismatch(good); got != -1 {
		t.Fatalf("mismatch at %d in the right bytes", got)
	}
	bad := bytes.Clone(good)
	second := int(sp.blocks[0].Size)
	bad[second+5] ^= 1
	if got := sp.mismatch(bad); got != int64(second) {
		t.Fatalf("mismatch at %d, want %d (the second block)", got, second)
	}
	if got := sp.mismatch(good[:sp.size-1]); got == -1 {
		t.Fatal("short data accepted")
	}
}

// TestScanSkipsFilesBeingPlaced holds a batch after its rename, before
// its commit, and runs a full scan meanwhile: the file at its name but
// not yet in the index is left to the commit, not read and hashed as a
// local file new to the index; once the batch is committed, a scan finds
// it unchanged.
func TestScanSkipsFilesBeingPlaced(t *testing.T) {
	f, root, _, release := holdFirstBatch(t)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	if _, err := os.Stat(filepath.Join(root, "first")); err != nil {
		t.Fatalf("the held batch has not renamed its file: %v", err)
	}
	before := f.Status().Stats
	f.requestScan(nil, true)
	deadline := time.Now().Add(10 * time.Second)
	for f.Status().Stats.ScansCompleted == before.ScansCompleted {
		if time.Now().After(deadline) {
			t.Fatalf("a full scan did not complete while a batch was held; files hashed meanwhile: %d", f.Status().Stats.FilesHashed-before.FilesHashed)
		}
		time.Sleep(time.Millisecond)
	}
	if n := f.Status().Stats.FilesHashed - before.FilesHashed; n != 0 {
		t.Fatalf("the scan hashed %d files being placed", n)
	}
	close(release)
	released = true
	waitFor(t, "the file committed", func() bool {
		s := f.Status()
		return s.Needed == 0 && s.Files == 1
	})
	scans := f.Status().Stats.ScansCompleted
	f.requestScan(nil, true)
	waitFor(t, "a full scan after the commit", func() bool { return f.Status().Stats.ScansCompleted > scans })
	if n := f.Status().Stats.FilesHashed - before.FilesHashed; n != 0 {
		t.Fatalf("%d files hashed after the commit; the placed file's stat was not recorded", n)
	}
	wantEvent(t, f, "first", (identity.ID{9, 9, 9}).Short64(), 1)
}

// TestCreateMode checks when a temporary file may be created with the
// record's mode instead of being chmodded: only where the umask clears
// none of its bits, it has no special bits, the owner may read and write,
// and no default ACL decides the mode.
func TestCreateMode(t *testing.T) {
	saved, savedKnown := processUmask, umaskKnown
	defer func() { processUmask, umaskKnown = saved, savedKnown }()
	processUmask, umaskKnown = 0o022, true
	f := &Folder{}
	for _, tc := range []struct {
		mode  uint32
		exact bool
	}{
		{0o644, true}, {0o600, true}, {0o755, true}, {0o700, true}, {0o640, true},
		{0o666, false}, {0o777, false}, // the umask clears group and other write
		{0o4755, false}, {0o2755, false}, {0o1755, false}, // set with chmod
		{0o444, false}, {0o200, false}, {0o000, false}, // the owner cannot read and write
	} {
		perm, exact := f.createMode(&record.Record{Mode: tc.mode})
		if exact != tc.exact || (exact && perm != tc.mode) || (!exact && perm != 0o600) {
			t.Errorf("mode %o: got %o exact %v, want exact %v", tc.mode, perm, exact, tc.exact)
		}
	}
	f.tmpACL = true
	if _, exact := f.createMode(&record.Record{Mode: 0o644}); exact {
		t.Error("created with the record's mode although a default ACL decides it")
	}
	f.tmpACL = false
	umaskKnown = false
	if _, exact := f.createMode(&record.Record{Mode: 0o644}); exact {
		t.Error("created with the record's mode although the umask is unknown")
	}
}

// TestFetchedFilesHaveExactModes fetches files of many modes: each ends up
// with exactly its record's mode, whether it was created with it or
// chmodded.
func TestFetchedFilesHaveExactModes(t *testing.T) {
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	peer := identity.ID{9, 9, 9}
	modes := []uint32{0o644, 0o600, 0o755, 0o640, 0o666, 0o777, 0o444, 0o4755, 0o2750, 0o1777}
	var recs []record.Record
	for i, m := range modes {
		recs = append(recs, remoteFile(peers, fmt.Sprintf("m%04o", m), fmt.Sprintf("content %d", i), m, peer.Short64(), uint64(i+1)))
	}
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: recs, Last: uint64(len(recs))}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every file placed", func() bool { s := f.Status(); return s.Needed == 0 && s.Files == len(modes) })
	for _, m := range modes {
		fi, err := os.Lstat(filepath.Join(root, fmt.Sprintf("m%04o", m)))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := st.Mode & 0o7777; got != m {
			t.Errorf("file of mode %o placed with mode %o", m, got)
		}
	}
}

// TestLocalBlocksCopiedAndMissesFetched announces a file whose blocks the
// index places in a local file that no longer holds some of them (changed
// in place, its stat unchanged to the scan): every block still held is
// copied from it, in parallel, and only the others are requested, once;
// the file placed is exact.
func TestLocalBlocksCopiedAndMissesFetched(t *testing.T) {
	data := randomData(8<<20, 31) // direct I/O, under hintMin: no hints
	bl, _, err := blocks.Hash(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	changed := map[int]bool{2: true, 5: true, len(bl) - 1: true}
	peers := newCountingPeers()
	f, root := startFolderHooked(t, peers, config.Folder{}, func(fi *index.Folder, root string) {
		old := bytes.Clone(data)
		var at int64
		for i, b := range bl {
			if changed[i] {
				old[at+int64(b.Size)/2] ^= 0xff
			}
			at += int64(b.Size)
		}
		if err := os.WriteFile(filepath.Join(root, "old.bin"), old, 0o644); err != nil {
			t.Fatal(err)
		}
		// A folder with an index has its marker (or stops).
		if err := os.Mkdir(filepath.Join(root, record.MarkerDir), 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := fsutil.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		st, ok, err := r.Lstat("old.bin")
		if err != nil || !ok {
			t.Fatalf("stat old.bin: %v", err)
		}
		me := identity.ID{1, 2, 3}.Short64()
		rec := record.Record{Path: "old.bin", Type: record.File, Size: st.Size, Mode: st.Mode, MTime: st.MTime,
			UID: st.UID, GID: st.GID, Inode: st.Inode, CTime: st.CTime, Blocks: bl,
			Version: version.Vector{}.Update(me, 0), ModifiedBy: me, Dot: 1}
		if err := fi.Update(func(tx *index.Tx) error { _, err := tx.Put(rec); return err }); err != nil {
			t.Fatal(err)
		}
	}, nil)
	waitReady(t, f)
	serve(peers.fakePeers, "new.bin", data, bl)
	announce(t, f, root, identity.ID{9, 9, 9}, "new.bin", bl, data)
	for i, b := range bl {
		want := 0
		if changed[i] {
			want = 1
		}
		if n := peers.requests(b.Hash); n != want {
			t.Errorf("block %d requested %d times, want %d", i, n, want)
		}
	}
	st := f.Status()
	var changedBytes uint64
	for i := range changed {
		changedBytes += uint64(bl[i].Size)
	}
	if st.Stats.BytesReused != 8<<20-changedBytes {
		t.Errorf("%d bytes copied from the local file, want %d", st.Stats.BytesReused, 8<<20-changedBytes)
	}
}

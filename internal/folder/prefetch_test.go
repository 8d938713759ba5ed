package folder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tandem/internal/blocks"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// countingPeers is fakePeers that counts the requests for each block and
// keeps the hints the folder sends.
type countingPeers struct {
	*fakePeers
	cmu   sync.Mutex
	n     map[[32]byte]int
	reqs  int // requests in all
	hints []*protocol.Hint
}

func newCountingPeers() *countingPeers {
	return &countingPeers{fakePeers: newFakePeers(), n: map[[32]byte]int{}}
}

// Request counts a request once for every block it covers: the one whose
// hash it carries and those that follow it in its file.
func (c *countingPeers) Request(ctx context.Context, id identity.ID, req *protocol.Request) ([]byte, error) {
	c.fakePeers.mu.Lock()
	_, covered := c.fakePeers.answer(req)
	c.fakePeers.mu.Unlock()
	c.cmu.Lock()
	for _, h := range covered {
		c.n[h]++
	}
	c.reqs++
	c.cmu.Unlock()
	return c.fakePeers.Request(ctx, id, req)
}

func (c *countingPeers) Hint(h *protocol.Hint) {
	c.cmu.Lock()
	c.hints = append(c.hints, h)
	c.cmu.Unlock()
}

func (c *countingPeers) requests(h [32]byte) int {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	return c.n[h]
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func waitReady(t *testing.T, f *Folder) {
	t.Helper()
	waitFor(t, "the initial scan", func() bool {
		f.stMu.Lock()
		defer f.stMu.Unlock()
		return f.ready
	})
}

// serve registers every block of data with the fake peers; with a path,
// requests for it are served by offset from data, as a peer does.
func serve(p *fakePeers, path string, data []byte, bl []record.Block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ff := fakeFile{data: data, at: map[int64][32]byte{}}
	var off int
	for i, b := range bl {
		ff.at[int64(off)] = b.Hash
		p.data[b.Hash] = data[off : off+int(b.Size)]
		off += int(b.Size)
		if i+1 < len(bl) {
			p.next[b.Hash] = bl[i+1].Hash
		}
	}
	if path != "" {
		p.files[path] = ff
	}
}

// servedFile makes n random bytes (from seed), hashes them into blocks
// and has peers serve them at path ("": by hash only).
func servedFile(t *testing.T, peers *countingPeers, path string, n int, seed uint64) ([]byte, []record.Block, int64) {
	t.Helper()
	data := randomData(n, seed)
	bl, size, err := blocks.Hash(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	serve(peers.fakePeers, path, data, bl)
	return data, bl, size
}

// prefetchOf returns path's prefetch, nil if none.
func prefetchOf(f *Folder, path string) *prefetch {
	f.prefetch.mu.Lock()
	defer f.prefetch.mu.Unlock()
	return f.prefetch.m[path]
}

// prefetchCount returns how many prefetches f holds.
func prefetchCount(f *Folder) int {
	f.prefetch.mu.Lock()
	defer f.prefetch.mu.Unlock()
	return len(f.prefetch.m)
}

// waitHave waits until path's prefetch holds n blocks, and returns it.
func waitHave(t *testing.T, f *Folder, path string, n int) *prefetch {
	t.Helper()
	var pf *prefetch
	waitFor(t, "the hinted blocks of "+path+" to be fetched ahead", func() bool {
		if pf = prefetchOf(f, path); pf == nil {
			return false
		}
		pf.mu.Lock()
		defer pf.mu.Unlock()
		return len(pf.have) == n
	})
	return pf
}

// announce hands f peer's first version of path (blocks bl) and waits
// until the file holds want.
func announce(t *testing.T, f *Folder, root string, peer identity.ID, path string, bl []record.Block, want []byte) {
	t.Helper()
	by := peer.Short64()
	r := record.Record{Path: path, Type: record.File, Size: int64(len(want)), Mode: 0o644, MTime: 1e18, Blocks: bl,
		Version: version.Vector{}.Update(by, 0), ModifiedBy: by, Dot: 1}
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{r}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, path+" to be placed exact", func() bool {
		got, err := os.ReadFile(filepath.Join(root, path))
		return err == nil && bytes.Equal(got, want)
	})
}

// TestPrefetchedBlocksAreTakenOver hints the first half of a large file,
// one hinted block being another version's, then announces the file: the
// file placed must be exact, no block fetched ahead may be fetched again,
// the other version's block (which the peer's file no longer holds: the
// bytes at its offset do not match it) is not kept and is fetched when the
// file is announced, and no temporary file is left.
func TestPrefetchedBlocksAreTakenOver(t *testing.T) {
	peers := newCountingPeers()
	f, root := startFolder(t, peers)
	waitReady(t, f)
	data, bl, size := servedFile(t, peers, "big.bin", hintMin+5<<20, 1)
	half := len(bl) / 2
	hinted := append([]record.Block(nil), bl[:half]...)
	// Block 3 as it was in an older version: same size, other bytes.
	decoy := randomData(int(bl[3].Size), 2)
	hinted[3] = record.Block{Size: bl[3].Size, Hash: sha256.Sum256(decoy)}
	peers.mu.Lock()
	peers.data[hinted[3].Hash] = decoy
	peers.mu.Unlock()

	peer := identity.ID{9, 9, 9}
	// Hinted in two parts, as a sender hashing the file would.
	q := half / 2
	var qAt int64
	for _, b := range hinted[:q] {
		qAt += int64(b.Size)
	}
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "big.bin", Size: size, Offset: 0, Blocks: hinted[:q]})
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "big.bin", Size: size, Offset: qAt, Blocks: hinted[q:]})
	waitHave(t, f, "big.bin", half-1)
	announce(t, f, root, peer, "big.bin", bl, data)
	for i, b := range bl {
		want := 1
		if i == 3 {
			want = 2 // ahead, for the other version, and once announced
		}
		if n := peers.requests(b.Hash); n != want {
			t.Errorf("block %d requested %d times, want %d", i, n, want)
		}
	}
	waitFor(t, "no temporary file left", func() bool {
		es, _ := os.ReadDir(f.tmpDir())
		return len(es) == 0
	})
}

// TestLateHintsAfterAnnouncementFetchNothing: the sender's hints travel
// apart from its index, so the announcement of a large file can arrive
// before them. Once the file is announced (and fetched), hints of it
// must not start a prefetch: that would fetch the file a second time.
func TestLateHintsAfterAnnouncementFetchNothing(t *testing.T) {
	peers := newCountingPeers()
	f, root := startFolder(t, peers)
	waitReady(t, f)
	data, bl, size := servedFile(t, peers, "late.bin", hintMin+1<<20, 4)
	peer := identity.ID{9, 9, 9}
	announce(t, f, root, peer, "late.bin", bl, data)
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "late.bin", Size: size, Offset: 0, Blocks: bl[:8]})
	if n := prefetchCount(f); n != 0 {
		t.Fatalf("a late hint started %d prefetches", n)
	}
	for i, b := range bl {
		if n := peers.requests(b.Hash); n != 1 {
			t.Errorf("block %d requested %d times, want 1", i, n)
		}
	}
}

// TestUnclaimedPrefetchIsDropped: blocks fetched ahead for a file that is
// never announced are dropped after prefetchIdle, file and all, and an
// invalid hint starts nothing.
func TestUnclaimedPrefetchIsDropped(t *testing.T) {
	peers := newCountingPeers()
	f, _ := startFolder(t, peers)
	waitReady(t, f)
	_, bl, size := servedFile(t, peers, "", hintMin+1<<20, 3)
	peer := identity.ID{9, 9, 9}
	for _, bad := range []*protocol.Hint{
		{Folder: "f", Path: "../escape", Size: size, Blocks: bl[:2]},
		{Folder: "f", Path: "small", Size: 1 << 20, Blocks: bl[:2]},
		{Folder: "f", Path: "past-end", Size: size, Offset: size - 1, Blocks: bl[:2]},
		{Folder: "f", Path: "huge-block", Size: size, Blocks: []record.Block{{Size: blocks.MaxSize + 1}}},
	} {
		f.HandleHint(peer, bad)
	}
	if n := prefetchCount(f); n != 0 {
		t.Fatalf("invalid hints started %d prefetches", n)
	}
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "gone.bin", Size: size, Blocks: bl[:4]})
	name := waitHave(t, f, "gone.bin", 4).name
	f.dropPrefetches(time.Now(), false)
	if _, err := os.Stat(name); err != nil {
		t.Fatalf("a fresh prefetch was dropped: %v", err)
	}
	f.dropPrefetches(time.Now().Add(prefetchIdle+time.Second), false)
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Fatalf("an idle prefetch's file is still there: %v", err)
	}
	if n := prefetchCount(f); n != 0 {
		t.Fatalf("%d prefetches left", n)
	}
}

// TestScanHintsOnlyNewBlocks: hashing a new large file hints its blocks,
// in order from the start; a copy of it hints nothing (the peers have
// those blocks); a copy with a few changed bytes hints only blocks around
// the change. A file may be hashed more than once (the watcher reports
// it, and a hashing that saw it move is redone): each hashing is checked.
func TestScanHintsOnlyNewBlocks(t *testing.T) {
	peers := newCountingPeers()
	f, root := startFolder(t, peers)
	waitReady(t, f)
	data := randomData(hintMin+9<<20, 4)
	bl, _, _ := blocks.Hash(bytes.NewReader(data))
	outside := t.TempDir()
	// put writes a file next to the root and renames it in whole.
	put := func(name string, content []byte) {
		t.Helper()
		tmp := filepath.Join(outside, name)
		if err := os.WriteFile(tmp, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
		f.requestScan([]string{name}, false)
		waitFor(t, name+" to be recorded", func() bool {
			var r record.Record
			var ok bool
			_ = f.idx.View(func(tx *index.Tx) error { r, ok, _ = tx.Get(name); return nil })
			return ok && r.Size == int64(len(content))
		})
	}
	// passes returns the hints sent since the last call, split into one
	// list per hashing (a hashing hints at increasing offsets).
	passes := func() [][]*protocol.Hint {
		peers.cmu.Lock()
		hs := peers.hints
		peers.hints = nil
		peers.cmu.Unlock()
		var out [][]*protocol.Hint
		last := int64(-1)
		for _, h := range hs {
			if h.Offset <= last || out == nil {
				out = append(out, nil)
			}
			out[len(out)-1] = append(out[len(out)-1], h)
			last = h.Offset
		}
		return out
	}

	put("a.bin", data)
	ps := passes()
	if len(ps) == 0 {
		t.Fatal("hashing a new large file sent no hint")
	}
	for _, pass := range ps {
		var at int64
		n := 0
		for _, h := range pass {
			if h.Path != "a.bin" || h.Offset != at || h.Folder != "f" {
				t.Fatalf("hint %s at %d, want a.bin at %d", h.Path, h.Offset, at)
			}
			for _, b := range h.Blocks {
				if n >= len(bl) || b != bl[n] {
					t.Fatalf("hinted block %d differs", n)
				}
				at += int64(b.Size)
				n++
			}
		}
		if n < len(bl)/2 || n >= len(bl) {
			t.Errorf("%d of %d blocks hinted while hashing", n, len(bl))
		}
	}

	put("copy.bin", data)
	if ps := passes(); len(ps) != 0 {
		t.Errorf("a copy of a known file sent %d hints", len(ps[0]))
	}

	changed := bytes.Clone(data)
	copy(changed[10<<20:], "changed")
	put("changed.bin", changed)
	ps = passes()
	if len(ps) == 0 {
		t.Fatal("a changed copy sent no hint")
	}
	for _, pass := range ps {
		blocksHinted, covered := 0, false
		for _, h := range pass {
			end := h.Offset
			for _, b := range h.Blocks {
				end += int64(b.Size)
			}
			blocksHinted += len(h.Blocks)
			covered = covered || (h.Offset <= 10<<20 && 10<<20 < end)
		}
		if !covered || blocksHinted > 3 {
			t.Errorf("a change of 7 bytes hinted %d blocks (covering it: %v), want 1 to 3 around it", blocksHinted, covered)
		}
	}
}

// tmpNameKey must give the bytes the fmt format of earlier releases gave,
// so that recover finds their temporary files after an upgrade.
func TestTmpNameKeyMatchesFormat(t *testing.T) {
	for _, r := range []record.Record{
		{Path: "a/b.txt", Type: record.File, ModifiedBy: 1<<64 - 1, Dot: 7, Size: 123456789},
		{Path: "l", Type: record.Symlink, ModifiedBy: 3, Dot: 1, Target: "../x y"},
		{Path: "ünï/cödé", Type: record.File},
	} {
		want := fmt.Sprintf("%s\x00%d\x00%d\x00%d\x00%d\x00%s\x00", r.Path, r.Type, r.ModifiedBy, r.Dot, r.Size, r.Target)
		if got := string(tmpNameKey(&r)); got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

// TestPrefetchOfTwoHashingsDoesNotOverlap hints a file as hashed once,
// then as hashed again after 100 bytes were inserted at its start (every
// block moved): blocks fetched ahead must never overlap (a later one
// would overwrite part of one held), and the second version, announced,
// must be placed exact.
func TestPrefetchOfTwoHashingsDoesNotOverlap(t *testing.T) {
	peers := newCountingPeers()
	f, root := startFolder(t, peers)
	waitReady(t, f)
	v1 := randomData(hintMin+3<<20, 5)
	v2 := append(randomData(100, 6), v1...)
	bl1, size1, _ := blocks.Hash(bytes.NewReader(v1))
	bl2, size2, _ := blocks.Hash(bytes.NewReader(v2))
	serve(peers.fakePeers, "", v1, bl1)
	serve(peers.fakePeers, "", v2, bl2)
	peer := identity.ID{9, 9, 9}
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "moving.bin", Size: size1, Blocks: bl1[:len(bl1)/2]})
	f.HandleHint(peer, &protocol.Hint{Folder: "f", Path: "moving.bin", Size: size2, Blocks: bl2[:len(bl2)-1]})
	pf := prefetchOf(f, "moving.bin")
	if pf == nil {
		t.Fatal("no prefetch started")
	}
	type span struct{ from, to int64 }
	var spans []span
	waitFor(t, "the fetches ahead to settle", func() bool {
		pf.mu.Lock()
		defer pf.mu.Unlock()
		spans = spans[:0]
		for at, b := range pf.have {
			spans = append(spans, span{at, at + int64(b.Size)})
		}
		return len(pf.have) == pf.asked
	})
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			if a.from < b.to && b.from < a.to {
				t.Fatalf("blocks fetched ahead overlap: [%d,%d) and [%d,%d)", a.from, a.to, b.from, b.to)
			}
		}
	}
	announce(t, f, root, peer, "moving.bin", bl2, v2)
}

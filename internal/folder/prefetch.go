package folder

import (
	"context"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/blocks"
	"tandem/internal/directio"
	"tandem/internal/identity"
	"tandem/internal/protocol"
	"tandem/internal/record"
)

// A large file is announced only once it is hashed whole, which for a
// file of gigabytes takes seconds. Meanwhile its owner sends hints: the
// blocks hashed so far. The receiver fetches them ahead into a temporary
// file (a prefetch), and when the version is announced, fetchFile takes
// that file over and fetches only what is still missing. A prefetch is
// only a cache: every block in it was verified against its hash, and a
// block is used only where the announced version has that same block at
// that same offset.
const (
	// hintMin is the smallest file whose hashing is hinted.
	hintMin = 32 << 20
	// hintEvery is how much is hashed between two hints.
	hintEvery = 8 << 20
	// maxPrefetches bounds the files prefetched at once.
	maxPrefetches = 4
	// prefetchIdle is how long a prefetch nobody took over is kept after
	// its last hint: the file was changed again or deleted meanwhile.
	prefetchIdle = time.Minute
	// adoptedQuiet is how long hints for a path are ignored once its
	// prefetch was taken over (late hints of the same hashing).
	adoptedQuiet = 10 * time.Second
)

// prefetch is the content fetched ahead for one path.
type prefetch struct {
	path string
	src  identity.ID
	name string // temporary file
	file *os.File
	w    *directio.File // writes file's content

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetch goroutines
	sem    chan struct{}  // block requests in flight
	// written counts the bytes written, for kickWriteback.
	written atomic.Int64

	mu     sync.Mutex
	closed bool                   // taken over or dropped: no new fetches
	have   map[int64]record.Block // verified blocks, by offset
	asked  int                    // blocks requested (or done)
	// end is where the furthest block requested ends. A block is only
	// requested at or after it, so requested blocks never overlap: a
	// block of another hashing of the file (it was changed meanwhile)
	// must not overwrite part of one that is held.
	end  int64
	last time.Time // last hint
}

// prefetches are a folder's prefetches, by path.
type prefetches struct {
	mu      sync.Mutex
	m       map[string]*prefetch
	adopted map[string]time.Time
}

// HandleHint starts fetching, ahead of the announcement, the hinted blocks
// that no local file holds. It does not block: the caller is a
// connection's read loop. Hints are advice; a bad one is ignored.
func (f *Folder) HandleHint(peer identity.ID, h *protocol.Hint) {
	f.stMu.Lock()
	ready := f.ready
	f.stMu.Unlock()
	if !ready || !validHint(h) {
		return
	}
	now := f.opt.Now()
	pf := f.prefetchFor(peer, h.Path, now)
	if pf == nil {
		return
	}
	// Blocks a local file holds are copied from it when the version is
	// fetched; only the others are worth fetching now.
	local := f.heldLocally(h.Blocks)
	var todo []span // runs of consecutive blocks, one request each
	at := h.Offset
	pf.mu.Lock()
	pf.last = now
	for i, b := range h.Blocks {
		if !local[i] && at >= pf.end {
			pf.asked++
			pf.end = at + int64(b.Size)
			todo = appendRun(todo, at, b)
		}
		at += int64(b.Size)
	}
	if pf.closed || len(todo) == 0 {
		pf.mu.Unlock()
		return
	}
	pf.wg.Add(1) // under mu: stop waits for this goroutine
	pf.mu.Unlock()
	go func() {
		defer pf.wg.Done()
		for _, sp := range todo {
			select {
			case pf.sem <- struct{}{}:
			case <-pf.ctx.Done():
				return
			}
			pf.mu.Lock()
			closed := pf.closed
			if !closed {
				pf.wg.Add(1)
			}
			pf.mu.Unlock()
			if closed {
				<-pf.sem
				return
			}
			go func() {
				defer pf.wg.Done()
				defer func() { <-pf.sem }()
				f.prefetchSpan(pf, sp)
			}()
		}
	}()
}

// validHint reports whether h is one a peer may send.
func validHint(h *protocol.Hint) bool {
	if record.ValidName(h.Path) != nil || h.Size < hintMin || h.Offset < 0 || len(h.Blocks) == 0 {
		return false
	}
	end := h.Offset
	for _, b := range h.Blocks {
		if b.Size == 0 || b.Size > blocks.MaxSize {
			return false
		}
		end += int64(b.Size)
	}
	return end <= h.Size
}

// prefetchFor returns the prefetch of path from peer, started if need be;
// nil if none may be started.
func (f *Folder) prefetchFor(peer identity.ID, path string, now time.Time) *prefetch {
	ps := &f.prefetch
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if pf := ps.m[path]; pf != nil {
		if pf.src != peer {
			return nil
		}
		return pf
	}
	if at, ok := ps.adopted[path]; ok && now.Sub(at) < adoptedQuiet {
		return nil
	}
	if len(ps.m) >= maxPrefetches {
		return nil
	}
	name := f.tmpName()
	file, err := createTmp(name)
	if err != nil {
		f.log.Debug("cannot prefetch", "path", path, "err", err)
		return nil
	}
	w, err := directio.New(file)
	if err != nil {
		file.Close()
		os.Remove(name)
		f.log.Debug("cannot prefetch", "path", path, "err", err)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	pf := &prefetch{
		path: path, src: peer, name: name, file: file, w: w,
		ctx: ctx, cancel: cancel, sem: make(chan struct{}, window),
		have: map[int64]record.Block{}, last: now,
	}
	if ps.m == nil {
		ps.m = map[string]*prefetch{}
	}
	ps.m[path] = pf
	return pf
}

// prefetchSpan fetches a run of blocks into pf's file with one request and
// keeps each block that matches its hash (the file may have changed since
// the hint, in part); the others are left to fetchFile. Consecutive blocks
// that match are written with one write: a direct write of a whole span
// (up to blocks.MaxSize) costs the kernel about a third of what writes of
// its blocks one by one do.
func (f *Folder) prefetchSpan(pf *prefetch, sp span) {
	data, err := f.opt.Peers.Request(pf.ctx, pf.src, f.spanRequest(pf.path, sp))
	if err != nil {
		return
	}
	defer protocol.ReleaseBlock(data)
	f.stMu.Lock()
	f.stats.BytesFetched += uint64(len(data))
	f.stMu.Unlock()
	// held are the verified blocks not yet written: consecutive, so their
	// bytes are data from the first one's offset to the last one's end.
	var held []located
	write := func() bool { // false if the write failed
		if len(held) == 0 {
			return true
		}
		first, last := held[0], held[len(held)-1]
		run := data[first.at-sp.at : last.at-sp.at+int64(last.b.Size)]
		defer func() { held = held[:0] }()
		if _, err := pf.w.WriteAt(run, first.at); err != nil {
			return false
		}
		kickWriteback(pf.w, pf.file, &pf.written, len(run))
		pf.mu.Lock()
		for _, h := range held {
			pf.have[h.at] = h.b
		}
		pf.mu.Unlock()
		return true
	}
	sp.each(data, func(at int64, b record.Block, part []byte) bool {
		if part == nil {
			return false
		}
		if !blocks.Verify(part, b) {
			return write() // the blocks after it start a new run
		}
		held = append(held, located{at, b})
		return true
	})
	write()
}

// takePrefetch removes and returns path's prefetch, if any, once its
// fetches in flight are done; the caller owns its file.
func (f *Folder) takePrefetch(path string) *prefetch {
	ps := &f.prefetch
	ps.mu.Lock()
	pf := ps.m[path]
	if pf != nil {
		delete(ps.m, path)
	}
	// Hints of the hashing that produced this version are stale from now
	// on, also where none arrived yet: the sender queues hints apart from
	// its index, so the announcement can overtake them, and a prefetch
	// they started now would fetch the whole file a second time.
	if ps.adopted == nil {
		ps.adopted = map[string]time.Time{}
	}
	ps.adopted[path] = f.opt.Now()
	ps.mu.Unlock()
	if pf == nil {
		return nil
	}
	pf.stop()
	return pf
}

// stop lets the fetches in flight finish and starts no more.
func (pf *prefetch) stop() {
	pf.mu.Lock()
	pf.closed = true
	pf.mu.Unlock()
	pf.wg.Wait()
	pf.cancel()
}

// drop discards a prefetch nobody took over.
func (pf *prefetch) drop() {
	pf.cancel()
	pf.stop()
	pf.w.Discard()
	pf.file.Close()
	os.Remove(pf.name)
}

// holds reports whether pf's file holds block b at offset at.
func (pf *prefetch) holds(at int64, b record.Block) bool {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	got, ok := pf.have[at]
	return ok && got == b
}

// prefetchLoop drops prefetches no announcement took over, and all of
// them when ctx ends.
func (f *Folder) prefetchLoop(ctx context.Context) {
	t := time.NewTicker(prefetchIdle / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.dropPrefetches(f.opt.Now(), true)
			return
		case <-t.C:
			f.dropPrefetches(f.opt.Now(), false)
		}
	}
}

// dropPrefetches drops the prefetches without a hint for prefetchIdle
// before now (all of them if all is set), and forgets takeovers older
// than adoptedQuiet.
func (f *Folder) dropPrefetches(now time.Time, all bool) {
	var stale []*prefetch
	ps := &f.prefetch
	ps.mu.Lock()
	for p, pf := range ps.m {
		pf.mu.Lock()
		idle := now.Sub(pf.last) > prefetchIdle
		pf.mu.Unlock()
		if all || idle {
			stale = append(stale, pf)
			delete(ps.m, p)
		}
	}
	for p, at := range ps.adopted {
		if now.Sub(at) >= adoptedQuiet {
			delete(ps.adopted, p)
		}
	}
	ps.mu.Unlock()
	for _, pf := range stale {
		f.log.Debug("dropping blocks fetched ahead of an announcement that did not come", "path", pf.path)
		pf.drop()
	}
}

// hintingHash hashes the open file rel of size bytes; for a large file it
// hints every hintEvery bytes the blocks hashed so far to the peers.
func (f *Folder) hintingHash(rel string, size int64, fh io.Reader) ([]record.Block, int64, error) {
	if size < hintMin || f.opt.Peers == nil {
		return blocks.Hash(fh)
	}
	return blocks.HashReporting(fh, hintEvery, func(off int64, bs []record.Block) {
		// A block this node's index already knows (the file was renamed,
		// copied, or changed in a few places) is known to the peers too,
		// or will be: only runs of new blocks are hinted.
		known := f.heldLocally(bs)
		start, startAt, at := -1, int64(0), off
		for i := 0; i <= len(bs); i++ {
			if i < len(bs) && !known[i] {
				if start < 0 {
					start, startAt = i, at
				}
			} else if start >= 0 {
				f.opt.Peers.Hint(&protocol.Hint{Folder: f.cfg.ID, Path: rel, Size: size, Offset: startAt, Blocks: slices.Clone(bs[start:i])})
				start = -1
			}
			if i < len(bs) {
				at += int64(bs[i].Size)
			}
		}
	})
}

// heldLocally reports, for each block, whether the index knows a local
// file that holds it.
func (f *Folder) heldLocally(bs []record.Block) []bool {
	held := make([]bool, len(bs))
	for i, locs := range f.idx.FindBlocks(bs, 1) {
		held[i] = len(locs) > 0
	}
	return held
}

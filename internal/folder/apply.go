package folder

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/record"
)

// applier carries out the plans of one pullOnce: directories first
// (shallow to deep), then files and symlinks, then deletions (deep to
// shallow), so that a rename finds its blocks at the old name before that
// name is deleted. Files are fetched by fetchWorkers workers and put in
// place by one placing goroutine in batches, so that a thousand small
// files cost a few fsyncs, not thousands; a plan's directories go to
// that goroutine directly, ahead of its files. apply returns once a plan's
// files are handed to the workers: the next plan is read and its files
// fetched while the last batches of this one are placed (a plan used to
// wait for them, leaving the workers idle at its end). The paths in
// flight are left out of plans (Folder.applying) until they are placed
// or have failed. Deletions wait until every file in flight is placed.
type applier struct {
	f     *Folder
	ctx   context.Context
	sem   chan struct{} // one slot per fetch worker
	ready chan *job     // fetched, to be placed

	fetching atomic.Int64  // files handed to workers, not yet ready or failed
	idle     chan struct{} // signalled when fetching drops to zero
	inflight sync.WaitGroup
	busyN    atomic.Int64  // files handed to workers, not yet placed or failed
	emptied  chan struct{} // signalled when busyN drops to zero
	progress atomic.Bool   // a batch placed something since the last look

	// dispatched holds the files handed to workers in this pullOnce that
	// were not placed: one planned again (deferred, or failing without a
	// backoff yet) is not new work. A file placed leaves it, so that a
	// newer version of it is.
	mu         sync.Mutex
	dispatched map[string]bool
	placed     chan struct{} // closed when the placing goroutine ends
}

func (f *Folder) newApplier(ctx context.Context) *applier {
	a := &applier{
		f:          f,
		ctx:        ctx,
		sem:        make(chan struct{}, fetchWorkers),
		ready:      make(chan *job, placeBatchMax),
		idle:       make(chan struct{}, 1),
		emptied:    make(chan struct{}, 1),
		dispatched: map[string]bool{},
		placed:     make(chan struct{}),
	}
	go a.place()
	return a
}

// apply carries out one plan. It reports progress: something was placed
// (by this call, or by a batch since the last look), or new files were
// handed to the workers.
func (a *applier) apply(items []item) (progress bool) {
	f := a.f
	var dirs, files, dels []item
	for _, it := range items {
		switch {
		case it.dec.Result.Deleted:
			dels = append(dels, it)
		case it.dec.Result.Type == record.Dir:
			dirs = append(dirs, it)
		default:
			files = append(files, it)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].path < dirs[j].path })
	sort.Slice(dels, func(i, j int) bool {
		di, dj := strings.Count(dels[i].path, "/"), strings.Count(dels[j].path, "/")
		if di != dj {
			return di > dj
		}
		return dels[i].path > dels[j].path
	})

	// Directories go to the placing goroutine ahead of this plan's files,
	// which reach it only once fetched: a directory is placed in the same
	// batch as the first of its files or in an earlier one, and a batch
	// places its directories first, in order. They need no wait for the
	// files in flight (none of those is at a directory's path), and
	// placing them here, under the folder lock the placing goroutine
	// takes for every batch, held back the dispatch of this plan's files
	// until the batches before were placed: with a plan of 1 000 items,
	// the fetch workers ran dry once per plan.
	for _, it := range dirs {
		if a.ctx.Err() != nil {
			break
		}
		if a.track(it) {
			progress = true
		}
		if j := f.prepareOrFail(a.ctx, it); j != nil {
			a.ready <- j
		} else {
			a.done(it.path)
		}
	}

	for _, it := range files {
		if a.ctx.Err() != nil {
			break
		}
		if a.track(it) {
			progress = true
		}
		a.fetching.Add(1)
		a.sem <- struct{}{}
		go a.fetch(it)
	}

	// Deletions go deepest level first, one batch per level: a directory
	// is removed after everything below it, and entries of one level do
	// not depend on each other. Files in flight are placed first.
	if len(dels) > 0 {
		a.inflight.Wait()
	}
	for len(dels) > 0 {
		depth := strings.Count(dels[0].path, "/")
		n := 1
		for n < len(dels) && strings.Count(dels[n].path, "/") == depth {
			n++
		}
		if f.placeBatch(a.prepareAll(dels[:n])) {
			progress = true
		}
		dels = dels[n:]
	}
	if a.progress.Swap(false) {
		progress = true
	}
	return progress
}

func (a *applier) prepareAll(its []item) []*job {
	var out []*job
	for _, it := range its {
		if j := a.f.prepareOrFail(a.ctx, it); j != nil {
			out = append(out, j)
		}
	}
	return out
}

// track starts the flight of an item handed to the placing goroutine
// (directly, or through a fetch worker). It reports whether the item is
// new work in this pullOnce.
func (a *applier) track(it item) (fresh bool) {
	a.mu.Lock()
	if !a.dispatched[it.path] {
		a.dispatched[it.path] = true
		fresh = true
	}
	a.mu.Unlock()
	a.f.setApplying(it.path, true)
	a.inflight.Add(1)
	a.busyN.Add(1)
	return fresh
}

// setApplying marks path as being fetched or placed, or no longer.
func (f *Folder) setApplying(path string, on bool) {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	if on {
		f.applying[path] = struct{}{}
	} else {
		delete(f.applying, path)
	}
}

// fetch prepares one file (a fetch worker) and hands it to the placing
// goroutine.
func (a *applier) fetch(it item) {
	defer func() { <-a.sem }()
	if j := a.f.prepareOrFail(a.ctx, it); j != nil {
		a.ready <- j
	} else {
		a.done(it.path)
	}
	if a.fetching.Add(-1) == 0 {
		signal(a.idle)
	}
}

// done ends the flight of one file.
func (a *applier) done(path string) {
	a.f.setApplying(path, false)
	if a.busyN.Add(-1) == 0 {
		signal(a.emptied)
	}
	a.inflight.Done()
}

// signal wakes a waiter on ch (capacity 1) without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// place puts fetched files in place in batches. A batch collects what is
// ready for up to batchWindow while files are still being fetched (a
// stream of small files costs a few fsyncs per second rather than a few
// per file), and is placed at once when nothing more is on its way (a
// single change is not held back).
func (a *applier) place() {
	defer close(a.placed)
	for j := range a.ready {
		batch := []*job{j}
		window := time.NewTimer(batchWindow)
	collect:
		for len(batch) < placeBatchMax {
			select {
			case j, ok := <-a.ready:
				if !ok {
					break collect
				}
				batch = append(batch, j)
				continue
			default:
			}
			if a.fetching.Load() == 0 {
				break // nothing more on its way
			}
			select {
			case j, ok := <-a.ready:
				if !ok {
					break collect
				}
				batch = append(batch, j)
			case <-a.idle:
			case <-window.C:
				break collect
			}
		}
		window.Stop()
		if a.f.placeBatch(batch) {
			a.progress.Store(true)
		}
		a.mu.Lock()
		for _, j := range batch {
			if j.err == nil {
				delete(a.dispatched, j.path)
			}
		}
		a.mu.Unlock()
		for _, j := range batch {
			a.done(j.path)
		}
	}
}

// busy reports whether files are being fetched or placed.
func (a *applier) busy() bool { return a.busyN.Load() > 0 }

// close drains the applier and ends its placing goroutine.
func (a *applier) close() {
	a.inflight.Wait()
	close(a.ready)
	<-a.placed
}

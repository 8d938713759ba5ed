package folder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/crashpoint"
	"tandem/internal/fsutil"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/reconcile"
	"tandem/internal/record"
)

// item is one planned action.
type item struct {
	path    string
	local   *record.Record
	dec     reconcile.Decision
	sources []identity.ID // connected peers holding exactly the chosen version
}

// nothingLive reports whether the index holds nothing live at the path:
// the disk must then be free there, and the new version must not replace
// anything that appears (RENAME_NOREPLACE).
func (it *item) nothingLive() bool { return it.local == nil || it.local.Deleted }

// errDefer means: leave the path on the work list and look again later,
// without counting it as a failure.
var errDefer = errors.New("deferred")

const pullBatch = 1000

func (f *Folder) pullLoop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wakePull:
		case <-retry.C:
		}
		more := f.pullOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if more {
			retry.Reset(time.Second)
		} else {
			retry.Reset(time.Hour)
		}
	}
}

// pullOnce works through the list of needed paths. It reports whether
// work remains that must be retried later.
func (f *Folder) pullOnce(ctx context.Context) (remaining bool) {
	if err := f.markerOK(); err != nil {
		f.setState("error", err)
		return true
	}
	defer f.pruneTmp()
	a := f.newApplier(ctx)
	defer a.close()
	for ctx.Err() == nil {
		items, waiting, absorbed, err := f.plan()
		if err != nil {
			f.log.Error("planning", "err", err)
			return true
		}
		if len(items) == 0 {
			if a.busy() {
				// Everything planned is being fetched or placed: plan
				// again once it is done, or as soon as new work arrives.
				select {
				case <-a.emptied:
				case <-f.wakePull:
				case <-ctx.Done():
				}
				continue
			}
			if absorbed {
				continue
			}
			return waiting
		}
		if !a.apply(items) {
			return true
		}
	}
	return true
}

// plan reads the work list and decides each path. Paths that need nothing
// are cleared; paths whose version no connected peer can serve are left.
func (f *Folder) plan() (items []item, waiting, absorbed bool, err error) {
	now := time.Now()
	var clear []string
	var absorb []record.Record
	err = f.idx.View(func(tx *index.Tx) error {
		for _, p := range tx.Needs(pullBatch * 4) {
			if len(items) >= pullBatch {
				waiting = true
				break
			}
			f.stMu.Lock()
			ra := f.retryAfter[p]
			_, busy := f.applying[p]
			f.stMu.Unlock()
			if busy {
				continue // being fetched or placed; planned again after
			}
			if now.Before(ra.at) {
				waiting = true
				continue
			}
			local, had, err := tx.Get(p)
			if err != nil {
				return err
			}
			peers, recs, err := tx.Remotes(p) // in the order of the peers' IDs
			if err != nil {
				return err
			}
			var lp *record.Record
			if had {
				lp = &local
			}
			_, d, ok := reconcile.Choose(lp, recs)
			if !ok && had {
				obsolete, err := copyObsolete(tx, &local)
				if err != nil {
					return err
				}
				if obsolete {
					// A local delete of the copy, as if made here.
					at := f.opt.Now()
					del := f.newEvent(record.Record{Path: p, Type: local.Type, Deleted: true, MTime: at.UnixNano()}.Replacing(&local), local.Version)
					f.log.Info("deleting a conflict copy: the version it kept was deleted or replaced by a change that saw it", "path", p, "copy of", local.CopyOf)
					items = append(items, item{path: p, local: lp, dec: reconcile.Decision{Action: reconcile.Take, Result: del}})
					continue
				}
			}
			if !ok {
				clear = append(clear, p)
				continue
			}
			if d.Action == reconcile.Absorb {
				absorb = append(absorb, d.Result)
				continue
			}
			it := item{path: p, local: lp, dec: d}
			// Any connected peer holding the same content can serve it; the
			// blocks are verified by hash whoever sends them.
			for i, id := range peers {
				if record.SameContent(&recs[i], &d.Result) && f.opt.Peers != nil && f.opt.Peers.Connected(id) {
					it.sources = append(it.sources, id)
				}
			}
			if needsContent(&it) && len(it.sources) == 0 {
				waiting = true
				continue
			}
			items = append(items, it)
		}
		return nil
	})
	if err == nil && len(clear)+len(absorb) > 0 {
		err = f.idx.Update(func(tx *index.Tx) error {
			// Checked again here: a peer's record may have arrived since.
			if err := clearNeedsIfDone(tx, clear); err != nil {
				return err
			}
			// Absorb: the local content stays, its record learns what the
			// peer saw. Only the context changes, so no disk check is needed;
			// if the local record changed meanwhile, the path is looked at
			// again.
			for _, r := range absorb {
				cur, ok, err := tx.Get(r.Path)
				if err != nil {
					return err
				}
				if !ok || cur.ModifiedBy != r.ModifiedBy || cur.Dot != r.Dot {
					continue
				}
				cur.Version = cur.Version.Merge(r.Version)
				if e := record.MergeEarlier(cur.Earlier, r.Earlier); !record.SameDots(e, cur.Earlier) {
					cur.Earlier = e
				}
				if m := record.MergeEarlier(cur.Merged, r.Merged); !record.SameDots(m, cur.Merged) {
					cur.Merged = m
				}
				if _, err := tx.Put(cur); err != nil {
					return err
				}
				// Copies of versions it now knows were replaced.
				if _, err := flagCopies(tx, &cur); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil && len(absorb) > 0 {
			f.opt.Changed()
			absorbed = true // look again: the needs clear once nothing is left to absorb
		}
	}
	return items, waiting, absorbed, err
}

// needsContent reports whether applying it requires fetching data that may
// not be available locally.
func needsContent(it *item) bool {
	r := &it.dec.Result
	if r.Deleted || r.Type != record.File || r.Size == 0 {
		return false
	}
	if it.dec.Action == reconcile.Merge {
		return false
	}
	return true
}

const (
	fetchWorkers  = 128
	placeWorkers  = 4
	placeBatchMax = 512
	batchWindow   = 50 * time.Millisecond
)

// job is an item prepared for placing.
type job struct {
	item
	r   record.Record // the record to store, version bumped if resolving
	tmp string        // prepared temporary file or link, if any
	// set while placing:
	copy    *record.Record // the conflict copy made of the local version, to be recorded with r
	after   *placedStat    // the path's lstat right after it was placed, if it was
	handled bool           // committed by its own path (directory kept alive)
	err     error
}

// prepareOrFail prepares an item, recording a failure if it cannot be.
func (f *Folder) prepareOrFail(ctx context.Context, it item) *job {
	j, err := f.prepare(ctx, it)
	if err != nil {
		f.outcome(ctx, it.path, err)
		return nil
	}
	return j
}

// outcome records the result of one item.
func (f *Folder) outcome(ctx context.Context, path string, err error) {
	switch {
	case err == nil:
		f.setItemErr(path, nil)
	case errors.Is(err, errDefer), ctx.Err() != nil:
	default:
		f.failed(path, err)
	}
}

func (f *Folder) failed(path string, err error) {
	f.log.Warn("could not apply remote change; will retry", "path", path, "err", err)
	f.stMu.Lock()
	defer f.stMu.Unlock()
	f.itemErrs[path] = err.Error()
	r := f.retryAfter[path]
	back := min(retryMin<<min(r.attempts, 8), retryMax)
	f.retryAfter[path] = retry{at: time.Now().Add(back), attempts: r.attempts + 1}
}

// prepare does the work of an item that needs no lock: it computes the
// record to store and, for a file, assembles its content in a temporary
// file (fetched or copied from local blocks, not yet fsynced).
func (f *Folder) prepare(ctx context.Context, it item) (*job, error) {
	r := it.dec.Result
	r.Path = it.path
	j := &job{item: it, r: r}
	// The path's parents are checked where it matters, right before the
	// disk changes (placeOne); the content is assembled under .tandem.
	if r.Deleted || it.dec.Action == reconcile.Merge {
		return j, nil
	}
	switch r.Type {
	case record.File:
		tmp, err := f.fetchFile(ctx, &r, it.sources)
		if err != nil {
			return nil, err
		}
		j.tmp = tmp // owner, mode and mtime set by fetchFile
	case record.Symlink:
		tmp := f.tmpNameFor(&r)
		err := inDir(tmp, func() error { return os.Symlink(r.Target, tmp) })
		if errors.Is(err, fs.ErrExist) {
			os.Remove(tmp) // left by an earlier attempt
			err = os.Symlink(r.Target, tmp)
		}
		if err != nil {
			return nil, fmt.Errorf("create symlink for %s: %w", f.root.Abs(it.path), err)
		}
		j.tmp = tmp
		if err := setMetaAbs(tmp, &r, f.withOwner && !f.createdAs(&r)); err != nil {
			os.Remove(tmp)
			return nil, err
		}
	}
	return j, nil
}

// placeBatch puts prepared jobs in place and commits them:
//
//  1. under the folder lock, each target is checked against the index;
//  2. one syncfs makes the temporary files durable;
//  3. one transaction records every job as pending;
//  4. the filesystem operations (rename into place, mkdir, move to trash);
//  5. one syncfs makes the renames durable;
//  6. one transaction stores the new records and clears the work items.
//
// A crash anywhere leaves either the old state or a pending record that
// start-up recovery resolves by looking at the disk. It reports whether any
// job completed.
func (f *Folder) placeBatch(jobs []*job) (progress bool) {
	if len(jobs) == 0 {
		return false
	}
	defer func() {
		for _, j := range jobs {
			if j.tmp != "" {
				os.Remove(j.tmp)
			}
		}
	}()
	f.mu.Lock()
	live := jobs[:0:0]
	for _, j := range jobs {
		// Every target is checked once more right before it changes
		// (placeOne); a conflict copy is made of the local content
		// first, so it is checked here.
		if j.dec.Action == reconcile.ConflictTake {
			if err := f.verifyUnchanged(j.item); err != nil {
				j.err = err
				continue
			}
			if err := f.keepConflictCopy(j); err != nil {
				j.err = err
				continue
			}
		}
		live = append(live, j)
	}
	err := f.placeLocked(live)
	f.mu.Unlock()
	if err != nil {
		for _, j := range live {
			if j.err == nil && !j.handled {
				j.err = err
			}
		}
	}
	ctx := context.Background()
	for _, j := range jobs {
		f.outcome(ctx, j.path, j.err)
		if j.err == nil {
			progress = true
		}
	}
	if progress {
		f.opt.Changed()
	}
	return progress
}

func (f *Folder) placeLocked(jobs []*job) error {
	if len(jobs) == 0 {
		return nil
	}
	needSync := false
	for _, j := range jobs {
		needSync = needSync || j.tmp != ""
	}
	if needSync {
		if err := f.syncFS(); err != nil {
			return err
		}
	}
	if err := f.idx.Update(func(tx *index.Tx) error {
		for _, j := range jobs {
			if err := tx.SetPending(j.r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterPending)
	f.markInflight(jobs)
	defer f.unmarkInflight(jobs)
	f.placeAll(jobs)
	if err := f.syncFS(); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterRename)
	f.hit(crashpoint.ApplyAfterRename)
	applied := 0
	err := f.idx.Update(func(tx *index.Tx) error {
		for _, j := range jobs {
			if j.copy != nil {
				if err := f.recordCopy(tx, j.copy); err != nil {
					return err
				}
			}
			if j.err != nil || j.handled {
				if err := tx.ClearPending(j.path); err != nil {
					return err
				}
				continue
			}
			r := j.r
			if !r.Deleted {
				ps := j.after
				if ps == nil {
					ps = f.statPlaced(j.path)
				}
				st, ok, err := ps.st, ps.ok, ps.err
				// Cache the stat only if it shows what was placed: a
				// local write right after the rename must not be taken
				// for the remote version; without a cache the next scan
				// hashes the file. If the path is already gone (deleted
				// here right after it was placed), the version was still
				// at the name, so it is recorded: the scan's delete then
				// knows it saw this version.
				if err != nil || !ok {
					f.requestScan([]string{j.path}, false)
				} else if r.Type == record.Dir || r.Type == record.Symlink || (st.Size == r.Size && st.MTime == r.MTime) {
					r.Inode, r.CTime = st.Inode, st.CTime
				} else {
					f.requestScan([]string{j.path}, false)
				}
			}
			if _, err := tx.Put(r); err != nil {
				return err
			}
			if err := tx.ClearPending(r.Path); err != nil {
				return err
			}
			// A copy whose version is already gone stays on the work list,
			// to be deleted next.
			if obsolete, err := copyObsolete(tx, &r); err != nil {
				return err
			} else if !obsolete {
				if err := clearNeedIfDone(tx, r.Path, &r); err != nil {
					return err
				}
			}
			// Copies this version makes obsolete, now that it is here.
			if _, err := flagCopies(tx, &r); err != nil {
				return err
			}
			applied++
			f.log.Debug("applied remote version", "path", r.Path, "action", j.dec.Action, "deleted", r.Deleted, "version", r.Version)
		}
		return nil
	})
	if err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterCommit)
	f.stMu.Lock()
	f.stats.FilesApplied += uint64(applied)
	f.stMu.Unlock()
	return nil
}

// placeAll runs placeOne for every job. Files and symlinks at distinct
// paths do not depend on each other, and placing one is a handful of
// system calls, so they are placed by a few goroutines, after the
// batch's directories, which go first and in order (a parent before its
// children and before the files placed in them). Batches holding
// deletions keep their order. Each placing goroutine keeps the parent
// directory it opened last for the next file in it (fsutil.StatCache).
func (f *Folder) placeAll(jobs []*job) {
	if slices.ContainsFunc(jobs, func(j *job) bool { return j.r.Deleted }) {
		for _, j := range jobs {
			f.placeAndStat(j, nil)
		}
		return
	}
	var rest []*job
	for _, j := range jobs {
		if j.r.Type == record.Dir {
			f.placeAndStat(j, nil)
		} else {
			rest = append(rest, j)
		}
	}
	if len(rest) <= 1 {
		for _, j := range rest {
			f.placeAndStat(j, nil)
		}
		return
	}
	// In path order, each goroutine a contiguous share: a goroutine's
	// files are mostly in the same directories, which it keeps open, and
	// goroutines rarely create entries in the same directory at once
	// (they would wait for its lock).
	slices.SortFunc(rest, func(a, b *job) int { return strings.Compare(a.path, b.path) })
	var wg sync.WaitGroup
	n := min(placeWorkers, len(rest))
	for w := range n {
		share := rest[w*len(rest)/n : (w+1)*len(rest)/n]
		wg.Go(func() {
			parents := f.root.NewStatCache()
			defer parents.Close()
			for _, j := range share {
				f.placeAndStat(j, parents)
			}
		})
	}
	wg.Wait()
}

// placeAndStat places j and, if that worked, takes the stat the commit
// caches, here in parallel rather than in the commit's transaction. A
// local write after this stat is not missed: the watcher's event for the
// path is postponed until the commit (markInflight) and then scanned
// against the stored stat.
func (f *Folder) placeAndStat(j *job, parents *fsutil.StatCache) {
	j.err = f.placeOne(j, parents)
	if j.err == nil && !j.handled && !j.r.Deleted && j.after == nil {
		j.after = f.statPlaced(j.path)
	}
}

func (f *Folder) statPlaced(rel string) *placedStat {
	st, ok, err := f.root.StatPath(rel)
	return &placedStat{st, ok, err}
}

// placedStat is the result of StatPath on a path just placed.
type placedStat struct {
	st  fsutil.Stat
	ok  bool
	err error
}

// placeOne makes the disk match j.r. Caller holds f.mu.
func (f *Folder) placeOne(j *job, parents *fsutil.StatCache) error {
	r := &j.r
	if placesFree(j) {
		if handled, err := f.placeFree(j, parents); handled {
			return err
		}
	}
	if err := f.root.CheckParents(j.path); err != nil {
		if r.Deleted && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fsutil.ErrSymlinkParent)) {
			// Already gone with its parent, or a parent is now a file or
			// a symlink here: nothing of the folder is at that path.
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := f.mkParents(j.path); err != nil {
			return err
		}
	}
	// The last check before the disk changes. A live local file that is
	// replaced or deleted is checked and held open (guardLocal), so a
	// write that still slips in can be saved; anything else is checked
	// against the index (verifyUnchanged: where the index holds nothing
	// live, the path must still be free). A merge only sets metadata on
	// the file it checked.
	var g *guard
	if j.dec.Action != reconcile.Merge {
		var err error
		if g, err = f.guardLocal(j.item); err != nil {
			return err
		}
	}
	if g == nil {
		if err := f.verifyUnchanged(j.item); err != nil {
			return err
		}
		checked(j.path)
	}
	defer f.release(g, j.path, r.Deleted)
	switch {
	case j.dec.Action == reconcile.Merge:
		if r.Deleted {
			return nil
		}
		return f.root.SetMeta(j.path, r, f.withOwner)
	case r.Deleted:
		if g != nil {
			return f.takeOut(j, g)
		}
		return f.removeForDelete(j)
	case r.Type == record.Dir:
		if g != nil {
			if err := f.takeOut(j, g); err != nil {
				return err
			}
		} else if err := f.removeForType(j.item, record.Dir); err != nil {
			return err
		}
		if err := f.root.OS().Mkdir(j.path, os.FileMode(r.Mode&0o777)|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create directory %s: %w", f.root.Abs(j.path), err)
		}
		return f.root.SetMeta(j.path, r, f.withOwner)
	default:
		// A path verified free just now needs no clearing: if something
		// appears there meanwhile, the rename refuses to replace it.
		if g != nil {
			return f.exchangeInto(j, g)
		}
		if !j.nothingLive() {
			if err := f.removeForType(j.item, r.Type); errors.Is(err, errDirNotEmpty) {
				return f.dirKeepsName(j)
			} else if err != nil {
				return err
			}
			if err := f.keepBeforeOverwrite(j.path); err != nil {
				return err
			}
		}
		if err := f.renameInto(j); err != nil {
			return err
		}
		j.tmp = ""
		return nil
	}
}

func (f *Folder) mkParents(rel string) error {
	p := record.Parent(rel)
	if p == "" {
		return nil
	}
	if err := f.root.OS().MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("create parent directories of %s: %w", rel, err)
	}
	return f.root.CheckParents(rel)
}

// verifyUnchanged checks that the disk still holds what the index says is
// there, so that a remote change never replaces a local edit the index has
// not recorded yet. If it differs, a scan is queued and the item waits.
func (f *Folder) verifyUnchanged(it item) error {
	st, ok, err := f.root.StatPath(it.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	switch {
	case it.nothingLive():
		if !exists {
			return nil
		}
	case exists && ok && st.Matches(it.local):
		return nil
	}
	f.requestScan([]string{it.path}, false)
	return errDefer
}

// keepConflictCopy moves the local content aside under a conflict name
// and records it as a new local file, so that it syncs everywhere.
func (f *Folder) keepConflictCopy(j *job) error {
	it := j.item
	loc := *it.local
	if f.cfg.Conflict == "newest-wins" {
		// The loser goes to the trash (or away, with the trash off)
		// instead of becoming a copy: placing the winner replaces it,
		// keeping it in the trash first like any overwrite.
		f.log.Warn("conflict: concurrent versions; the older one goes to the trash (conflict = newest-wins)", "path", it.path)
		f.countConflict()
		return nil
	}
	stamp := time.Unix(0, loc.MTime).UTC().Format(stampLayout)
	short := shortOf(loc.ModifiedBy)
	name := ConflictName(it.path, stamp, short)
	for i := 2; ; i++ {
		// A conflict copy that conflicts again can get its own name back
		// (same second, same node): that name is never free.
		if name != it.path {
			held, err := f.holds(name, &loc)
			if err != nil {
				return err
			}
			if held {
				// Another node already preserved this very content under
				// this name (and it reached us): no duplicate copy; the
				// winner simply replaces it.
				f.log.Info("conflict: the local version is already kept as a copy", "path", it.path, "copy", name)
				return nil
			}
			if _, err := f.root.OS().Lstat(name); errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
		name = ConflictName(it.path, stamp, fmt.Sprintf("%s.%d", short, i))
	}
	// A copy, not a rename: the local version never leaves its name until
	// the winner replaces it, so a crash in between cannot look like a
	// local delete (which would also delete the copy as obsolete). Not a
	// hard link either: until the winner's rename, a write to either name
	// would change both. Both are recorded in one transaction after the
	// winner is placed; after a crash before that, the next scan finds
	// the copy as a new local file.
	if err := f.copyLocal(it.path, name, &loc); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ConflictAfterCopy)
	f.hit(crashpoint.ConflictAfterCopy)
	st, ok, err := f.root.Lstat(it.path)
	if err != nil || !ok || !st.Matches(&loc) {
		f.root.OS().Remove(name)
		f.requestScan([]string{it.path}, false)
		return errDefer
	}
	j.local = &loc
	f.countConflict()
	f.log.Warn("conflict: concurrent versions; keeping the local one as a copy", "path", it.path, "copy", name)
	cp := loc
	cp.Path, cp.Seq = name, 0
	cp.CopyOf, cp.CopyBy, cp.CopyDot = it.path, loc.ModifiedBy, loc.Dot
	cp.CopyPrevBy, cp.CopyPrevDot, cp.CopyEarlier = loc.PrevBy, loc.PrevDot, loc.Earlier
	cp.PrevBy, cp.PrevDot, cp.Earlier, cp.Merged = 0, 0, nil, nil
	j.copy = &cp
	return nil
}

// recordCopy stores a conflict copy made by keepConflictCopy, with the
// stat it has now (the winner's rename changed its ctime), as a new event
// of this node.
func (f *Folder) recordCopy(tx *index.Tx, cp *record.Record) error {
	st, ok, err := f.root.Lstat(cp.Path)
	if err != nil || !ok {
		// Gone or unreadable already: the scan will tell.
		f.requestScan([]string{cp.Path}, false)
		return nil
	}
	rec := *cp
	rec.Inode, rec.CTime = st.Inode, st.CTime
	old, _, err := tx.Get(rec.Path)
	if err != nil {
		return err
	}
	rec = f.newEvent(rec, old.Version)
	if _, err := tx.Put(rec); err != nil {
		return err
	}
	// A record that replaced the kept version may have arrived while the
	// copy was being made, when there was no copy yet to flag: the copy
	// goes on the work list now if it has nothing left to keep. And sibling
	// copies whose version this copy's version replaced.
	if obsolete, err := copyObsolete(tx, &rec); err != nil {
		return err
	} else if obsolete {
		if err := tx.SetNeed(rec.Path); err != nil {
			return err
		}
	}
	_, err = flagCopies(tx, &rec)
	return err
}

// holds reports whether path exists with exactly the content of rec, as
// the index records it and the disk still shows it.
func (f *Folder) holds(path string, rec *record.Record) (bool, error) {
	cur, ok, err := f.get(path)
	if err != nil || !ok || cur.Deleted || !record.SameContent(&cur, rec) {
		return false, err
	}
	st, ok, err := f.root.Lstat(path)
	return err == nil && ok && st.Matches(&cur), nil
}

// shortOf renders the 7-character short form of a node's short ID.
func shortOf(id uint64) string {
	var full identity.ID
	for i := 0; i < 8; i++ {
		full[i] = byte(id >> (56 - 8*i))
	}
	return full.Short()
}

// removeForDelete carries out a remote delete: files and links go to the
// trash, directories are removed if empty.
func (f *Folder) removeForDelete(j *job) error {
	st, ok, err := f.root.Lstat(j.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case ok && st.Type == record.Dir:
		if err := f.root.OS().Remove(j.path); err != nil {
			if isNotEmpty(err) {
				return f.dirNotEmpty(j)
			}
			return fmt.Errorf("delete %s: %w", f.root.Abs(j.path), err)
		}
	case ok:
		if err := f.discard(j.path); err != nil {
			return err
		}
	}
	crashpoint.Hit(crashpoint.DeleteAfterRemove)
	return nil
}

// dirNotEmpty handles a remote delete of a directory that still has
// entries here. If deletions below it are still queued, it waits for them.
// Otherwise the entries are things the deleter never saw, so the
// directory stays and gets a new version that supersedes the delete.
func (f *Folder) dirNotEmpty(j *job) error {
	if f.needsBelow(j.path) {
		return errDefer
	}
	st, _, err := f.root.Lstat(j.path)
	if err != nil {
		return err
	}
	if err := f.keepDir(j, st); err != nil {
		return err
	}
	f.log.Info("kept a directory deleted remotely: it holds entries the deleter never saw", "path", j.path)
	return nil
}

// needsBelow reports whether work is queued for paths below dir.
func (f *Folder) needsBelow(dir string) bool {
	pending := false
	_ = f.idx.View(func(tx *index.Tx) error {
		pending = tx.HasNeedPrefix(dir + "/")
		return nil
	})
	return pending
}

// keepDir records the directory at j.path (with stat st) as a new local
// version that supersedes j's remote version, and marks j handled.
func (f *Folder) keepDir(j *job, st fsutil.Stat) error {
	f.requestScan([]string{j.path}, false)
	err := f.idx.Update(func(tx *index.Tx) error {
		cur, _, err := tx.Get(j.path)
		if err != nil {
			return err
		}
		keep := f.newEvent(record.Record{Path: j.path, Type: record.Dir, Mode: st.Mode, MTime: st.MTime, UID: st.UID, GID: st.GID,
			Inode: st.Inode, CTime: st.CTime}, cur.Version.Merge(j.r.Version))
		if _, err := tx.Put(keep); err != nil {
			return err
		}
		return clearNeedIfDone(tx, j.path, &keep)
	})
	if err == nil {
		j.handled = true
	}
	return err
}

func isNotEmpty(err error) bool {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err != nil && (strings.Contains(err.Error(), "not empty") || strings.Contains(err.Error(), "exists"))
}

// removeForType clears the path when the remote version changes its type.
func (f *Folder) removeForType(it item, want record.Type) error {
	st, ok, err := f.root.Lstat(it.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if ok && st.Type == want {
		return nil
	}
	if st.Type != record.Dir {
		return f.discard(it.path)
	}
	if err := f.root.OS().Remove(it.path); err != nil {
		if isNotEmpty(err) {
			return errDirNotEmpty
		}
		return fmt.Errorf("replace %s: %w", f.root.Abs(it.path), err)
	}
	return nil
}

// errDirNotEmpty: a directory to be replaced by a file or link still has
// entries.
var errDirNotEmpty = errors.New("directory not empty")

// dirKeepsName handles a remote file or symlink that replaced a directory
// that still has entries here. If deletions below it are still queued, it
// waits for them. Otherwise the entries are things the remote change never
// saw: as in any file-versus-directory conflict, the directory keeps the
// name (with a new version that supersedes the file) and the file goes to
// a conflict copy, which the scan records as a new file.
func (f *Folder) dirKeepsName(j *job) error {
	if f.needsBelow(j.path) {
		return errDefer
	}
	st, ok, err := f.root.Lstat(j.path)
	if err != nil || !ok || st.Type != record.Dir {
		return errDefer
	}
	r := &j.r
	name := ConflictName(j.path, time.Unix(0, r.MTime).UTC().Format(stampLayout), shortOf(r.ModifiedBy))
	if held, err := f.holds(name, r); err != nil {
		return err
	} else if !held {
		if err := f.root.CheckParents(name); err != nil {
			return err
		}
		err := f.moveToFreeName(j.tmp, name)
		if errors.Is(err, unix.EEXIST) {
			// Someone else's file already has the name; the scan of it
			// comes first, then this is decided again.
			f.requestScan([]string{name}, false)
			return errDefer
		}
		if err != nil {
			return fmt.Errorf("keep %s as a conflict copy: %w", f.root.Abs(j.path), err)
		}
		j.tmp = ""
		f.requestScan([]string{name}, false)
	}
	if err := f.keepDir(j, st); err != nil {
		return err
	}
	f.countConflict()
	f.log.Warn("conflict: a remote file replaced a directory that holds entries it never saw; the directory stays, the file is kept as a copy", "path", j.path, "copy", name)
	return nil
}

// syncFS makes everything written to the folder's filesystem durable.
func (f *Folder) syncFS() error {
	d, err := os.Open(f.cfg.Path)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", f.cfg.Path, err)
	}
	return nil
}

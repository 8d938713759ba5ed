package folder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"tandem/internal/crashpoint"
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
	for ctx.Err() == nil {
		items, waiting, err := f.plan()
		if err != nil {
			f.log.Error("planning", "err", err)
			return true
		}
		if len(items) == 0 {
			return waiting
		}
		progress := f.execute(ctx, items)
		if !progress {
			return true
		}
	}
	return true
}

// plan reads the work list and decides each path. Paths that need nothing
// are cleared; paths whose version no connected peer can serve are left.
func (f *Folder) plan() (items []item, waiting bool, err error) {
	now := time.Now()
	var clear []string
	err = f.idx.View(func(tx *index.Tx) error {
		for _, p := range tx.Needs(pullBatch * 4) {
			if len(items) >= pullBatch {
				waiting = true
				break
			}
			f.stMu.Lock()
			ra := f.retryAfter[p]
			f.stMu.Unlock()
			if now.Before(ra.at) {
				waiting = true
				continue
			}
			local, had, err := tx.Get(p)
			if err != nil {
				return err
			}
			rm, err := tx.Remotes(p)
			if err != nil {
				return err
			}
			peers := make([]identity.ID, 0, len(rm))
			for id := range rm {
				peers = append(peers, id)
			}
			sort.Slice(peers, func(i, j int) bool { return bytes.Compare(peers[i][:], peers[j][:]) < 0 })
			recs := make([]record.Record, len(peers))
			for i, id := range peers {
				recs[i] = rm[id]
			}
			var lp *record.Record
			if had {
				lp = &local
			}
			_, d, ok := reconcile.Choose(lp, recs)
			if !ok {
				clear = append(clear, p)
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
	if err == nil && len(clear) > 0 {
		err = f.idx.Update(func(tx *index.Tx) error {
			for _, p := range clear {
				if err := tx.ClearNeed(p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return items, waiting, err
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

// execute applies planned items: directories first (shallow to deep), then
// files and symlinks in parallel, then deletions (deep to shallow), so that
// a rename finds its blocks at the old name before that name is deleted.
func (f *Folder) execute(ctx context.Context, items []item) (progress bool) {
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
	sort.Slice(dels, func(i, j int) bool { return dels[i].path > dels[j].path })
	var mu sync.Mutex
	run := func(it item) {
		err := f.apply(ctx, it)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			progress = true
			f.setItemErr(it.path, nil)
		case errors.Is(err, errDefer):
		default:
			if ctx.Err() != nil {
				return
			}
			f.failed(it.path, err)
		}
	}
	for _, it := range dirs {
		run(it)
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, it := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			run(it)
		})
	}
	wg.Wait()
	for _, it := range dels {
		run(it)
	}
	return progress
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

// apply carries out one decision.
func (f *Folder) apply(ctx context.Context, it item) error {
	r := it.dec.Result
	r.Path = it.path
	if it.dec.Bump {
		// This node resolves a concurrency: the result is its own version.
		r.Version = r.Version.Update(f.meShort, uint64(f.opt.Now().Unix()))
	}
	if err := f.root.CheckParents(it.path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if r.Deleted {
			return f.commitApplied(it, r)
		}
		if err := f.mkParents(it.path); err != nil {
			return err
		}
	}
	// Fetch file content before taking the lock: a slow transfer must not
	// block scans.
	var tmp string
	if !r.Deleted && r.Type == record.File && it.dec.Action != reconcile.Merge {
		var err error
		tmp, err = f.fetchFile(ctx, &r, it.sources)
		if err != nil {
			return err
		}
		defer os.Remove(tmp)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.verifyUnchanged(it); err != nil {
		return err
	}
	switch it.dec.Action {
	case reconcile.Merge:
		if !r.Deleted {
			if err := f.root.SetMeta(it.path, &r, f.withOwner); err != nil {
				return err
			}
		}
		return f.commitApplied(it, r)
	case reconcile.ConflictTake:
		if err := f.keepConflictCopy(it); err != nil {
			return err
		}
		it.local = nil
	}
	switch {
	case r.Deleted:
		return f.applyDelete(it, r)
	case r.Type == record.Dir:
		return f.applyDir(it, r)
	case r.Type == record.Symlink:
		return f.applySymlink(it, r)
	default:
		return f.applyFile(it, r, tmp)
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
	st, ok, err := f.root.Lstat(it.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	switch {
	case it.local == nil || it.local.Deleted:
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
func (f *Folder) keepConflictCopy(it item) error {
	loc := *it.local
	if f.cfg.Conflict == "newest-wins" {
		// The loser goes to the trash (or away, with the trash off)
		// instead of becoming a copy.
		f.log.Warn("conflict: concurrent versions; the older one goes to the trash (conflict = newest-wins)", "path", it.path)
		f.stMu.Lock()
		f.stats.Conflicts++
		f.stMu.Unlock()
		return f.discard(it.path)
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
				// this name (and it reached us): no duplicate copy.
				f.log.Info("conflict: the local version is already kept as a copy", "path", it.path, "copy", name)
				return f.discard(it.path)
			}
			if _, err := f.root.OS().Lstat(name); errors.Is(err, fs.ErrNotExist) {
				break
			}
		}
		name = ConflictName(it.path, stamp, fmt.Sprintf("%s.%d", short, i))
	}
	if err := f.root.OS().Rename(it.path, name); err != nil {
		return fmt.Errorf("keep conflict copy %s: %w", name, err)
	}
	crashpoint.Hit(crashpoint.ConflictAfterRename)
	st, _, err := f.root.Lstat(name)
	if err != nil {
		return err
	}
	f.stMu.Lock()
	f.stats.Conflicts++
	f.stMu.Unlock()
	f.log.Warn("conflict: concurrent versions; keeping the local one as a copy", "path", it.path, "copy", name)
	cp := loc
	cp.Path, cp.Version, cp.Seq = name, nil, 0
	cp.Inode, cp.CTime = st.Inode, st.CTime
	defer f.opt.Changed()
	return f.idx.Update(func(tx *index.Tx) error {
		old, had, err := tx.Get(name)
		if err != nil {
			return err
		}
		if had {
			cp.Version = old.Version
		}
		cp.Version = cp.Version.Update(f.meShort, uint64(f.opt.Now().Unix()))
		_, err = tx.Put(cp)
		return err
	})
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

func (f *Folder) applyDelete(it item, r record.Record) error {
	st, ok, err := f.root.Lstat(it.path)
	switch {
	case err == nil && ok && st.Type == record.Dir:
		if err := f.root.OS().Remove(it.path); err != nil {
			if isNotEmpty(err) {
				return f.dirNotEmpty(it, r)
			}
			return fmt.Errorf("delete %s: %w", f.root.Abs(it.path), err)
		}
	case err == nil && ok:
		if err := f.discard(it.path); err != nil {
			return err
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err == nil {
		if err := f.root.SyncDir(it.path); err != nil {
			return err
		}
		crashpoint.Hit(crashpoint.DeleteAfterRemove)
	}
	return f.commitApplied(it, r)
}

// dirNotEmpty handles a remote delete of a directory that still has
// entries here. If deletions below it are still queued, it waits for them.
// Otherwise the entries are things the deleter never saw, so the
// directory stays and gets a new version that supersedes the delete.
func (f *Folder) dirNotEmpty(it item, r record.Record) error {
	pendingBelow := false
	_ = f.idx.View(func(tx *index.Tx) error {
		pendingBelow = tx.HasNeedPrefix(it.path + "/")
		return nil
	})
	if pendingBelow {
		return errDefer
	}
	st, _, err := f.root.Lstat(it.path)
	if err != nil {
		return err
	}
	f.requestScan([]string{it.path}, false)
	defer f.opt.Changed()
	return f.idx.Update(func(tx *index.Tx) error {
		cur, _, err := tx.Get(it.path)
		if err != nil {
			return err
		}
		keep := record.Record{Path: it.path, Type: record.Dir, Mode: st.Mode, MTime: st.MTime, UID: st.UID, GID: st.GID,
			Inode: st.Inode, CTime: st.CTime, ModifiedBy: f.meShort,
			Version: cur.Version.Merge(r.Version).Update(f.meShort, uint64(f.opt.Now().Unix()))}
		if _, err := tx.Put(keep); err != nil {
			return err
		}
		return tx.ClearNeed(it.path)
	})
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
			return errDefer
		}
		return fmt.Errorf("replace %s: %w", f.root.Abs(it.path), err)
	}
	return nil
}

func (f *Folder) applyDir(it item, r record.Record) error {
	if err := f.removeForType(it, record.Dir); err != nil {
		return err
	}
	if err := f.root.OS().Mkdir(it.path, os.FileMode(r.Mode&0o777)|0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create directory %s: %w", f.root.Abs(it.path), err)
	}
	if err := f.root.SetMeta(it.path, &r, f.withOwner); err != nil {
		return err
	}
	return f.commitApplied(it, r)
}

func (f *Folder) applySymlink(it item, r record.Record) error {
	if err := f.removeForType(it, record.Symlink); err != nil {
		return err
	}
	tmp := f.tmpName()
	if err := os.Symlink(r.Target, tmp); err != nil {
		return fmt.Errorf("create symlink %s: %w", f.root.Abs(it.path), err)
	}
	defer os.Remove(tmp)
	return f.renameIntoPlace(it, r, tmp)
}

func (f *Folder) applyFile(it item, r record.Record, tmp string) error {
	if err := f.removeForType(it, record.File); err != nil {
		return err
	}
	return f.renameIntoPlace(it, r, tmp)
}

// renameIntoPlace atomically replaces the path with the prepared tmp file
// or link. The pending marker makes a crash between the rename and the
// index commit recognisable at start-up.
func (f *Folder) renameIntoPlace(it item, r record.Record, tmp string) error {
	if err := setMetaAbs(tmp, &r, f.withOwner); err != nil {
		return err
	}
	if err := f.keepBeforeOverwrite(it.path); err != nil {
		return err
	}
	if err := f.idx.Update(func(tx *index.Tx) error { return tx.SetPending(r) }); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterPending)
	if err := os.Rename(tmp, f.root.Abs(it.path)); err != nil {
		_ = f.idx.Update(func(tx *index.Tx) error { return tx.ClearPending(r.Path) })
		return fmt.Errorf("rename into %s: %w", f.root.Abs(it.path), err)
	}
	if err := f.root.SyncDir(it.path); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterRename)
	return f.commitApplied(it, r)
}

// commitApplied stores r as the local record of the path, with the stat
// cache of what is now on disk, and clears the work item.
func (f *Folder) commitApplied(it item, r record.Record) error {
	if !r.Deleted {
		st, ok, err := f.root.Lstat(it.path)
		if err != nil || !ok {
			return fmt.Errorf("stat %s after applying: %v", f.root.Abs(it.path), err)
		}
		r.Inode, r.CTime = st.Inode, st.CTime
	}
	err := f.idx.Update(func(tx *index.Tx) error {
		if _, err := tx.Put(r); err != nil {
			return err
		}
		if err := tx.ClearPending(r.Path); err != nil {
			return err
		}
		return tx.ClearNeed(r.Path)
	})
	if err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ApplyAfterCommit)
	f.stMu.Lock()
	f.stats.FilesApplied++
	f.stMu.Unlock()
	f.log.Debug("applied remote version", "path", r.Path, "action", it.dec.Action, "deleted", r.Deleted, "version", r.Version)
	f.opt.Changed()
	return nil
}

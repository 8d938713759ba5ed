package folder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"tandem/internal/crashpoint"
	"tandem/internal/fsutil"
	"tandem/internal/index"
	"tandem/internal/record"
)

// markerOK reports whether the folder's marker is still there; every scan
// checks it before it may record a deletion.
func (f *Folder) markerOK() error {
	if fi, err := os.Lstat(f.markerPath()); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %q: marker %s disappeared (disk unmounted?); not scanning or applying anything until it is back: %w", f.cfg.ID, f.markerPath(), ErrMarkerMissing)
	}
	return nil
}

// fullScan walks the whole tree and brings the index in line with it.
func (f *Folder) fullScan(ctx context.Context) error {
	if err := f.markerOK(); err != nil {
		return err
	}
	b := &scanBatch{}
	err := f.scanDir(ctx, "", true, b)
	if err == nil {
		err = f.flush(b)
	}
	if err == nil {
		f.stMu.Lock()
		f.lastScan = f.opt.Now()
		f.stats.ScansCompleted++
		f.stMu.Unlock()
	}
	return err
}

// scanPaths looks at the given paths (from the watcher). They are taken
// scanChunk at a time: each is statted, then the index's records of all
// of them are read in one transaction, then each is brought in line with
// the index (scanPath). A read transaction for each path made looking at
// a path that had not changed (the event of a peer's version placed
// here, a file touched) cost 6.6-8.3 µs of CPU and 18 allocations
// instead of 4.1-4.5 µs and 2 (BenchmarkScanUnchangedPaths). A record
// read a little before its path is looked at may be stale; flush checks
// every change against the index again before it commits.
func (f *Folder) scanPaths(ctx context.Context, paths []string) error {
	if err := f.markerOK(); err != nil {
		return err
	}
	paths = f.postponeInflight(paths)
	sort.Strings(paths)
	stats := f.root.NewStatCache()
	defer stats.Close()
	b := &scanBatch{}
	chunk := make([]statted, 0, min(len(paths), scanChunk))
	var prev string
	for i := 0; i < len(paths); {
		chunk = chunk[:0]
		for ; i < len(paths) && len(chunk) < scanChunk; i++ {
			p := paths[i]
			if p == prev || record.ValidName(p) != nil {
				continue
			}
			prev = p
			if s, ok := f.statForScan(p, stats, b); ok {
				chunk = append(chunk, s)
			}
		}
		if len(chunk) == 0 {
			continue // all gone, refused or not ours to record
		}
		if err := f.idx.View(func(tx *index.Tx) error {
			for k := range chunk {
				var err error
				if chunk[k].old, chunk[k].had, err = tx.GetStat(chunk[k].rel); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		for _, s := range chunk {
			if err := ctx.Err(); err != nil {
				return nil
			}
			if err := f.scanPath(ctx, s, b); err != nil {
				return err
			}
			if b.full() {
				if err := f.flush(b); err != nil {
					return err
				}
			}
		}
	}
	return f.flush(b)
}

// scanChunk is how many paths scanPaths stats before it reads their
// records.
const scanChunk = 256

// statted is a path a scan looks at: its stat, and the index's record of
// it (had: there is one).
type statted struct {
	rel string
	st  fsutil.Stat
	old record.Record
	had bool
}

// statForScan stats rel for scanPaths. A path that is gone (or whose
// parent is no longer a directory) is added to b's deletions, one that
// cannot be statted gets an item error; ok is false for both.
func (f *Folder) statForScan(rel string, stats *fsutil.StatCache, b *scanBatch) (statted, bool) {
	st, ok, err := stats.Stat(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fsutil.ErrSymlinkParent) {
		// It, or a parent, vanished or became something else; everything
		// below it is gone from here.
		b.gone = append(b.gone, rel)
		return statted{}, false
	}
	if err != nil {
		f.setItemErr(rel, err)
		return statted{}, false
	}
	return statted{rel: rel, st: st}, ok
}

// scanBatch collects what a scan found, to commit it in few transactions.
type scanBatch struct {
	cands []candidate
	gone  []string
	bytes int64     // content hashed for cands
	first time.Time // when the first of cands was found
}

// full reports whether the batch should be committed now: it holds
// scanBatchMax changes, or scanBatchBytes of hashed content, or its first
// change waits for scanBatchAge. Peers hear of a change only once it is
// committed, so a scan of large files (or a slow disk) does not keep
// the first of them from them until a thousand are hashed.
func (b *scanBatch) full() bool {
	return len(b.cands) >= scanBatchMax || b.bytes >= scanBatchBytes ||
		(len(b.cands) > 0 && time.Since(b.first) >= scanBatchAge)
}

// candidate is the new state of a path, read while its stat was pre.
type candidate struct {
	pre fsutil.Stat
	cur record.Record
}

const (
	scanBatchMax   = 1000
	scanBatchBytes = 64 << 20
	scanBatchAge   = 200 * time.Millisecond
)

// scanPath brings the index in line with one path, statted with its
// record read (scanPaths). A directory that is new to the index is walked
// whole; for a known one, its direct children are checked for deletions.
func (f *Folder) scanPath(ctx context.Context, s statted, b *scanBatch) error {
	f.consider(s.rel, s.st, s.old, s.had, b)
	if s.st.Type == record.Dir {
		return f.scanDir(ctx, s.rel, !s.had || s.old.Deleted, b)
	}
	return nil
}

func (f *Folder) get(rel string) (rec record.Record, ok bool, err error) {
	err = f.idx.View(func(tx *index.Tx) error {
		rec, ok, err = tx.Get(rel)
		return err
	})
	return
}

// scanDir compares directory dir ("" for the root) with the index: new
// and changed entries are recorded, vanished ones become tombstones. With
// recursive it descends into every subdirectory, otherwise only into new
// ones.
func (f *Folder) scanDir(ctx context.Context, dir string, recursive bool, b *scanBatch) error {
	if err := ctx.Err(); err != nil {
		return nil
	}
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	// The index's records of the directory are read while the directory
	// is listed: the two do not depend on each other, and flush checks
	// every change against the index again before it commits.
	known := map[string]record.Record{}
	var kerr error
	read := make(chan struct{})
	go func() {
		defer close(read)
		kerr = f.idx.View(func(tx *index.Tx) error {
			return tx.ChildrenStat(prefix, func(r record.Record) { known[r.Path[len(prefix):]] = r })
		})
	}()
	entries, err := f.root.ReadDirStat(dir)
	<-read
	if err != nil {
		if dir == "" {
			return fmt.Errorf("folder %q: read root: %w", f.cfg.ID, err)
		}
		// A partial listing must not turn into deletions.
		f.setItemErr(dir, err)
		return nil
	}
	if kerr != nil {
		return kerr
	}
	present := make(map[string]bool, len(entries))
	slices.SortFunc(entries, func(a, b fsutil.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	var subdirs []string
	for _, e := range entries {
		n := e.Name
		if dir == "" && n == record.MarkerDir {
			continue
		}
		present[n] = true
		rel := prefix + n
		if record.ValidName(rel) != nil {
			continue
		}
		if e.Err != nil {
			if !errors.Is(e.Err, fs.ErrNotExist) {
				f.setItemErr(rel, e.Err)
			}
			continue
		}
		st := e.Stat
		if !e.OK {
			continue
		}
		if st.Type != record.Dir && f.postponeIfInflight(rel) {
			// A file or symlink being placed: it is looked at once its
			// batch is committed, not read now as if it were a local file
			// new to the index. Directories are still walked, so a full
			// scan misses nothing below one that a batch is placing.
			continue
		}
		old, had := known[n]
		f.consider(rel, st, old, had, b)
		if st.Type == record.Dir && (recursive || !had || old.Deleted) {
			subdirs = append(subdirs, rel)
		}
		if b.full() {
			if err := f.flush(b); err != nil {
				return err
			}
		}
	}
	for n, r := range known {
		if !r.Deleted && !present[n] {
			b.gone = append(b.gone, r.Path)
		}
	}
	for _, sd := range subdirs {
		if err := f.scanDir(ctx, sd, true, b); err != nil {
			return err
		}
	}
	return nil
}

// consider reads one existing path whose stat differs from its record
// (unchanged files, same size, mtime, inode and ctime, are not read) and
// adds its new state to the batch.
func (f *Folder) consider(rel string, st fsutil.Stat, old record.Record, had bool, b *scanBatch) {
	if had && st.Matches(&old) && (!f.withOwner || (st.UID == old.UID && st.GID == old.GID)) && (st.Type == record.Symlink || st.Mode == old.Mode) {
		return
	}
	cur := record.Record{Path: rel, Type: st.Type, Mode: st.Mode, MTime: st.MTime, UID: st.UID, GID: st.GID, Inode: st.Inode, CTime: st.CTime}
	switch st.Type {
	case record.File:
		bl, size, err := f.hashFile(rel, st.Size)
		if err != nil {
			f.setItemErr(rel, err)
			return
		}
		cur.Blocks, cur.Size = bl, size
		f.stMu.Lock()
		f.stats.FilesHashed++
		f.stats.BytesHashed += uint64(size)
		f.stMu.Unlock()
	case record.Symlink:
		t, err := f.root.OS().Readlink(rel)
		if err != nil {
			f.setItemErr(rel, err)
			return
		}
		cur.Target = t
	}
	f.setItemErr(rel, nil)
	if len(b.cands) == 0 {
		b.first = time.Now()
	}
	b.cands = append(b.cands, candidate{pre: st, cur: cur})
	b.bytes += cur.Size
}

// flush commits a batch: changed paths whose stat did not move while they
// were read, then deletions, each in one transaction under the folder lock.
func (f *Folder) flush(b *scanBatch) error {
	cands, gone := b.cands, b.gone
	b.cands, b.gone, b.bytes = nil, nil, 0
	if len(cands) == 0 && len(gone) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	stable := cands[:0]
	// Each change is statted again now, under the lock, through parents
	// opened now (not those the scan held while it read): a file still
	// being written is picked up by its next event. A batch's changes
	// come in directory order, so a parent serves the changes in it
	// (one system call a change; opening each parent anew was a tenth of
	// a sending node's CPU for small files, and Lstat through os.Root
	// opens every parent).
	stats := f.root.NewStatCache()
	for _, c := range cands {
		if now, ok, err := stats.Stat(c.cur.Path); err == nil && ok && unmoved(now, c.pre) {
			stable = append(stable, c)
		}
	}
	stats.Close()
	crashpoint.Hit(crashpoint.ScanBeforeCommit)
	changed := false
	err := f.idx.Update(func(tx *index.Tx) error {
		for _, c := range stable {
			ch, err := f.commitLocal(tx, c.cur)
			if err != nil {
				return err
			}
			changed = changed || ch
		}
		if len(gone) == 0 {
			return nil
		}
		if err := f.markerOK(); err != nil {
			return err
		}
		for _, p := range gone {
			if _, _, err := f.root.Lstat(p); err == nil {
				continue // there again (an apply may have just created it)
			}
			ch, err := f.markDeleted(tx, p)
			if err != nil {
				return err
			}
			changed = changed || ch
		}
		return nil
	})
	if err != nil {
		return err
	}
	if changed {
		crashpoint.Hit(crashpoint.ScanAfterCommitBatch)
		f.opt.Changed()
		f.Wake() // a local change may call for a peer's record now
	}
	return nil
}

// unmoved reports whether a path's stat stayed what it was when it was
// read. A directory's mtime and ctime move whenever an entry is added or
// removed, which says nothing about the directory's own synced state
// (type, mode, owner) and raises no event for the directory itself: if
// they counted, a chmod followed at once by a new entry would be dropped
// until the next full rescan.
func unmoved(now, pre fsutil.Stat) bool {
	if pre.Type == record.Dir {
		return now.Type == record.Dir && now.Inode == pre.Inode && now.Mode == pre.Mode && now.UID == pre.UID && now.GID == pre.GID
	}
	return now == pre
}

// commitLocal stores cur as the local state: a new version if it differs
// from the indexed record, or just a refreshed stat cache.
func (f *Folder) commitLocal(tx *index.Tx, cur record.Record) (bool, error) {
	old, had, err := tx.Get(cur.Path)
	if err != nil {
		return false, err
	}
	if had && !old.Deleted && record.SameContent(&old, &cur) && record.SameMeta(&old, &cur, f.withOwner) {
		return false, tx.SetStat(cur.Path, cur.Inode, cur.CTime)
	}
	if had && !f.withOwner && !old.Deleted {
		cur.UID, cur.GID = old.UID, old.GID
	}
	cur = f.newEvent(cur, old.Version)
	if had && !old.Deleted {
		cur = cur.Replacing(&old)
	}
	stored, err := tx.Put(cur)
	if err != nil {
		return false, err
	}
	if _, err := flagCopies(tx, &stored); err != nil {
		return false, err
	}
	if _, err := needIfPeersNew(tx, &stored); err != nil {
		return false, err
	}
	f.log.Debug("local change", "path", cur.Path, "type", cur.Type, "size", cur.Size, "version", stored.Version, "seq", stored.Seq)
	return true, nil
}

// markDeleted turns path and everything below it into tombstones.
func (f *Folder) markDeleted(tx *index.Tx, rel string) (bool, error) {
	var recs []record.Record
	collect := func(r record.Record) {
		if !r.Deleted {
			recs = append(recs, r)
		}
	}
	if r, ok, err := tx.Get(rel); err != nil {
		return false, err
	} else if ok {
		collect(r)
	}
	if err := tx.Prefix(rel+"/", collect); err != nil {
		return false, err
	}
	now := f.opt.Now()
	for _, r := range recs {
		t := f.newEvent(record.Record{Path: r.Path, Type: r.Type, Deleted: true, MTime: now.UnixNano()}.Replacing(&r), r.Version)
		if _, err := tx.Put(t); err != nil {
			return false, err
		}
		if _, err := flagCopies(tx, &t); err != nil {
			return false, err
		}
		if _, err := needIfPeersNew(tx, &t); err != nil {
			return false, err
		}
		f.log.Debug("local delete", "path", t.Path, "version", t.Version)
	}
	return len(recs) > 0, nil
}

// hashFile reads and hashes file rel. A file whose stat said size bytes,
// at least hintMin, is hinted to the peers while it is hashed
// (hintingHash); pass 0 for no hints.
func (f *Folder) hashFile(rel string, size int64) ([]record.Block, int64, error) {
	fh, err := f.root.OpenReader(rel)
	if err != nil {
		return nil, 0, err
	}
	defer fh.Close()
	return f.hintingHash(rel, size, fh)
}

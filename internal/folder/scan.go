package folder

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"tandem/internal/blocks"
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
	err := f.scanDir(ctx, "", true)
	if err == nil {
		f.stMu.Lock()
		f.lastScan = f.opt.Now()
		f.stats.ScansCompleted++
		f.stMu.Unlock()
	}
	return err
}

// scanPaths looks at the given paths (from the watcher).
func (f *Folder) scanPaths(ctx context.Context, paths []string) error {
	if err := f.markerOK(); err != nil {
		return err
	}
	sort.Strings(paths)
	var prev string
	for _, p := range paths {
		if p == prev || record.ValidName(p) != nil {
			continue
		}
		prev = p
		if err := ctx.Err(); err != nil {
			return nil
		}
		if err := f.scanPath(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// scanPath brings the index in line with one path. A directory that is new
// to the index is walked whole; for a known one, its direct children are
// checked for deletions.
func (f *Folder) scanPath(ctx context.Context, rel string) error {
	if err := f.root.CheckParents(rel); err != nil {
		// The parent vanished or became something else; the parent's own
		// event (or the deletion sweep below it) handles the subtree.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fsutil.ErrSymlinkParent) {
			return f.markDeleted(rel)
		}
		return nil
	}
	st, ok, err := f.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return f.markDeleted(rel)
	}
	if err != nil {
		f.setItemErr(rel, err)
		return nil
	}
	if !ok {
		return nil
	}
	old, had, err := f.get(rel)
	if err != nil {
		return err
	}
	if err := f.updateOne(rel, st, old, had); err != nil {
		return err
	}
	if st.Type == record.Dir {
		return f.scanDir(ctx, rel, !had || old.Deleted)
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
// recursive it descends into subdirectories.
func (f *Folder) scanDir(ctx context.Context, dir string, recursive bool) error {
	if err := ctx.Err(); err != nil {
		return nil
	}
	osDir := dir
	if osDir == "" {
		osDir = "."
	}
	d, err := f.root.OS().Open(osDir)
	if err != nil {
		if dir == "" {
			return fmt.Errorf("folder %q: read root: %w", f.cfg.ID, err)
		}
		f.setItemErr(dir, err)
		return nil
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		// A partial listing must not turn into deletions.
		f.setItemErr(dir, err)
		return nil
	}
	names := make(map[string]fs.DirEntry, len(entries))
	for _, e := range entries {
		if dir == "" && e.Name() == record.MarkerDir {
			continue
		}
		names[e.Name()] = e
	}
	// Vanished children.
	var gone []string
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	if err := f.idx.View(func(tx *index.Tx) error {
		return tx.Children(prefix, func(r record.Record) {
			if !r.Deleted {
				if _, ok := names[r.Path[len(prefix):]]; !ok {
					gone = append(gone, r.Path)
				}
			}
		})
	}); err != nil {
		return err
	}
	for _, p := range gone {
		if err := f.markDeleted(p); err != nil {
			return err
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		rel := prefix + n
		if record.ValidName(rel) != nil {
			continue
		}
		fi, err := names[n].Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				f.setItemErr(rel, err)
			}
			continue
		}
		st, ok := fsutil.FromInfo(fi)
		if !ok {
			continue
		}
		old, had, err := f.get(rel)
		if err != nil {
			return err
		}
		if err := f.updateOne(rel, st, old, had); err != nil {
			return err
		}
		if st.Type == record.Dir && (recursive || !had || old.Deleted) {
			if err := f.scanDir(ctx, rel, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// updateOne records the state of one existing path. Unchanged files (same
// size, mtime, inode, ctime) are not read.
func (f *Folder) updateOne(rel string, st fsutil.Stat, old record.Record, had bool) error {
	if had && st.Matches(&old) && (!f.withOwner || (st.UID == old.UID && st.GID == old.GID)) && (st.Type == record.Symlink || st.Mode == old.Mode) {
		return nil
	}
	cur := record.Record{Path: rel, Type: st.Type, Mode: st.Mode, MTime: st.MTime, UID: st.UID, GID: st.GID, Inode: st.Inode, CTime: st.CTime}
	switch st.Type {
	case record.File:
		bl, size, err := f.hashFile(rel)
		if err != nil {
			f.setItemErr(rel, err)
			return nil
		}
		cur.Blocks, cur.Size = bl, size
	case record.Symlink:
		t, err := f.root.OS().Readlink(rel)
		if err != nil {
			f.setItemErr(rel, err)
			return nil
		}
		cur.Target = t
	}
	// Commit only if the path did not change while it was read: a file still
	// being written is picked up by its next event.
	f.mu.Lock()
	defer f.mu.Unlock()
	now, ok, err := f.root.Lstat(rel)
	if err != nil || !ok || now != st {
		return nil
	}
	f.setItemErr(rel, nil)
	crashpoint.Hit(crashpoint.ScanBeforeCommit)
	if err := f.commitLocal(old, had, cur); err != nil {
		return err
	}
	crashpoint.Hit(crashpoint.ScanAfterCommitBatch)
	return nil
}

// commitLocal stores cur as the local state: a new version if it differs
// from old, or just a refreshed stat cache. Caller holds f.mu.
func (f *Folder) commitLocal(old record.Record, had bool, cur record.Record) error {
	changed := false
	defer func() {
		if changed {
			f.opt.Changed()
		}
	}()
	return f.idx.Update(func(tx *index.Tx) error {
		// Re-read under the lock: an apply may have committed meanwhile.
		o, h, err := tx.Get(cur.Path)
		if err != nil {
			return err
		}
		old, had = o, h
		if had && !old.Deleted && record.SameContent(&old, &cur) && record.SameMeta(&old, &cur, f.withOwner) {
			return tx.SetStat(cur.Path, cur.Inode, cur.CTime)
		}
		if had && !f.withOwner && !old.Deleted {
			cur.UID, cur.GID = old.UID, old.GID
		}
		cur.Version = old.Version.Update(f.meShort, uint64(f.opt.Now().Unix()))
		cur.ModifiedBy = f.meShort
		stored, err := tx.Put(cur)
		if err != nil {
			return err
		}
		f.log.Debug("local change", "path", cur.Path, "type", cur.Type, "size", cur.Size, "version", stored.Version, "seq", stored.Seq)
		changed = true
		return nil
	})
}

// markDeleted turns path and everything below it into tombstones.
func (f *Folder) markDeleted(rel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Still gone? (An apply may have just created it.)
	if _, _, err := f.root.Lstat(rel); err == nil {
		return nil
	}
	if err := f.markerOK(); err != nil {
		return err
	}
	changed := false
	err := f.idx.Update(func(tx *index.Tx) error {
		var recs []record.Record
		collect := func(r record.Record) {
			if !r.Deleted {
				recs = append(recs, r)
			}
		}
		if r, ok, err := tx.Get(rel); err != nil {
			return err
		} else if ok {
			collect(r)
		}
		if err := tx.Prefix(rel+"/", collect); err != nil {
			return err
		}
		now := uint64(f.opt.Now().Unix())
		for _, r := range recs {
			t := record.Record{Path: r.Path, Type: r.Type, Deleted: true, MTime: f.opt.Now().UnixNano(),
				Version: r.Version.Update(f.meShort, now), ModifiedBy: f.meShort}
			if _, err := tx.Put(t); err != nil {
				return err
			}
			f.log.Debug("local delete", "path", t.Path, "version", t.Version)
			changed = true
		}
		return nil
	})
	if changed {
		f.opt.Changed()
	}
	return err
}

func (f *Folder) hashFile(rel string) ([]record.Block, int64, error) {
	fh, err := f.root.OS().Open(rel)
	if err != nil {
		return nil, 0, err
	}
	defer fh.Close()
	return blocks.Hash(fh)
}

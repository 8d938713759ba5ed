package folder

import (
	"errors"
	"fmt"
	"io/fs"

	"tandem/internal/fsutil"
	"tandem/internal/reconcile"
	"tandem/internal/record"
)

// placesFree reports whether j puts a file or symlink at a path where the
// index holds nothing live: the common case of a new file, which
// placeFree handles in one open parent directory.
func placesFree(j *job) bool {
	return j.dec.Action != reconcile.Merge && !j.r.Deleted && j.r.Type != record.Dir && j.nothingLive()
}

// placeFree places a new file or symlink (placesFree) through its parent
// directory opened once: the rename that refuses to replace anything
// (the check that the path is still free) and the stat the commit
// caches act on that directory, so a parent swapped for a symlink
// meanwhile cannot redirect the file out of the folder, and the path is
// not walked four times. handled is false where the kernel cannot open
// a parent that way (no openat2); placeOne then goes through paths.
//
// parents, if not nil, keeps the parent directory open for the next job
// of the same placing goroutine: a batch's files come in path order, so
// most share their parent with the job before.
func (f *Folder) placeFree(j *job, parents *fsutil.StatCache) (handled bool, err error) {
	openParent := f.root.OpenParent
	if parents != nil {
		openParent = parents.Parent
	}
	p, err := openParent(j.path)
	if errors.Is(err, fsutil.ErrNoParentFD) {
		return false, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := f.mkParents(j.path); err != nil {
			return true, err
		}
		p, err = openParent(j.path)
	}
	if err != nil {
		return true, err
	}
	defer p.Close()
	// The path must still be free (verifyUnchanged for a path where the
	// index holds nothing live): the rename itself is that check, since it
	// refuses to replace anything; no stat before it.
	checked(j.path)
	if err := p.MoveInFree(j.tmp); errors.Is(err, fs.ErrExist) {
		// Something the index has not seen is there: the scan records it
		// and the item waits.
		f.requestScan([]string{j.path}, false)
		return true, errDefer
	} else if err != nil {
		return true, fmt.Errorf("rename into %s: %w", f.root.Abs(j.path), err)
	}
	j.tmp = ""
	st, ok, err := p.Lstat()
	j.after = &placedStat{st, ok, err}
	return true, nil
}

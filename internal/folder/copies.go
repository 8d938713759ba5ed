package folder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"tandem/internal/fsutil"
	"tandem/internal/index"
	"tandem/internal/record"
)

// A conflict copy keeps a version that lost a conflict. If that version is
// later deleted or overwritten, on any node, by a change that saw it (its
// record's Prev names the version's dot), the copy has nothing left to
// keep: it is deleted like the original was, unless someone changed the
// copy meanwhile (a change clears its CopyOf). Otherwise a delete of the
// original that raced the conflict would come back as a copy.

// copyPrefix is the start of every conflict copy name of path.
func copyPrefix(path string) string {
	n := ConflictName(path, "", "")
	return n[:strings.LastIndex(n, ".conflict-")+len(".conflict-")]
}

// flagCopies puts on the work list the unchanged conflict copies of r.Path
// that keep the content r's event replaced, and, if r is itself a copy,
// the copies of the same path whose version r's version replaced.
func flagCopies(tx *index.Tx, r *record.Record) (int, error) {
	var hits []string
	if r.PrevDot != 0 || len(r.Earlier) > 0 {
		if err := tx.Prefix(copyPrefix(r.Path), func(c record.Record) {
			if c.CopyReplacedBy(r) {
				hits = append(hits, c.Path)
			}
		}); err != nil {
			return 0, err
		}
	}
	// A copy whose version replaced the version kept by a sibling copy.
	if r.CopyOf != "" && r.CopyPrevDot != 0 {
		if err := tx.Prefix(copyPrefix(r.CopyOf), func(c record.Record) {
			if c.CopySupersededBy(r) {
				hits = append(hits, c.Path)
			}
		}); err != nil {
			return 0, err
		}
	}
	for _, p := range hits {
		if err := tx.SetNeed(p); err != nil {
			return 0, err
		}
	}
	return len(hits), nil
}

// copyObsolete reports whether cp is an unchanged conflict copy whose
// version was replaced by a change that saw it, as far as this node's
// records of the original path (its own and its peers') tell.
func copyObsolete(tx *index.Tx, cp *record.Record) (bool, error) {
	if cp.CopyOf == "" || cp.Deleted {
		return false, nil
	}
	if r, ok, err := tx.Get(cp.CopyOf); err != nil {
		return false, err
	} else if ok && cp.CopyReplacedBy(&r) {
		return true, nil
	}
	_, rm, err := tx.Remotes(cp.CopyOf)
	if err != nil {
		return false, err
	}
	for i := range rm {
		if cp.CopyReplacedBy(&rm[i]) {
			return true, nil
		}
	}
	// Or another copy of the same path keeps a version that replaced it.
	superseded := false
	if err := tx.Prefix(copyPrefix(cp.CopyOf), func(s record.Record) {
		superseded = superseded || cp.CopySupersededBy(&s)
	}); err != nil {
		return false, err
	}
	return superseded, nil
}

// hit runs the test hook, if any, at a crash point.
func (f *Folder) hit(point string) {
	if h := f.testHook.Load(); h != nil {
		(*h)(point)
	}
}

// copyLocal copies the local file or symlink at rel, which must still be
// exactly loc, to the free name dst: content, mode, owner and mtime,
// made durable, then moved to dst without replacing anything. If rel
// changes while it is copied, nothing is left at dst and the item waits
// for the scan (errDefer).
func (f *Folder) copyLocal(rel, dst string, loc *record.Record) error {
	if err := os.MkdirAll(f.tmpDir(), 0o700); err != nil {
		return err
	}
	if err := f.root.CheckParents(dst); err != nil {
		return err
	}
	tmp := f.tmpName()
	changed := func() error {
		os.Remove(tmp)
		f.requestScan([]string{rel}, false)
		return errDefer
	}
	switch loc.Type {
	case record.Symlink:
		target, err := f.root.OS().Readlink(rel)
		if err != nil || target != loc.Target {
			return changed()
		}
		if err := os.Symlink(target, tmp); err != nil {
			return fmt.Errorf("keep conflict copy of %s: %w", f.root.Abs(rel), err)
		}
	case record.File:
		in, err := f.root.OpenRead(rel)
		if err != nil {
			return changed()
		}
		defer in.Close()
		same := func() bool {
			fi, err := in.Stat()
			if err != nil {
				return false
			}
			st, ok := fsutil.FromInfo(fi)
			return ok && st.Matches(loc)
		}
		if !same() {
			return changed()
		}
		out, err := createTmp(tmp)
		if err != nil {
			return fmt.Errorf("keep conflict copy of %s: %w", f.root.Abs(rel), err)
		}
		_, err = io.Copy(out, in)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("keep conflict copy of %s: %w", f.root.Abs(rel), err)
		}
		if !same() {
			return changed()
		}
	default:
		return fmt.Errorf("keep conflict copy of %s: not a file or symlink", f.root.Abs(rel))
	}
	if err := setMetaAbs(tmp, loc, f.withOwner && !f.createdAs(loc)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keep conflict copy of %s: %w", f.root.Abs(rel), err)
	}
	if err := f.moveToFreeName(tmp, dst); err != nil {
		os.Remove(tmp)
		if errors.Is(err, unix.EEXIST) {
			return errDefer // the name was taken meanwhile: choose again
		}
		return fmt.Errorf("keep conflict copy of %s: %w", f.root.Abs(rel), err)
	}
	return nil
}

// moveToFreeName renames the temporary file abs to rel without replacing
// anything there (unix.EEXIST if rel is taken). Where the filesystem
// cannot refuse, rel is checked free just before a plain rename.
func (f *Folder) moveToFreeName(abs, rel string) error {
	err := unix.Renameat2(unix.AT_FDCWD, abs, unix.AT_FDCWD, f.root.Abs(rel), unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, lerr := f.root.OS().Lstat(rel); !errors.Is(lerr, fs.ErrNotExist) {
			return unix.EEXIST
		}
		err = os.Rename(abs, f.root.Abs(rel))
	}
	return err
}

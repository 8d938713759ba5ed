package folder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/crashpoint"
)

// A local file that a remote change replaces or deletes is checked and
// held open (guard). Between that check and the change, the user can
// still delete the file, or replace it with a new one (an editor saving
// by rename). A rename by name cannot tell: it would put the remote
// version where the user just deleted, keeping a late write to the old
// file that the user deleted with it, or replace the user's new file,
// which never saw the remote version. So the file is swapped out rather
// than overwritten, and what comes out is compared with the guarded file.

// renameat2 is unix.Renameat2; tests replace it to act as a filesystem
// without RENAME_EXCHANGE.
var renameat2 = unix.Renameat2

// exchangeInto puts j's temporary file or link at j.path, where the
// guarded file g was checked, by exchanging the two names atomically
// (RENAME_EXCHANGE), and then deals with what came out:
//   - the guarded file: discarded, into the trash if it is on (g keeps it
//     reachable, so a write that slipped in can still be saved by
//     release);
//   - nothing, the path was deleted here after the check: the remote
//     version takes the free name; the delete saw the guarded file and
//     every write to it, so nothing of it is saved;
//   - another file (or link, or directory): created here after the
//     check, it never saw the remote version, and is kept as a conflict
//     copy next to it.
//
// Where the filesystem cannot exchange, it falls back to a plain rename.
// j.tmp is cleared once the temporary name no longer holds j's file.
func (f *Folder) exchangeInto(j *job, g *guard) error {
	dst := f.root.Abs(j.path)
	err := renameat2(unix.AT_FDCWD, j.tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT):
		if _, serr := os.Lstat(j.tmp); serr != nil {
			return fmt.Errorf("rename into %s: %w", dst, err)
		}
		g.gone = true
		if err := f.moveToFreeName(j.tmp, j.path); err != nil {
			if errors.Is(err, unix.EEXIST) {
				f.requestScan([]string{j.path}, false)
				return errDefer
			}
			return fmt.Errorf("rename into %s: %w", dst, err)
		}
		j.tmp = ""
		return nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV):
		// No exchange here (some filesystems; overlayfs refuses it for
		// some entries with EXDEV): the old file is kept in the trash
		// first, as for any overwrite.
		if err := f.keepBeforeOverwrite(j.path); err != nil {
			return err
		}
		if err := os.Rename(j.tmp, dst); err != nil {
			return fmt.Errorf("rename into %s: %w", dst, err)
		}
		j.tmp = ""
		return nil
	case err != nil:
		return fmt.Errorf("rename into %s: %w", dst, err)
	}
	out := j.tmp
	j.tmp = ""
	if g.holds(out) {
		if err := f.discardHeld(out, j.path); err != nil {
			f.log.Warn("cannot discard the replaced file", "path", j.path, "held", out, "err", err)
		}
		return nil
	}
	g.gone = true
	name, err := f.keepOutAsCopy(out, j.path)
	if err != nil {
		f.log.Error("a file created here while a remote version replaced it could not be kept as a conflict copy; it is in the temporary directory", "path", j.path, "file", out, "err", err)
		return nil
	}
	f.log.Warn("a local file replaced the file a remote version was about to replace; kept it as a conflict copy", "path", j.path, "copy", name)
	f.countConflict()
	f.requestScan([]string{name}, false)
	return nil
}

// takeOut removes the guarded file g at j.path from the tree (into the
// trash if it is on) for a remote delete or a change of type. It moves
// whatever is at the path aside first and looks at it: the guarded file
// is discarded; a file created here after the check (it never saw the
// remote change) goes back to its name, or next to it as a conflict copy
// if the name was taken meanwhile, and the item waits for the scan
// (errDefer); nothing there means the path was deleted here too.
func (f *Folder) takeOut(j *job, g *guard) error {
	if err := os.MkdirAll(f.tmpDir(), 0o700); err != nil {
		return err
	}
	held := f.tmpName()
	if err := os.Rename(f.root.Abs(j.path), held); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			g.gone = true
			return nil
		}
		return fmt.Errorf("delete %s: %w", f.root.Abs(j.path), err)
	}
	if !g.holds(held) {
		g.gone = true
		f.requestScan([]string{j.path}, false)
		err := f.moveToFreeName(held, j.path)
		if errors.Is(err, unix.EEXIST) {
			var name string
			if name, err = f.keepOutAsCopy(held, j.path); err == nil {
				f.countConflict()
				f.requestScan([]string{name}, false)
			}
		}
		if err != nil {
			f.log.Error("a file created here while a remote change removed the file before it could not be put back; it is in the temporary directory", "path", j.path, "file", held, "err", err)
		}
		return errDefer
	}
	if err := f.discardHeld(held, j.path); err != nil {
		return err
	}
	if j.r.Deleted {
		crashpoint.Hit(crashpoint.DeleteAfterRemove)
	}
	return nil
}

// discardHeld discards the guarded file of rel, moved out of the tree to
// abs: into the trash if it is on, else deleted.
func (f *Folder) discardHeld(abs, rel string) error {
	if !f.trashOn() {
		if err := os.Remove(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", f.root.Abs(rel), err)
		}
		return nil
	}
	dst, err := f.trashTarget(rel)
	if err != nil {
		return err
	}
	if err := os.Rename(abs, dst); err != nil {
		return fmt.Errorf("move %s to the trash: %w", f.root.Abs(rel), err)
	}
	return nil
}

// keepOutAsCopy moves the file at abs (outside the tree) to a free
// conflict name of rel and returns that name.
func (f *Folder) keepOutAsCopy(abs, rel string) (string, error) {
	var st unix.Stat_t
	stamp := f.opt.Now().UTC().Format(stampLayout)
	if err := unix.Lstat(abs, &st); err == nil {
		stamp = time.Unix(st.Mtim.Unix()).UTC().Format(stampLayout)
	}
	for i := 1; ; i++ {
		who := f.me.Short()
		if i > 1 {
			who = fmt.Sprintf("%s.%d", who, i)
		}
		name := ConflictName(rel, stamp, who)
		if err := f.root.CheckParents(name); err != nil {
			return "", err
		}
		err := f.moveToFreeName(abs, name)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, unix.EEXIST) || i >= 100 {
			return "", err
		}
	}
}

// holds reports whether the name abs is the guarded file itself.
func (g *guard) holds(abs string) bool {
	var st unix.Stat_t
	return unix.Lstat(abs, &st) == nil && st.Ino == g.st.Ino && st.Dev == g.st.Dev
}

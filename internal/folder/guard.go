package folder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/record"
)

// guard holds open a local file that a remote change is about to replace
// or delete. The disk is checked against the index just before the
// change; a write that still slips in between that check and the rename
// or unlink went to the old inode, which the guard keeps reachable, so
// its content can be saved instead of lost.
type guard struct {
	fd *os.File
	st unix.Stat_t
	// gone: the file was deleted or replaced here after the check (see
	// exchangeInto and takeOut). Whoever did it saw every write to it, so
	// a late write is not saved.
	gone bool
}

// testHookChecked, if set (by tests), runs after the last check before a
// remote change touches a path (in guardLocal or placeOne), with the
// path: the moment a local write can still slip in.
var testHookChecked atomic.Pointer[func(path string)]

// checked runs testHookChecked, if set.
func checked(path string) {
	if h := testHookChecked.Load(); h != nil {
		(*h)(path)
	}
}

// guardLocal checks that the local file at it.path is what the index
// says and opens it. It returns nil (nothing to guard) unless the index
// holds a live regular file there; errDefer (and a scan) if the disk
// differs from the index.
func (f *Folder) guardLocal(it item) (*guard, error) {
	if it.nothingLive() || it.local.Type != record.File {
		return nil, nil
	}
	fd, err := f.root.OpenRead(it.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			f.requestScan([]string{it.path}, false)
			return nil, errDefer
		}
		return nil, fmt.Errorf("open %s: %w", f.root.Abs(it.path), err)
	}
	g := &guard{fd: fd}
	if err := unix.Fstat(int(fd.Fd()), &g.st); err != nil {
		fd.Close()
		return nil, fmt.Errorf("stat %s: %w", f.root.Abs(it.path), err)
	}
	l := it.local
	if g.st.Mode&unix.S_IFMT != unix.S_IFREG || g.st.Size != l.Size || g.st.Ino != l.Inode ||
		g.st.Mtim.Nano() != l.MTime || g.st.Ctim.Nano() != l.CTime {
		fd.Close()
		f.requestScan([]string{it.path}, false)
		return nil, errDefer
	}
	checked(it.path)
	return g, nil
}

// release closes the guard after the file was replaced or removed. If the
// old file was written since the check (its size or mtime moved; ctime
// cannot tell, the rename or unlink changes it), its content is saved,
// and the next scan picks it up as a new local file: at path itself if
// atPath is set and path is free (a delete that did not see the write
// must not remove it), else as a conflict copy next to path.
func (f *Folder) release(g *guard, path string, atPath bool) {
	if g == nil {
		return
	}
	defer g.fd.Close()
	if g.gone {
		return
	}
	var now unix.Stat_t
	if err := unix.Fstat(int(g.fd.Fd()), &now); err != nil {
		f.log.Warn("cannot check the replaced file for a late write", "path", path, "err", err)
		return
	}
	if now.Size == g.st.Size && now.Mtim == g.st.Mtim {
		return
	}
	if st, ok, err := f.root.Lstat(path); err == nil && ok && st.Inode == g.st.Ino {
		// Still at its name (the change failed before replacing it): the
		// scan records the write as an ordinary local change.
		f.requestScan([]string{path}, false)
		return
	}
	name, err := f.saveRaced(g.fd, &now, path, atPath)
	if err != nil {
		f.log.Error("a local write raced a remote change and could not be saved; it is only in the trash, if the trash is on", "path", path, "err", err)
		return
	}
	if name == path {
		f.log.Warn("a local write raced a remote delete; the file stays", "path", path)
	} else {
		f.log.Warn("a local write raced a remote change; kept it as a conflict copy", "path", path, "copy", name)
		f.countConflict()
	}
	f.requestScan([]string{name}, false)
}

// saveRaced copies the content of fd into a new file at path (atPath) or
// under a conflict name of it, with fd's mode and mtime, and returns the
// name used.
func (f *Folder) saveRaced(fd *os.File, st *unix.Stat_t, path string, atPath bool) (string, error) {
	tmp := f.tmpName()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, io.NewSectionReader(fd, 0, st.Size))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, os.FileMode(st.Mode&0o7777))
	}
	if err == nil {
		mt := time.Unix(st.Mtim.Unix())
		err = os.Chtimes(tmp, mt, mt)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	if atPath {
		err := f.root.CheckParents(path)
		if err == nil {
			err = f.moveToFreeName(tmp, path)
		}
		if err == nil {
			return path, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			os.Remove(tmp)
			return "", err
		}
	}
	name, err := f.keepOutAsCopy(tmp, path) // named after tmp's mtime, st's
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return name, nil
}

// renameInto moves j's temporary file or link to its path. Where the
// index holds nothing live, the rename refuses to replace anything
// (moveToFreeName), closing the last gap after the final check; a file
// that appeared there defers the item to the scan.
func (f *Folder) renameInto(j *job) error {
	if j.nothingLive() {
		err := f.moveToFreeName(j.tmp, j.path)
		if errors.Is(err, unix.EEXIST) {
			f.requestScan([]string{j.path}, false)
			return errDefer
		}
		if err != nil {
			return fmt.Errorf("rename into %s: %w", f.root.Abs(j.path), err)
		}
		return nil
	}
	if err := os.Rename(j.tmp, f.root.Abs(j.path)); err != nil {
		return fmt.Errorf("rename into %s: %w", f.root.Abs(j.path), err)
	}
	return nil
}

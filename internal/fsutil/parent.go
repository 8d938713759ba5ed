package fsutil

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"tandem/internal/record"
)

// ErrNoParentFD is returned by OpenParent where openat2 is unavailable;
// the caller then works through paths (CheckParents, Lstat, rename).
var ErrNoParentFD = errors.New("openat2 unavailable")

// Parent is the parent directory of one path beneath the root, opened
// once (with openat2, through no symlink and nothing outside the root) so
// that the checks and the change at the path's last component all act on
// that same directory: no parent can be swapped for a symlink between the
// check and the change, and no operation walks the path again.
type Parent struct {
	fd   int
	own  bool
	Base string // the last component of the path
	rel  string
}

// OpenParent opens rel's parent directory. Errors are those of
// CheckParents (fs.ErrNotExist, ErrSymlinkParent), or ErrNoParentFD.
func (r *Root) OpenParent(rel string) (*Parent, error) {
	if err := record.ValidName(rel); err != nil {
		return nil, err
	}
	fd, base, err := r.openParent(rel)
	if err == errSlow {
		return nil, ErrNoParentFD
	}
	if err != nil {
		return nil, err
	}
	return &Parent{fd: fd, own: fd != r.fd, Base: base, rel: rel}, nil
}

// Close releases the directory.
func (p *Parent) Close() {
	if p.own {
		unix.Close(p.fd)
		p.own = false
	}
}

// Lstat is Root.Lstat of the path, within the open parent.
func (p *Parent) Lstat() (Stat, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(p.fd, p.Base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return Stat{}, false, &fs.PathError{Op: "lstat", Path: p.rel, Err: fs.ErrNotExist}
		}
		return Stat{}, false, &fs.PathError{Op: "lstat", Path: p.rel, Err: err}
	}
	s, ok := fromStat(&st)
	return s, ok, nil
}

// MoveInFree renames from (an absolute path, on the same filesystem) to
// the path, only if the path is free: it returns an error matching
// fs.ErrExist, and changes nothing, if anything is at the path. Without
// RENAME_NOREPLACE (some filesystems) the path is checked just before a
// plain rename.
func (p *Parent) MoveInFree(from string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, p.fd, p.Base, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		if _, _, lerr := p.Lstat(); !errors.Is(lerr, fs.ErrNotExist) {
			err = unix.EEXIST
		} else {
			err = unix.Renameat(unix.AT_FDCWD, from, p.fd, p.Base)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: p.rel, Err: err}
	}
	return nil
}

package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"tandem/internal/record"
)

// noOpenat2 is set once openat2 turned out to be unavailable (kernels
// before 5.6, or a seccomp filter); StatPath then falls back to
// CheckParents and Lstat.
var noOpenat2 atomic.Bool

// StatPath is CheckParents followed by Lstat in one walk: the parent is
// opened with openat2, which refuses any symlink and anything outside the
// root on the way, and the name is statted in it. It costs three system
// calls whatever the depth, where CheckParents and Lstat through os.Root
// open every component of every parent. Errors are those of CheckParents
// (fs.ErrNotExist, ErrSymlinkParent) and Lstat.
func (r *Root) StatPath(rel string) (Stat, bool, error) {
	if err := record.ValidName(rel); err != nil {
		return Stat{}, false, err
	}
	dirfd, base, err := r.openParent(rel)
	if err == errSlow {
		return r.statSlow(rel)
	}
	if err != nil {
		return Stat{}, false, err
	}
	if dirfd != r.fd {
		defer unix.Close(dirfd)
	}
	return statAt(dirfd, base, rel)
}

// statAt lstats base in the directory dirfd; rel names it in errors.
func statAt(dirfd int, base, rel string) (Stat, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return Stat{}, false, &fs.PathError{Op: "lstat", Path: rel, Err: fs.ErrNotExist}
		}
		return Stat{}, false, &fs.PathError{Op: "lstat", Path: rel, Err: err}
	}
	s, ok := fromStat(&st)
	return s, ok, nil
}

// StatCache is StatPath (and OpenParent) for a run of paths, most of
// them in a few directories (a batch of watcher events, sorted; a batch
// of files being placed): the parent opened for one path is kept for the
// next ones in the same directory, so a path costs one system call
// instead of three. A directory replaced while it
// is held is seen by the scan of its own event, which follows; and the
// scan's commit stats every change and every deletion afresh before it
// records them (folder.flush: changes through a cache of its own, opened
// under the folder lock; deletions through every parent), so a parent
// the scan held stale cannot turn into one.
type StatCache struct {
	r   *Root
	dir string
	fd  int // the parent held, -1 if none
}

// NewStatCache returns an empty cache; Close it after use.
func (r *Root) NewStatCache() *StatCache { return &StatCache{r: r, fd: -1} }

// Stat is StatPath(rel).
func (c *StatCache) Stat(rel string) (Stat, bool, error) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 || record.ValidName(rel) != nil {
		return c.r.StatPath(rel) // top level (the root is held anyway), or refused
	}
	fd, err := c.hold(rel[:i], rel)
	if err == errSlow {
		return c.r.statSlow(rel)
	}
	if err != nil {
		return Stat{}, false, err
	}
	return statAt(fd, rel[i+1:], rel)
}

// Parent is OpenParent(rel) through the cache: rel's parent is the
// directory held if rel is in it, else it is opened and held instead.
// The Parent's Close does nothing; the cache's Close releases the
// directory.
func (c *StatCache) Parent(rel string) (*Parent, error) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 || record.ValidName(rel) != nil {
		return c.r.OpenParent(rel) // top level (the root's own descriptor), or refused
	}
	fd, err := c.hold(rel[:i], rel)
	if err == errSlow {
		return nil, ErrNoParentFD
	}
	if err != nil {
		return nil, err
	}
	return &Parent{fd: fd, Base: rel[i+1:], rel: rel}, nil
}

// hold returns the descriptor of dir, rel's parent: the one held, or
// newly opened and held in its place.
func (c *StatCache) hold(dir, rel string) (int, error) {
	if c.fd < 0 || c.dir != dir {
		c.Close()
		fd, _, err := c.r.openParent(rel)
		if err != nil {
			return -1, err
		}
		c.fd, c.dir = fd, dir
	}
	return c.fd, nil
}

// Close lets go of the parent held.
func (c *StatCache) Close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// errSlow: openat2 is not available; use the walk through os.Root.
var errSlow = errors.New("openat2 unavailable")

// openParent opens the parent directory of rel (a valid name) beneath the
// root with openat2, refusing symlinks and anything outside the root on
// the way, and returns it (the root's own descriptor for a top-level
// name, which the caller must not close) and the last component. Errors
// are those of CheckParents, or errSlow.
func (r *Root) openParent(rel string) (int, string, error) {
	if noOpenat2.Load() {
		return -1, "", errSlow
	}
	dir, base := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, base = rel[:i], rel[i+1:]
	}
	if dir == "" {
		return r.fd, base, nil
	}
	fd, err := unix.Openat2(r.fd, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == unix.ENOSYS || err == unix.EPERM:
		noOpenat2.Store(true)
		return -1, "", errSlow
	case err == unix.ENOENT:
		return -1, "", fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	case err == unix.ELOOP || err == unix.ENOTDIR || err == unix.EXDEV:
		return -1, "", fmt.Errorf("%s: %w", dir, ErrSymlinkParent)
	case err != nil:
		return -1, "", &fs.PathError{Op: "openat2", Path: dir, Err: err}
	}
	return fd, base, nil
}

// OpenRead opens the regular file or directory rel for reading, beneath
// the root, through no symlink (the name itself included: ELOOP). With
// openat2 it is one system call whatever the depth.
func (r *Root) OpenRead(rel string) (*os.File, error) {
	return r.openBeneath(rel, unix.O_RDONLY|unix.O_NONBLOCK)
}

// openBeneath opens rel with flags (O_NOFOLLOW and O_CLOEXEC added),
// beneath the root and through no symlink: one openat2, or CheckParents,
// an lstat and os.Root where openat2 is missing.
func (r *Root) openBeneath(rel string, flags int) (*os.File, error) {
	fd, f, err := r.openBeneathFD(rel, flags)
	if f != nil || err != nil {
		return f, err
	}
	return os.NewFile(uintptr(fd), r.Abs(rel)), nil
}

// openBeneathFD is openBeneath returning the bare descriptor where
// openat2 opened it, or the *os.File of the fallback (fd is -1 then).
func (r *Root) openBeneathFD(rel string, flags int) (int, *os.File, error) {
	if err := record.ValidName(rel); err != nil {
		return -1, nil, err
	}
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == nil:
			return fd, nil, nil
		case err == unix.ENOSYS || err == unix.EPERM:
			noOpenat2.Store(true)
		case err == unix.ENOENT:
			return -1, nil, &fs.PathError{Op: "open", Path: rel, Err: fs.ErrNotExist}
		default:
			return -1, nil, &fs.PathError{Op: "open", Path: rel, Err: err}
		}
	}
	if err := r.CheckParents(rel); err != nil {
		return -1, nil, err
	}
	// os.Root resolves a symlink inside the root even with O_NOFOLLOW.
	if fi, err := r.root.Lstat(rel); err != nil {
		return -1, nil, err
	} else if fi.Mode()&fs.ModeSymlink != 0 {
		return -1, nil, &fs.PathError{Op: "open", Path: rel, Err: unix.ELOOP}
	}
	f, err := r.root.OpenFile(rel, flags, 0)
	return -1, f, err
}

func (r *Root) statSlow(rel string) (Stat, bool, error) {
	if err := r.CheckParents(rel); err != nil {
		return Stat{}, false, err
	}
	return r.Lstat(rel)
}

// fromStat converts a raw lstat result like FromInfo.
func fromStat(st *unix.Stat_t) (Stat, bool) {
	var s Stat
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		s.Type, s.Size = record.File, st.Size
	case unix.S_IFDIR:
		s.Type = record.Dir
	case unix.S_IFLNK:
		s.Type = record.Symlink
	default:
		return s, false
	}
	s.Mode = st.Mode & 0o7777
	s.MTime = st.Mtim.Sec*1e9 + st.Mtim.Nsec
	s.CTime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	s.Inode = st.Ino
	s.UID, s.GID = st.Uid, st.Gid
	return s, true
}

// openRootFD opens path for use as the starting point of StatPath.
func openRootFD(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

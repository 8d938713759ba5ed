// Package fsutil performs filesystem operations confined to one folder
// root: names are validated, parent directories must be real directories
// (never symlinks), and every call goes through os.Root, or through
// openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS where the kernel
// has it, so that nothing can escape the folder.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"tandem/internal/record"
)

// Root is an opened folder root.
type Root struct {
	Path string
	root *os.Root
	fd   int // the root directory (O_PATH), for StatPath
}

// Open opens the folder root at path.
func Open(path string) (*Root, error) {
	r, err := os.OpenRoot(path)
	if err != nil {
		return nil, err
	}
	fd, err := openRootFD(path)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &Root{Path: path, root: r, fd: fd}, nil
}

// Close releases the root.
func (r *Root) Close() error {
	unix.Close(r.fd)
	return r.root.Close()
}

// OS returns the os.Root for direct confined use.
func (r *Root) OS() *os.Root { return r.root }

// Abs returns the absolute path of rel, for messages and reading.
func (r *Root) Abs(rel string) string { return filepath.Join(r.Path, filepath.FromSlash(rel)) }

// ErrSymlinkParent is returned when a parent of a name is a symlink or
// not a directory.
var ErrSymlinkParent = errors.New("a parent is not a directory")

// CheckParents verifies that every parent directory of rel exists as a
// real directory.
func (r *Root) CheckParents(rel string) error {
	if err := record.ValidName(rel); err != nil {
		return err
	}
	if fd, _, err := r.openParent(rel); err != errSlow {
		if err == nil && fd != r.fd {
			unix.Close(fd)
		}
		return err
	}
	p := rel
	for {
		p = record.Parent(p)
		if p == "" {
			return nil
		}
		fi, err := r.root.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s: %w", p, ErrSymlinkParent)
		}
	}
}

// Stat is what tandem reads from an lstat.
type Stat struct {
	Type  record.Type
	Size  int64
	Mode  uint32
	MTime int64
	CTime int64
	Inode uint64
	UID   uint32
	GID   uint32
}

// Lstat returns the Stat of rel without following a final symlink. ok is
// false for unsupported types (sockets, devices, fifos).
func (r *Root) Lstat(rel string) (Stat, bool, error) {
	fi, err := r.root.Lstat(rel)
	if err != nil {
		return Stat{}, false, err
	}
	st, ok := FromInfo(fi)
	return st, ok, nil
}

// FromInfo converts a FileInfo from lstat.
func FromInfo(fi fs.FileInfo) (Stat, bool) {
	var s Stat
	switch {
	case fi.Mode().IsRegular():
		s.Type = record.File
	case fi.IsDir():
		s.Type = record.Dir
	case fi.Mode()&fs.ModeSymlink != 0:
		s.Type = record.Symlink
	default:
		return s, false
	}
	s.Size = fi.Size()
	if s.Type != record.File {
		s.Size = 0
	}
	s.MTime = fi.ModTime().UnixNano()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.Mode = uint32(sys.Mode & 0o7777)
		s.CTime = sys.Ctim.Sec*1e9 + sys.Ctim.Nsec
		s.Inode = sys.Ino
		s.UID, s.GID = sys.Uid, sys.Gid
	} else {
		s.Mode = uint32(fi.Mode().Perm())
	}
	return s, true
}

// Matches reports whether the disk still holds exactly what rec describes,
// judged by the stat cache (type, size, mtime, inode, ctime).
func (s Stat) Matches(rec *record.Record) bool {
	if rec.Deleted || s.Type != rec.Type {
		return false
	}
	if s.Type == record.Dir {
		return s.Inode == rec.Inode && s.Mode == rec.Mode
	}
	return s.Size == rec.Size && s.MTime == rec.MTime && s.Inode == rec.Inode && s.CTime == rec.CTime
}

// SetMeta sets mode, owner (if withOwner) and mtime of rel from rec,
// never following a final symlink.
func (r *Root) SetMeta(rel string, rec *record.Record, withOwner bool) error {
	abs := r.Abs(rel)
	if withOwner {
		if err := os.Lchown(abs, int(rec.UID), int(rec.GID)); err != nil {
			return fmt.Errorf("chown %s: %w", abs, err)
		}
	}
	if rec.Type != record.Symlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, abs, rec.Mode&0o7777, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", abs, err)
		}
	}
	if rec.Type == record.Dir {
		return nil
	}
	ts := []unix.Timespec{unix.NsecToTimespec(rec.MTime), unix.NsecToTimespec(rec.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, abs, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime of %s: %w", abs, err)
	}
	return nil
}

// SyncDir fsyncs the directory containing rel (or the root).
func (r *Root) SyncDir(rel string) error {
	dir := record.Parent(rel)
	if dir == "" {
		dir = "."
	}
	d, err := r.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// IsNotEmpty reports whether err says a directory is not empty.
func IsNotEmpty(err error) bool {
	return errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)
}

package fsutil

import (
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// DirEntry is one entry of a directory listing with its lstat.
type DirEntry struct {
	Name string
	Stat Stat
	OK   bool  // a type tandem syncs (file, directory, symlink)
	Err  error // the lstat failed (the entry may have gone meanwhile)
}

// ReadDirStat lists directory rel ("" for the root) beneath the root and
// lstats every entry relative to the open directory, as find does: one
// fstatat per entry instead of a walk of the whole path for each.
func (r *Root) ReadDirStat(rel string) ([]DirEntry, error) {
	d, err := r.openDir(rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	fd := int(d.Fd())
	out := make([]DirEntry, len(names))
	for i, n := range names {
		out[i].Name = n
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				out[i].Err = &fs.PathError{Op: "lstat", Path: n, Err: fs.ErrNotExist}
			} else {
				out[i].Err = &fs.PathError{Op: "lstat", Path: n, Err: err}
			}
			continue
		}
		out[i].Stat, out[i].OK = fromStat(&st)
	}
	return out, nil
}

// openDir opens directory rel ("" for the root) for reading, beneath the
// root and through no symlink.
func (r *Root) openDir(rel string) (*os.File, error) {
	if rel == "" {
		fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: r.Path, Err: err}
		}
		return os.NewFile(uintptr(fd), r.Path), nil
	}
	return r.openBeneath(rel, unix.O_RDONLY|unix.O_DIRECTORY)
}

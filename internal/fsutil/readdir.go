package fsutil

import (
	"io/fs"
	"os"
	"runtime"
	"sync"

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
// fstatat per entry instead of a walk of the whole path for each. The
// entries of a large directory are statted by a few goroutines at once,
// the calls being independent (a rescan of an unchanged tree is mostly
// these calls).
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
	}
	parts := min(runtime.GOMAXPROCS(0), 4, len(out)/parallelStatMin)
	if parts < 2 {
		statEntries(fd, out)
		return out, nil
	}
	var wg sync.WaitGroup
	for p := range parts {
		part := out[p*len(out)/parts : (p+1)*len(out)/parts]
		wg.Go(func() { statEntries(fd, part) })
	}
	wg.Wait()
	return out, nil
}

// parallelStatMin is the number of entries per goroutine from which a
// directory's entries are statted in parallel.
const parallelStatMin = 256

// statEntries lstats each entry relative to the directory fd.
func statEntries(fd int, es []DirEntry) {
	for i := range es {
		e := &es[i]
		var st unix.Stat_t
		if err := unix.Fstatat(fd, e.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT {
				e.Err = &fs.PathError{Op: "lstat", Path: e.Name, Err: fs.ErrNotExist}
			} else {
				e.Err = &fs.PathError{Op: "lstat", Path: e.Name, Err: err}
			}
			continue
		}
		e.Stat, e.OK = fromStat(&st)
	}
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

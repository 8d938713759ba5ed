package watcher

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// walkDirs is filepath.WalkDir restricted to directories: fn is called
// for root and every directory below it (and, as WalkDir does, a second
// time for a directory that cannot be listed, with the error), never for
// other entries. Only directories are watched, and listing a directory of
// a thousand files through os.ReadDir allocates and sorts a thousand
// entries; here the other entries cost nothing but their bytes in the
// getdents buffer. The order of siblings is the directory's own.
func walkDirs(root string, fn fs.WalkDirFunc) error {
	fi, err := os.Lstat(root)
	if err != nil {
		err = fn(root, nil, err)
	} else {
		err = walkDir(root, fs.FileInfoToDirEntry(fi), fn)
	}
	if errors.Is(err, filepath.SkipDir) || errors.Is(err, filepath.SkipAll) {
		return nil
	}
	return err
}

func walkDir(p string, d fs.DirEntry, fn fs.WalkDirFunc) error {
	if err := fn(p, d, nil); err != nil || !d.IsDir() {
		if errors.Is(err, filepath.SkipDir) && d.IsDir() {
			err = nil
		}
		return err
	}
	names, err := subdirs(p)
	if err != nil {
		if err = fn(p, d, err); err != nil {
			if errors.Is(err, filepath.SkipDir) {
				err = nil
			}
			return err
		}
	}
	for _, name := range names {
		if err := walkDir(filepath.Join(p, name), dirEntry{name: name, path: filepath.Join(p, name)}, fn); err != nil {
			if errors.Is(err, filepath.SkipDir) {
				break
			}
			return err
		}
	}
	return nil
}

// dirEntry is a directory found by subdirs.
type dirEntry struct{ name, path string }

func (d dirEntry) Name() string               { return d.name }
func (d dirEntry) IsDir() bool                { return true }
func (d dirEntry) Type() fs.FileMode          { return fs.ModeDir }
func (d dirEntry) Info() (fs.FileInfo, error) { return os.Lstat(d.path) }

// subdirs lists the names of the directories in dir. Entries whose type
// the filesystem does not report are lstat'ed.
func subdirs(dir string) ([]string, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		names = appendDirs(names, fd, buf[:n])
	}
}

// appendDirs appends the directories among the linux_dirent64 records in
// b (d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name NUL-terminated)
// to names; fd is the directory they were read from.
func appendDirs(names []string, fd int, b []byte) []string {
	const nameOff = int(unsafe.Offsetof(unix.Dirent{}.Name))
	for len(b) >= nameOff {
		reclen := int(*(*uint16)(unsafe.Pointer(&b[unsafe.Offsetof(unix.Dirent{}.Reclen)])))
		if reclen < nameOff || reclen > len(b) {
			return names // malformed: stop rather than read past the record
		}
		typ := b[unsafe.Offsetof(unix.Dirent{}.Type)]
		rawName := b[nameOff:reclen]
		b = b[reclen:]
		if typ != unix.DT_DIR && typ != unix.DT_UNKNOWN {
			continue
		}
		end := 0
		for end < len(rawName) && rawName[end] != 0 {
			end++
		}
		name := rawName[:end]
		if string(name) == "." || string(name) == ".." || len(name) == 0 {
			continue
		}
		if typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
		}
		names = append(names, string(name))
	}
	return names
}

package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"golang.org/x/sys/unix"
)

// Reader is a regular file opened for reading by OpenReader: a bare
// descriptor read with pread and read. An *os.File costs two more system
// calls per open (the descriptor's flags, and an attempt to add a regular
// file to the poller, which the kernel refuses), which is a tenth of the
// work of scanning or serving a small file.
type Reader struct {
	fd   int
	name string
}

// ErrNotRegular is returned by OpenReader for anything but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// OpenReader opens the regular file rel for reading like OpenRead, and
// refuses anything else at the name (a FIFO, a device: reading one would
// block or never end).
func (r *Root) OpenReader(rel string) (*Reader, error) {
	fd, f, err := r.openBeneathFD(rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	if f != nil {
		// The fallback: keep the descriptor, drop the *os.File around it.
		fd, err = unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: rel, Err: err}
		}
		unix.CloseOnExec(fd)
	}
	return checkRegular(fd, rel)
}

func checkRegular(fd int, rel string) (*Reader, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", rel, ErrNotRegular)
	}
	return &Reader{fd: fd, name: rel}, nil
}

// Read reads from the current offset (io.Reader).
func (f *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// ReadAt fills p from offset off (io.ReaderAt): a short read is io.EOF.
func (f *Reader) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(f.fd, p[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, &fs.PathError{Op: "read", Path: f.name, Err: err}
		}
		if n == 0 {
			return done, io.EOF
		}
		done += n
	}
	return done, nil
}

// Close closes the descriptor.
func (f *Reader) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

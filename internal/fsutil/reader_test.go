package fsutil

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenReader reads a file whole and at offsets, and checks that
// symlinks, names leaving the root, FIFOs and directories are refused,
// with openat2 and with the fallback.
func TestOpenReader(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := mustFor(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/b/f"), data, 0o600))
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	must(os.Symlink("b", filepath.Join(dir, "a/link")))
	must(os.Symlink("b/f", filepath.Join(dir, "a/flink")))
	must(os.Symlink(outside, filepath.Join(dir, "out")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	r, err := Open(dir)
	must(err)
	defer r.Close()
	defer noOpenat2.Store(false)

	for _, slow := range []bool{false, true} {
		noOpenat2.Store(slow)
		f, err := r.OpenReader("a/b/f")
		if err != nil {
			t.Fatalf("slow=%v: %v", slow, err)
		}
		all, err := io.ReadAll(f)
		if err != nil || !bytes.Equal(all, data) {
			t.Errorf("slow=%v: read %d bytes, err %v; want the %d bytes written", slow, len(all), err, len(data))
		}
		buf := make([]byte, 100)
		if n, err := f.ReadAt(buf, 16*100+3); err != nil || n != 100 || !bytes.Equal(buf, data[1603:1703]) {
			t.Errorf("slow=%v: ReadAt in the middle: %d %v %q", slow, n, err, buf[:n])
		}
		if n, err := f.ReadAt(buf, int64(len(data))-40); !errors.Is(err, io.EOF) || n != 40 {
			t.Errorf("slow=%v: ReadAt past the end: %d %v, want 40 and io.EOF", slow, n, err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("slow=%v: close: %v", slow, err)
		}
		if err := f.Close(); err != nil {
			t.Errorf("slow=%v: second close: %v", slow, err)
		}

		for _, rel := range []string{"a/link/f", "a/flink", "out/secret", "../secret", "fifo", "a", "a/b/missing"} {
			if f, err := r.OpenReader(rel); err == nil {
				f.Close()
				t.Errorf("slow=%v: OpenReader(%q) succeeded", slow, rel)
			}
		}
		if _, err := r.OpenReader("a/b/missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("slow=%v: missing file: %v, want fs.ErrNotExist", slow, err)
		}
		if _, err := r.OpenReader("fifo"); !errors.Is(err, ErrNotRegular) {
			t.Errorf("slow=%v: fifo: %v, want ErrNotRegular", slow, err)
		}
	}
}

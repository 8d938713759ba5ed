package watcher

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestWalkDirsVisitsWhatWalkDirVisits builds random trees of directories,
// files and symlinks (to files and to directories, which are not
// followed) and checks that walkDirs calls its function for exactly the
// directories filepath.WalkDir finds, skipping what SkipDir skips.
func TestWalkDirsVisitsWhatWalkDirVisits(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			root := t.TempDir()
			dirs := []string{root}
			for i := range 300 {
				parent := dirs[rng.IntN(len(dirs))]
				p := filepath.Join(parent, fmt.Sprintf("e%03d", i))
				var err error
				switch rng.IntN(6) {
				case 0, 1:
					err = os.Mkdir(p, 0o755)
					dirs = append(dirs, p)
				case 2:
					err = os.Symlink(dirs[rng.IntN(len(dirs))], p)
				case 3:
					err = os.Mkdir(p+".skip", 0o755) // skipped, with what it holds
					dirs = append(dirs, p+".skip")
				default:
					err = os.WriteFile(p, []byte("x"), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			collect := func(walk func(string, fs.WalkDirFunc) error) []string {
				var got []string
				err := walk(root, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						t.Fatalf("%s: %v", p, err)
					}
					if !d.IsDir() {
						return nil
					}
					fi, err := d.Info()
					if err != nil || !fi.IsDir() {
						t.Fatalf("%s: a directory entry whose Info is %v, %v", p, fi, err)
					}
					got = append(got, p)
					if strings.HasSuffix(p, ".skip") {
						return filepath.SkipDir
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				return got
			}
			want, got := collect(filepath.WalkDir), collect(walkDirs)
			if !slices.Equal(got, want) {
				t.Fatalf("walkDirs visited\n%v\nWalkDir\n%v", got, want)
			}
		})
	}
}

// TestWalkDirsReportsAnUnreadableRoot passes a missing root to the
// function as WalkDir does.
func TestWalkDirsReportsAnUnreadableRoot(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	var calls int
	err := walkDirs(missing, func(p string, d fs.DirEntry, err error) error {
		calls++
		if p != missing || d != nil || !os.IsNotExist(err) {
			t.Fatalf("called with %q, %v, %v", p, d, err)
		}
		return nil
	})
	if err != nil || calls != 1 {
		t.Fatalf("err %v, %d calls", err, calls)
	}
}

// TestAppendDirsOfUnknownType parses records whose type the filesystem
// did not report: they are lstat'ed, and only directories are kept.
func TestAppendDirsOfUnknownType(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var buf []byte
	for _, e := range []struct {
		name string
		typ  uint8
	}{{".", unix.DT_DIR}, {"..", unix.DT_DIR}, {"sub", unix.DT_UNKNOWN}, {"file", unix.DT_UNKNOWN}, {"gone", unix.DT_UNKNOWN}, {"known", unix.DT_DIR}, {"link", unix.DT_LNK}} {
		buf = append(buf, dirent(e.name, e.typ)...)
	}
	got := appendDirs(nil, fd, buf)
	if want := []string{"sub", "known"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// A record claiming more bytes than there are ends the parse.
	bad := dirent("x", unix.DT_DIR)
	binary.NativeEndian.PutUint16(bad[unsafe.Offsetof(unix.Dirent{}.Reclen):], 200)
	if got := appendDirs(nil, fd, bad); len(got) != 0 {
		t.Fatalf("malformed record gave %v", got)
	}
}

// dirent encodes one linux_dirent64 record, padded to 8 bytes.
func dirent(name string, typ uint8) []byte {
	off := int(unsafe.Offsetof(unix.Dirent{}.Name))
	n := (off + len(name) + 1 + 7) &^ 7
	b := make([]byte, n)
	binary.NativeEndian.PutUint16(b[unsafe.Offsetof(unix.Dirent{}.Reclen):], uint16(n))
	b[unsafe.Offsetof(unix.Dirent{}.Type)] = typ
	copy(b[off:], name)
	return b
}

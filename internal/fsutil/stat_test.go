package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"tandem/internal/record"
)

// TestStatPath checks StatPath against CheckParents plus Lstat, with
// openat2 and with the fallback, on every kind of parent and leaf.
func TestStatPath(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := mustFor(t)
	must(os.MkdirAll(filepath.Join(dir, "a/b/c"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/b/c/f.txt"), []byte("hello"), 0o640))
	must(os.WriteFile(filepath.Join(dir, "top.txt"), []byte("x"), 0o600))
	must(os.Symlink("b", filepath.Join(dir, "a/link")))             // symlinked dir inside the root
	must(os.Symlink(outside, filepath.Join(dir, "out")))            // symlink leaving the root
	must(os.Symlink("nowhere", filepath.Join(dir, "a/b/dangling"))) // a symlink leaf
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	r, err := Open(dir)
	must(err)
	defer r.Close()

	cases := []struct {
		rel      string
		wantType record.Type
		wantErr  error // nil: success
	}{
		{"top.txt", record.File, nil},
		{"a", record.Dir, nil},
		{"a/b/c/f.txt", record.File, nil},
		{"a/b/dangling", record.Symlink, nil},
		{"a/link", record.Symlink, nil},
		{"a/link/c", 0, ErrSymlinkParent},
		{"out/secret", 0, ErrSymlinkParent},
		{"top.txt/x", 0, ErrSymlinkParent},
		{"a/b/missing", 0, fs.ErrNotExist},
		{"a/missing/f", 0, fs.ErrNotExist},
	}
	for _, slow := range []bool{false, true} {
		noOpenat2.Store(slow)
		for _, tc := range cases {
			st, ok, err := r.StatPath(tc.rel)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("slow=%v %s: err %v, want %v", slow, tc.rel, err, tc.wantErr)
				}
				continue
			}
			if err != nil || !ok || st.Type != tc.wantType {
				t.Errorf("slow=%v %s: %+v %v %v, want type %v", slow, tc.rel, st, ok, err, tc.wantType)
				continue
			}
			want, _, err := r.Lstat(tc.rel)
			if err != nil || want != st {
				t.Errorf("slow=%v %s: StatPath %+v, Lstat %+v (%v)", slow, tc.rel, st, want, err)
			}
		}
		if _, _, err := r.StatPath("../escape"); err == nil {
			t.Errorf("slow=%v: ../escape accepted", slow)
		}
		// A StatCache answers as StatPath does, whatever the order of the
		// paths (its parent held or not), and twice in a row.
		sc := r.NewStatCache()
		for _, order := range [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {2, 8, 3, 5, 9, 9, 7, 6, 1, 0, 4, 2}} {
			for _, i := range order {
				tc := cases[i]
				st, ok, err := sc.Stat(tc.rel)
				want, wok, werr := r.StatPath(tc.rel)
				if st != want || ok != wok || (err == nil) != (werr == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Errorf("slow=%v StatCache.Stat(%s) = %+v %v %v, StatPath %+v %v %v", slow, tc.rel, st, ok, err, want, wok, werr)
				}
			}
		}
		if _, _, err := sc.Stat("a/../../escape"); err == nil {
			t.Errorf("slow=%v: StatCache accepted a/../../escape", slow)
		}
		sc.Close()
		sc.Close()
		// CheckParents and OpenRead refuse the same parents; OpenRead
		// also refuses a symlink at the name itself.
		for _, tc := range cases {
			perr := r.CheckParents(tc.rel)
			if tc.wantErr == ErrSymlinkParent && !errors.Is(perr, ErrSymlinkParent) {
				t.Errorf("slow=%v CheckParents(%s) = %v, want %v", slow, tc.rel, perr, ErrSymlinkParent)
			}
			if tc.wantErr == nil && perr != nil {
				t.Errorf("slow=%v CheckParents(%s) = %v", slow, tc.rel, perr)
			}
			fh, err := r.OpenRead(tc.rel)
			if fh != nil {
				fh.Close()
			}
			switch {
			case tc.wantErr != nil && err == nil:
				t.Errorf("slow=%v OpenRead(%s) succeeded, want %v", slow, tc.rel, tc.wantErr)
			case tc.wantErr == fs.ErrNotExist && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("slow=%v OpenRead(%s) = %v, want %v", slow, tc.rel, err, tc.wantErr)
			case tc.wantErr == nil && tc.wantType == record.Symlink && err == nil:
				t.Errorf("slow=%v OpenRead(%s) followed a symlink", slow, tc.rel)
			case tc.wantErr == nil && tc.wantType != record.Symlink && err != nil:
				t.Errorf("slow=%v OpenRead(%s) = %v", slow, tc.rel, err)
			}
		}
		if fh, err := r.OpenRead("a/b/c/f.txt"); err != nil {
			t.Errorf("slow=%v: %v", slow, err)
		} else {
			b, _ := io.ReadAll(fh)
			fh.Close()
			if string(b) != "hello" {
				t.Errorf("slow=%v: read %q", slow, b)
			}
		}
		if _, err := r.OpenRead("../escape"); err == nil {
			t.Errorf("slow=%v: OpenRead ../escape accepted", slow)
		}
		if !slow && noOpenat2.Load() {
			t.Logf("openat2 is not available here: only the fallback was tested")
		}
	}
	noOpenat2.Store(false)
}

func TestReadDirStat(t *testing.T) {
	dir := t.TempDir()
	must := mustFor(t)
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/f.txt"), []byte("hello"), 0o640))
	must(os.Symlink("b", filepath.Join(dir, "a/link")))
	must(os.WriteFile(filepath.Join(dir, "top"), []byte("x"), 0o600))
	// Enough entries to be statted in parallel parts; each of its own
	// size, mode or type, so that an entry given another's stat shows.
	must(os.Mkdir(filepath.Join(dir, "big"), 0o755))
	for i := range 4*parallelStatMin + 7 {
		p := filepath.Join(dir, "big", fmt.Sprintf("e%04d", i))
		switch i % 5 {
		case 0:
			must(os.Mkdir(p, 0o700))
		case 1:
			must(os.Symlink(fmt.Sprint(i), p))
		default:
			must(os.WriteFile(p, make([]byte, i), os.FileMode(0o600+i%3*0o40)))
		}
	}
	r, err := Open(dir)
	must(err)
	defer r.Close()
	for _, slow := range []bool{false, true} {
		noOpenat2.Store(slow)
		for _, d := range []string{"", "a", "big"} {
			es, err := r.ReadDirStat(d)
			if err != nil {
				t.Fatalf("slow=%v %q: %v", slow, d, err)
			}
			want, _ := os.ReadDir(filepath.Join(dir, d))
			if len(es) != len(want) {
				t.Fatalf("slow=%v %q: %d entries, want %d", slow, d, len(es), len(want))
			}
			for _, e := range es {
				rel := e.Name
				if d != "" {
					rel = d + "/" + e.Name
				}
				st, ok, err := r.Lstat(rel)
				if e.Err != nil || err != nil || e.OK != ok || e.Stat != st {
					t.Errorf("slow=%v %s: %+v %v %v, Lstat %+v %v %v", slow, rel, e.Stat, e.OK, e.Err, st, ok, err)
				}
			}
		}
		if _, err := r.ReadDirStat("a/link"); err == nil {
			t.Errorf("slow=%v: listed a directory through a symlink", slow)
		}
		if _, err := r.ReadDirStat("top"); err == nil {
			t.Errorf("slow=%v: listed a file", slow)
		}
	}
	noOpenat2.Store(false)
}

// mustFor returns a function that fails t on a non-nil error.
func mustFor(t *testing.T) func(error) {
	return func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

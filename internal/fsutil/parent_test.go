package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"tandem/internal/record"
)

// TestParent checks OpenParent's errors on every kind of parent, and that
// MoveInFree puts a file at a free name, refuses a taken one without
// changing it, and lands in the directory that was opened even when a
// symlink to elsewhere takes the parent's name afterwards.
func TestParent(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := mustFor(t)
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/b/taken"), []byte("local"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "top"), []byte("x"), 0o644))
	must(os.Symlink(outside, filepath.Join(dir, "out")))
	r, err := Open(dir)
	must(err)
	defer r.Close()

	for _, tc := range []struct {
		rel  string
		want error
	}{
		{"out/f", ErrSymlinkParent},
		{"top/f", ErrSymlinkParent},
		{"a/missing/f", fs.ErrNotExist},
		{"../f", nil}, // invalid name: any error
	} {
		p, err := r.OpenParent(tc.rel)
		if err == nil {
			p.Close()
			t.Errorf("%s: opened", tc.rel)
		} else if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.rel, err, tc.want)
		}
	}

	src := func(content string) string {
		t.Helper()
		// Same filesystem as dir: next to it.
		p := filepath.Join(dir, ".tmp-"+content)
		must(os.WriteFile(p, []byte(content), 0o600))
		return p
	}

	// A top-level name uses the root's own descriptor.
	for _, rel := range []string{"new-top", "a/b/new"} {
		p, err := r.OpenParent(rel)
		if errors.Is(err, ErrNoParentFD) {
			t.Skip("openat2 is not available here")
		}
		must(err)
		if _, _, err := p.Lstat(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Lstat of a free name: %v", rel, err)
		}
		must(p.MoveInFree(src(rel[len(rel)-3:])))
		st, ok, err := p.Lstat()
		if err != nil || !ok || st.Type != record.File || st.Size != 3 {
			t.Errorf("%s: after the move %+v %v %v", rel, st, ok, err)
		}
		p.Close()
		if b, err := os.ReadFile(filepath.Join(dir, rel)); err != nil || string(b) != rel[len(rel)-3:] {
			t.Errorf("%s: holds %q %v", rel, b, err)
		}
	}

	p, err := r.OpenParent("a/b/taken")
	must(err)
	from := src("remote")
	if err := p.MoveInFree(from); !errors.Is(err, fs.ErrExist) {
		t.Errorf("MoveInFree over a file: %v, want fs.ErrExist", err)
	}
	p.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "a/b/taken")); string(b) != "local" {
		t.Errorf("the taken name now holds %q", b)
	}
	if _, err := os.Stat(from); err != nil {
		t.Errorf("the refused source is gone: %v", err)
	}

	// The parent is swapped for a symlink leaving the root after it was
	// opened: the file still lands in the directory that was checked.
	p, err = r.OpenParent("a/b/late")
	must(err)
	must(os.Rename(filepath.Join(dir, "a/b"), filepath.Join(dir, "a/moved")))
	must(os.Symlink(outside, filepath.Join(dir, "a/b")))
	must(p.MoveInFree(src("late")))
	p.Close()
	if _, err := os.Stat(filepath.Join(outside, "late")); err == nil {
		t.Errorf("the file escaped the root through the swapped parent")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a/moved/late")); err != nil || string(b) != "late" {
		t.Errorf("the file is not in the opened directory: %q %v", b, err)
	}
}

// TestStatCacheParent checks that a parent from a StatCache acts in the
// directory of the path asked for, reuses the directory held for a path
// in the same directory and opens another one for a path elsewhere,
// refuses invalid names, and that its Close leaves the directory held.
func TestStatCacheParent(t *testing.T) {
	dir := t.TempDir()
	must := mustFor(t)
	must(os.MkdirAll(filepath.Join(dir, "a/b"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "a/c"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "a/b/one"), []byte("1"), 0o644))
	r, err := Open(dir)
	must(err)
	defer r.Close()
	for _, tc := range []struct {
		first, second string
		same          bool // the second is in the first's directory
		valid         bool
	}{
		{"a/b/one", "a/b/two", true, true},
		{"top", "other", true, true},
		{"a/b/one", "a/c/two", false, true},
		{"a/b/one", "a/two", false, true},
		{"a/b/one", "a/b/c/two", false, false}, // a/b/c does not exist
		{"top", "a/top", false, true},
		{"a/b/one", "a/b/..", false, false},
	} {
		c := r.NewStatCache()
		p, err := c.Parent(tc.first)
		if errors.Is(err, ErrNoParentFD) {
			t.Skip("openat2 is not available here")
		}
		must(err)
		p.Close()
		held := c.dir
		s, err := c.Parent(tc.second)
		if (err == nil) != tc.valid {
			t.Errorf("%s then %s: %v, want valid %v", tc.first, tc.second, err, tc.valid)
		}
		if err != nil {
			c.Close()
			continue
		}
		// The descriptor of a closed directory may be reused for the
		// next: the same directory is the same descriptor and name held.
		if same := s.fd == p.fd && c.dir == held; same != tc.same {
			t.Errorf("%s then %s: same directory held %v, want %v", tc.first, tc.second, same, tc.same)
		}
		s.Close()
		from := filepath.Join(dir, ".tmp-sib")
		must(os.WriteFile(from, []byte("sib"), 0o600))
		must(s.MoveInFree(from))
		if b, err := os.ReadFile(filepath.Join(dir, tc.second)); err != nil || string(b) != "sib" {
			t.Errorf("%s: holds %q %v", tc.second, b, err)
		}
		// The directory is still held after the parents' Close.
		if _, _, err := s.Lstat(); err != nil {
			t.Errorf("%s: parent after its Close: %v", tc.second, err)
		}
		c.Close()
	}
}

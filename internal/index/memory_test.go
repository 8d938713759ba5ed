package index

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"tandem/internal/record"
)

// rssFile returns the process's file-backed resident memory in KiB.
func rssFile(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "RssFile:"); ok {
			var kb int
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseMapped reads a large index (its pages become resident in the
// mapping), releases the mapping and checks that the file-backed RSS fell
// by most of the index while every record still reads back intact.
func TestReleaseMapped(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "index.db"))
	defer db.Close()
	const n = 60000
	for start := 0; start < n; start += 5000 {
		err := f.Update(func(tx *Tx) error {
			for i := start; i < start+5000; i++ {
				if _, err := tx.Put(record.Record{Path: fmt.Sprintf("dir%03d/file%06d", i%100, i), Size: int64(i), Dot: 1, ModifiedBy: 1, Blocks: []record.Block{{Hash: [32]byte{byte(i), byte(i >> 8), byte(i >> 16)}, Size: 1}}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() int {
		seen := 0
		if err := f.View(func(tx *Tx) error {
			return tx.Walk(func(r record.Record) bool {
				if r.Path != fmt.Sprintf("dir%03d/file%06d", r.Size%100, r.Size) {
					t.Fatalf("record %q has size %d", r.Path, r.Size)
				}
				seen++
				return true
			})
		}); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	readAll()
	var size int64
	_ = db.bolt.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	before := rssFile(t)
	if err := db.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if drop := before - after; drop < int(size>>10)/2 {
		t.Fatalf("RssFile %d KiB before release, %d after: fell by less than half of the %d KiB index", before, after, size>>10)
	}
	if got := readAll(); got != n {
		t.Fatalf("after release: %d records read back, want %d", got, n)
	}
}

// TestTouchReleasesOnlyLargeMappings checks that reading a small index
// never releases its mapping (each release would make the next reads page
// fault), while an index above the floor is released as its pages are
// touched.
func TestTouchReleasesOnlyLargeMappings(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "index.db"))
	defer db.Close()
	const n = 2000
	if err := f.Update(func(tx *Tx) error {
		for i := range n {
			if _, err := tx.Put(record.Record{Path: fmt.Sprintf("f%05d", i), Size: int64(i), Dot: 1, ModifiedBy: 1}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	getAll := func() {
		t.Helper()
		if err := f.View(func(tx *Tx) error {
			for i := range n {
				r, ok, err := tx.Get(fmt.Sprintf("f%05d", i))
				if err != nil || !ok || r.Size != int64(i) {
					t.Fatalf("get f%05d: %v %v %d", i, ok, err, r.Size)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	db.releases.Store(0)
	getAll()
	if got := db.releases.Load(); got != 0 {
		t.Fatalf("%d releases of a small index's mapping, want none", got)
	}
	old := releaseFloor
	releaseFloor = 0
	defer func() { releaseFloor = old }()
	getAll()
	if got := db.releases.Load(); got < n/touchBudget {
		t.Fatalf("%d releases after %d reads above the floor, want at least %d", got, n, n/touchBudget)
	}
}

package index

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"tandem/internal/record"
)

func openFolder(t *testing.T, path string) (*DB, *Folder) {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := db.Folder("data")
	if err != nil {
		t.Fatal(err)
	}
	return db, f
}

// truth counts live records and needs the slow way.
func truth(t *testing.T, f *Folder) (live, needs int) {
	t.Helper()
	err := f.View(func(tx *Tx) error {
		if err := tx.Walk(func(r record.Record) bool {
			if !r.Deleted {
				live++
			}
			return true
		}); err != nil {
			return err
		}
		needs = tx.b.Bucket(bNeed).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}

func counters(t *testing.T, f *Folder) (live, needs int) {
	t.Helper()
	_ = f.View(func(tx *Tx) error {
		live, needs = tx.Live(), tx.NeedCount()
		return nil
	})
	return
}

// TestCounters checks the live-record and need counters against a full
// walk after random puts (live and deleted, new and existing paths),
// repeated SetNeed and ClearNeed of absent paths, and across a reopen.
func TestCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, f := openFolder(t, path)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := fmt.Sprintf("p%02d", rng.IntN(50))
		err := f.Update(func(tx *Tx) error {
			switch rng.IntN(4) {
			case 0, 1:
				_, err := tx.Put(record.Record{Path: p, Deleted: rng.IntN(3) == 0, Dot: uint64(i + 1), ModifiedBy: 1})
				return err
			case 2:
				if err := tx.SetNeed(p); err != nil {
					return err
				}
				return tx.SetNeed(p) // twice in one transaction counts once
			default:
				return tx.ClearNeed(p)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			wl, wn := truth(t, f)
			if gl, gn := counters(t, f); gl != wl || gn != wn {
				t.Fatalf("step %d: counters live %d needs %d, walk says %d and %d", i, gl, gn, wl, wn)
			}
		}
	}
	wl, wn := truth(t, f)
	if wl == 0 || wn == 0 {
		t.Fatalf("degenerate history: %d live, %d needs", wl, wn)
	}
	db.Close()
	db, f = openFolder(t, path)
	defer db.Close()
	if gl, gn := counters(t, f); gl != wl || gn != wn {
		t.Fatalf("after reopen: counters live %d needs %d, walk says %d and %d", gl, gn, wl, wn)
	}
}

// TestCountersBackfill opens an index written before the counters existed
// (simulated by deleting them) and expects them computed on open.
func TestCountersBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, f := openFolder(t, path)
	err := f.Update(func(tx *Tx) error {
		for i := range 10 {
			if _, err := tx.Put(record.Record{Path: fmt.Sprint("f", i), Deleted: i%3 == 0, Dot: 1, ModifiedBy: 1}); err != nil {
				return err
			}
			if i%2 == 0 {
				if err := tx.SetNeed(fmt.Sprint("f", i)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.bolt.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(f.name).Bucket(bMeta)
		if err := meta.Delete(kLive); err != nil {
			return err
		}
		return meta.Delete(kNeeds)
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, f = openFolder(t, path)
	defer db.Close()
	if gl, gn := counters(t, f); gl != 6 || gn != 5 {
		t.Fatalf("backfilled counters: live %d needs %d, want 6 and 5", gl, gn)
	}
}

// TestChildrenStat checks that the partial records (ChildrenStat,
// GetStat) carry every field a scan compares, equal to the full ones, and
// the same set of children.
func TestChildrenStat(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "index.db"))
	defer db.Close()
	err := f.Update(func(tx *Tx) error {
		for i, p := range []string{"d", "d/a", "d/b", "d/b/deep", "d/c", "e"} {
			r := record.Record{Path: p, Type: record.File, Deleted: i == 4, Size: int64(i * 100), Mode: 0o640 + uint32(i), MTime: int64(i) * 1e9,
				UID: uint32(1000 + i), GID: uint32(2000 + i), Inode: uint64(50 + i), CTime: int64(i) * 2e9, Target: "t",
				Blocks: []record.Block{{Size: 1}}, Dot: 1, ModifiedBy: 7}
			if p == "d" || p == "d/b" {
				r.Type = record.Dir
			}
			if _, err := tx.Put(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = f.View(func(tx *Tx) error {
		var full, part []record.Record
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(tx.Children("d/", func(r record.Record) { full = append(full, r) }))
		must(tx.ChildrenStat("d/", func(r record.Record) { part = append(part, r) }))
		if len(full) != 3 || len(part) != len(full) {
			t.Fatalf("children: %d full, %d partial, want 3", len(full), len(part))
		}
		for i := range full {
			a, b := full[i], part[i]
			want := record.Record{Path: a.Path, Type: a.Type, Deleted: a.Deleted, Size: a.Size, Mode: a.Mode, MTime: a.MTime,
				UID: a.UID, GID: a.GID, Inode: a.Inode, CTime: a.CTime}
			if !cmp.Equal(want, b) {
				t.Errorf("partial record of %s: %s", a.Path, cmp.Diff(want, b))
			}
			got, ok, err := tx.GetStat(a.Path)
			must(err)
			if !ok || !cmp.Equal(want, got) {
				t.Errorf("GetStat of %s (found %v): %s", a.Path, ok, cmp.Diff(want, got))
			}
		}
		if _, ok, err := tx.GetStat("d/none"); ok || err != nil {
			t.Errorf("GetStat of a missing path: found %v, err %v", ok, err)
		}
		return nil
	})
}

// TestMappingDoesNotMoveAsTheIndexGrows checks that the index is mapped
// once: a write transaction that outgrows bbolt's default mapping (the
// next power of two of the file's size) would map the file anew, copying
// everything it touched out of the old mapping and waiting for readers.
func TestMappingDoesNotMoveAsTheIndexGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	db, f := openFolder(t, path)
	defer db.Close()
	data := db.bolt.Info().Data
	for batch := range 10 {
		err := f.Update(func(tx *Tx) error {
			for i := range 2000 {
				r := record.Record{Path: fmt.Sprintf("d%02d/file%06d", batch, i), Type: record.File, Size: 4096, Mode: 0o644, MTime: 1, ModifiedBy: 1, Dot: uint64(batch*2000 + i + 1)}
				r.Version = r.Version.Update(1, r.Dot)
				var h [32]byte
				h[0], h[1], h[2] = byte(batch), byte(i), byte(i>>8)
				r.Blocks = []record.Block{{Hash: h, Size: 4096, Check: uint64(i)}}
				if _, err := tx.Put(r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() < 4<<20 {
		t.Fatalf("index is %d bytes after 20 000 records; the test needs it past several doublings", info.Size())
	}
	if got := db.bolt.Info().Data; got != data {
		t.Errorf("the index was mapped anew as it grew to %d bytes", info.Size())
	}
}

package index

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/record"
)

// TestBlockMapFollowsRecords runs random sequences of stores, deletions,
// rolled-back transactions, moves of the block log's oldest entries to
// the blocks bucket (its thresholds set low) and reopenings of the index, and checks after each step that
// FindBlock finds, for every block, exactly the paths whose records hold
// it, each at an offset where that record holds it.
func TestBlockMapFollowsRecords(t *testing.T) {
	oldMerge, oldChunk := blockLogMerge, blockLogChunk
	blockLogMerge, blockLogChunk = 8, 3
	defer func() { blockLogMerge, blockLogChunk = oldMerge, oldChunk }()
	rapid.Check(t, func(rt *rapid.T) {
		path := filepath.Join(t.TempDir(), "i.db")
		db, err := Open(path)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { db.Close() }()
		f, err := db.Folder("data")
		if err != nil {
			rt.Fatal(err)
		}
		model := map[string][]int{} // path -> block numbers of its live record
		paths := []string{"a", "b", "c", "d/e", "f"}
		errRollback := errors.New("roll back")
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for range steps {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op < 6: // one transaction of a few stores and deletions
				n := rapid.IntRange(1, 6).Draw(rt, "puts")
				rollback := rapid.IntRange(0, 5).Draw(rt, "rollback") == 0
				next := map[string][]int{}
				err := f.Update(func(tx *Tx) error {
					for range n {
						p := rapid.SampledFrom(paths).Draw(rt, "path")
						if rapid.IntRange(0, 3).Draw(rt, "delete") == 0 {
							if _, err := tx.Put(record.Record{Path: p, Type: record.File, Deleted: true}); err != nil {
								return err
							}
							next[p] = nil
							continue
						}
						bs := rapid.SliceOfN(rapid.IntRange(0, 6), 1, 4).Draw(rt, "blocks")
						if _, err := tx.Put(fileOf(p, bs...)); err != nil {
							return err
						}
						next[p] = bs
					}
					if rollback {
						return errRollback
					}
					return nil
				})
				if rollback {
					if !errors.Is(err, errRollback) {
						rt.Fatalf("update: %v", err)
					}
					break
				}
				if err != nil {
					rt.Fatal(err)
				}
				for p, bs := range next {
					model[p] = bs
				}
			case op < 8: // reopen: the log's map is read back from disk
				db.Close()
				if db, err = Open(path); err != nil {
					rt.Fatal(err)
				}
				if f, err = db.Folder("data"); err != nil {
					rt.Fatal(err)
				}
			default: // move some of the log now, whatever its size
				n := rapid.IntRange(1, 20).Draw(rt, "move")
				if err := f.Update(func(tx *Tx) error { return tx.mergeLog(n) }); err != nil {
					rt.Fatal(err)
				}
			}
			checkBlockMap(rt, f, model)
		}
	})
}

func checkBlockMap(rt *rapid.T, f *Folder, model map[string][]int) {
	for n := range 7 {
		h := blockHash(n)
		var want []string
		for p, bs := range model {
			if slices.Contains(bs, n) {
				want = append(want, p)
			}
		}
		var got []string
		err := f.View(func(tx *Tx) error {
			for _, loc := range tx.FindBlock(h, 1000) {
				bs := model[loc.Path]
				i := int(loc.Offset / 100)
				if loc.Offset%100 != 0 || loc.Size != 100 || i >= len(bs) || bs[i] != n {
					return fmt.Errorf("block %d found at %s offset %d size %d, which holds %v", n, loc.Path, loc.Offset, loc.Size, bs)
				}
				if !slices.Contains(got, loc.Path) {
					got = append(got, loc.Path)
				}
			}
			return nil
		})
		if err != nil {
			rt.Fatal(err)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			rt.Fatalf("block %d found in %v, want %v", n, got, want)
		}
	}
}

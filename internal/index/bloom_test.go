package index

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/record"
)

// blockHash is a distinct block hash for each n.
func blockHash(n int) [32]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return sha256.Sum256(b[:])
}

// fileOf is a file record at path made of the blocks numbered ns.
func fileOf(path string, ns ...int) record.Record {
	r := record.Record{Path: path, Type: record.File}
	for _, n := range ns {
		r.Blocks = append(r.Blocks, record.Block{Hash: blockHash(n), Size: 100})
		r.Size += 100
	}
	return r
}

// storedBlocks is every block hash the index holds, read from the blocks
// bucket itself.
func storedBlocks(t interface{ Fatal(...any) }, f *Folder) map[[32]byte]bool {
	out := map[[32]byte]bool{}
	if err := f.View(func(tx *Tx) error {
		if err := tx.b.Bucket(bBlocks).ForEach(func(k, _ []byte) error {
			out[[32]byte(k[:32])] = true
			return nil
		}); err != nil {
			return err
		}
		return tx.b.Bucket(bBlockLog).ForEach(func(_, v []byte) error {
			out[[32]byte(v[:32])] = true
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// falseMaybes counts the hashes of n blocks never stored (numbered from
// 1<<40) for which the filter answers "maybe".
func falseMaybes(f *Folder, n int) int {
	c := 0
	for i := range n {
		if mayHave(f, blockHash(1<<40+i)) {
			c++
		}
	}
	return c
}

// TestBlockFilterNeverMisses: whatever files are stored, replaced and
// deleted, in transactions of any size, every block the index holds is
// one the filter may have, FindBlock still finds it, and the filter
// keeps answering "no" for blocks never stored. Enough blocks go in to
// make the filter grow (rebuilt from the bucket) at least once.
func TestBlockFilterNeverMisses(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		db, f := openFolder(t, filepath.Join(t.TempDir(), "i.db"))
		defer db.Close()
		next := 0
		txs := rapid.IntRange(1, 12).Draw(rt, "txs")
		for range txs {
			err := f.Update(func(tx *Tx) error {
				for range rapid.IntRange(0, 6).Draw(rt, "ops") {
					path := fmt.Sprintf("f%d", rapid.IntRange(0, 20).Draw(rt, "path"))
					if rapid.IntRange(0, 4).Draw(rt, "op") == 0 {
						if _, err := tx.Put(record.Record{Path: path, Type: record.File, Deleted: true}); err != nil {
							return err
						}
						continue
					}
					// Mostly new blocks, some repeated; a few large files.
					var ns []int
					size := rapid.IntRange(0, 4).Draw(rt, "blocks")
					if rapid.IntRange(0, 9).Draw(rt, "large") == 0 {
						size = rapid.IntRange(500, 4000).Draw(rt, "largeBlocks")
					}
					for range size {
						if next > 0 && rapid.IntRange(0, 3).Draw(rt, "repeat") == 0 {
							ns = append(ns, rapid.IntRange(0, next-1).Draw(rt, "old"))
						} else {
							ns = append(ns, next)
							next++
						}
					}
					if _, err := tx.Put(fileOf(path, ns...)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				rt.Fatal(err)
			}
			for h := range storedBlocks(rt, f) {
				if !mayHave(f, h) {
					rt.Fatalf("the index holds block %x, the filter says it does not", h[:4])
				}
			}
		}
		if err := f.View(func(tx *Tx) error {
			for h := range storedBlocks(rt, f) {
				if len(tx.FindBlock(h, 1)) == 0 {
					rt.Fatalf("FindBlock misses stored block %x", h[:4])
				}
			}
			return nil
		}); err != nil {
			rt.Fatal(err)
		}
		if fp := falseMaybes(f, 2000); fp > 40 {
			rt.Fatalf("%d of 2000 blocks never stored may be here, want at most 40", fp)
		}
	})
}

// TestBlockFilterGrowsAndReloads stores many more blocks than the
// filter's first size, one transaction at a time and then at once,
// checks that it grew and still knows them all, and that a reopened
// index builds the same answers from its blocks bucket. Two Folder
// values of one folder share the filter.
func TestBlockFilterGrowsAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "i.db")
	db, f := openFolder(t, path)
	first := f.filter.bloomWords()
	n := 0
	for i := range 50 {
		if err := f.Update(func(tx *Tx) error {
			ns := make([]int, 400)
			for j := range ns {
				ns[j] = n
				n++
			}
			_, err := tx.Put(fileOf(fmt.Sprintf("small/%d", i), ns...))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]int, 3*bloomMinBlocks)
	for j := range big {
		big[j] = n
		n++
	}
	if err := f.Update(func(tx *Tx) error { _, err := tx.Put(fileOf("big", big...)); return err }); err != nil {
		t.Fatal(err)
	}
	if grown := f.filter.bloomWords(); grown < 4*first {
		t.Fatalf("filter has %d words after %d blocks, started with %d: it did not grow", grown, n, first)
	}
	other, err := db.Folder("data")
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, f *Folder) {
		t.Helper()
		for i := range n {
			if !mayHave(f, blockHash(i)) {
				t.Fatalf("%s: stored block %d not in the filter", what, i)
			}
		}
		if fp := falseMaybes(f, 10000); fp > 100 {
			t.Fatalf("%s: %d of 10000 blocks never stored may be here, want at most 100", what, fp)
		}
	}
	check("grown", f)
	check("second Folder value", other)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, f2 := openFolder(t, path)
	defer db2.Close()
	check("reopened", f2)
}

// TestBlockFilterFollowsStoredBlocks stores the same files again and
// again (as a node does for a file rewritten with the same blocks, or
// changed in metadata only): the filter counts every add, but its size
// must follow the blocks the index holds, not the adds of its lifetime.
func TestBlockFilterFollowsStoredBlocks(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "i.db"))
	defer db.Close()
	ns := make([]int, 3000)
	for i := range ns {
		ns[i] = i
	}
	first := f.filter.bloomWords()
	for round := range 60 { // 180 000 adds of 3 000 blocks
		if err := f.Update(func(tx *Tx) error {
			r := fileOf("same", ns...)
			r.MTime = int64(round)
			_, err := tx.Put(r)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.filter.bloomWords(); got != first {
		t.Fatalf("filter grew from %d to %d words for 3 000 stored blocks", first, got)
	}
	for i := range ns {
		if !mayHave(f, blockHash(i)) {
			t.Fatalf("stored block %d not in the filter", i)
		}
	}
	if fp := falseMaybes(f, 10000); fp > 100 {
		t.Fatalf("%d of 10000 blocks never stored may be here, want at most 100", fp)
	}
}

// mayHave is the filter's answer for h in folder f.
func mayHave(f *Folder, h [32]byte) bool { return f.filter.mayHave(h[:]) }

// TestBlockFilterRollbackKeepsCommitted: a transaction deletes a file and
// stores enough new blocks to rebuild the filter, then rolls back. The
// deleted file is still in the index, so its blocks must still pass the
// filter (the rebuilt one, which left them out, never takes over).
func TestBlockFilterRollbackKeepsCommitted(t *testing.T) {
	db, f := openFolder(t, filepath.Join(t.TempDir(), "i.db"))
	defer db.Close()
	kept := make([]int, 100)
	for i := range kept {
		kept[i] = i
	}
	if err := f.Update(func(tx *Tx) error { _, err := tx.Put(fileOf("kept", kept...)); return err }); err != nil {
		t.Fatal(err)
	}
	many := make([]int, 2*bloomMinBlocks)
	for i := range many {
		many[i] = 1000 + i
	}
	errRollback := fmt.Errorf("roll back")
	err := f.Update(func(tx *Tx) error {
		if _, err := tx.Put(record.Record{Path: "kept", Type: record.File, Deleted: true}); err != nil {
			return err
		}
		if _, err := tx.Put(fileOf("many", many...)); err != nil {
			return err
		}
		return errRollback
	})
	if err != errRollback {
		t.Fatalf("update: %v", err)
	}
	for h := range storedBlocks(t, f) {
		if !mayHave(f, h) {
			t.Fatalf("committed block %x not in the filter after a rolled-back rebuild", h[:4])
		}
	}
	if len(storedBlocks(t, f)) != len(kept) {
		t.Fatalf("%d blocks stored, want %d", len(storedBlocks(t, f)), len(kept))
	}
}

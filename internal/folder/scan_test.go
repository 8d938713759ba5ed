package folder

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/blocks"
	"tandem/internal/fsutil"
	"tandem/internal/record"
)

// TestScanRecordsBlockChecks: a file found by the scan is recorded with
// every block's SHA-256 and check, as taken from its bytes, so that a
// receiver can verify what it fetches by the check.
func TestScanRecordsBlockChecks(t *testing.T) {
	f, root := startFolder(t, newCountingPeers())
	waitReady(t, f)
	data := randomData(3<<20, 5)
	if err := os.WriteFile(filepath.Join(root, "multi.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var r record.Record
	waitFor(t, "multi.bin indexed", func() bool {
		var ok bool
		var err error
		r, ok, err = f.get("multi.bin")
		return err == nil && ok && r.Size == int64(len(data))
	})
	if len(r.Blocks) < 2 {
		t.Fatalf("%d blocks for 3 MiB", len(r.Blocks))
	}
	off := 0
	for i, b := range r.Blocks {
		part := data[off : off+int(b.Size)]
		if b.Hash != sha256.Sum256(part) || b.Check != blocks.CheckSum(part) {
			t.Fatalf("block %d at %d: recorded hash %x check %x, its bytes give %x and %x", i, off, b.Hash[:4], b.Check, sha256.Sum256(part), blocks.CheckSum(part))
		}
		off += int(b.Size)
	}
}

// TestUnmoved: a directory read by a scan stays valid when only its
// mtime and ctime moved (an entry was added or removed), not when its
// synced state did; a file is valid only if nothing moved.
func TestUnmoved(t *testing.T) {
	dir := fsutil.Stat{Type: record.Dir, Mode: 0o644, MTime: 10, CTime: 10, Inode: 5}
	file := fsutil.Stat{Type: record.File, Size: 3, Mode: 0o644, MTime: 10, CTime: 10, Inode: 6}
	cases := []struct {
		name     string
		pre, now fsutil.Stat
		want     bool
	}{
		{"dir unchanged", dir, dir, true},
		{"dir got an entry", dir, fsutil.Stat{Type: record.Dir, Mode: 0o644, MTime: 11, CTime: 11, Inode: 5}, true},
		{"dir chmod", dir, fsutil.Stat{Type: record.Dir, Mode: 0o755, MTime: 10, CTime: 11, Inode: 5}, false},
		{"dir chown", dir, fsutil.Stat{Type: record.Dir, Mode: 0o644, MTime: 10, CTime: 11, Inode: 5, UID: 1}, false},
		{"dir replaced", dir, fsutil.Stat{Type: record.Dir, Mode: 0o644, MTime: 10, CTime: 10, Inode: 7}, false},
		{"dir became a file", dir, fsutil.Stat{Type: record.File, Mode: 0o644, MTime: 10, CTime: 10, Inode: 5}, false},
		{"file unchanged", file, file, true},
		{"file written", file, fsutil.Stat{Type: record.File, Size: 3, Mode: 0o644, MTime: 11, CTime: 11, Inode: 6}, false},
		{"file chmod", file, fsutil.Stat{Type: record.File, Size: 3, Mode: 0o644, MTime: 10, CTime: 11, Inode: 6}, false},
	}
	for _, c := range cases {
		if got := unmoved(c.now, c.pre); got != c.want {
			t.Errorf("%s: unmoved = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestScanBatchCommitsEarly: a scan's batch is committed at a thousand
// changes, at scanBatchBytes of hashed content, or when its first change
// has waited scanBatchAge, whichever comes first, so peers hear of the
// first large files of a tree before the rest is hashed.
func TestScanBatchCommitsEarly(t *testing.T) {
	add := func(b *scanBatch, n int, size int64) {
		for range n {
			if len(b.cands) == 0 {
				b.first = time.Now()
			}
			b.cands = append(b.cands, candidate{cur: record.Record{Size: size}})
			b.bytes += size
		}
	}
	var b scanBatch
	if b.full() {
		t.Fatal("an empty batch is full")
	}
	add(&b, scanBatchMax-1, 1)
	if b.full() {
		t.Fatal("full before scanBatchMax small changes")
	}
	add(&b, 1, 1)
	if !b.full() {
		t.Fatal("not full at scanBatchMax changes")
	}
	b = scanBatch{}
	add(&b, 1, scanBatchBytes-1)
	if b.full() {
		t.Fatal("full below scanBatchBytes")
	}
	add(&b, 1, 1)
	if !b.full() {
		t.Fatal("not full at scanBatchBytes")
	}
	b = scanBatch{}
	add(&b, 1, 10)
	b.first = time.Now().Add(-scanBatchAge)
	if !b.full() {
		t.Fatal("not full after scanBatchAge")
	}
}

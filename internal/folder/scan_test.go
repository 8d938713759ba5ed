package folder

import (
	"testing"
	"time"

	"tandem/internal/fsutil"
	"tandem/internal/record"
)

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

package folder

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/internal/blocks"
	"tandem/internal/config"
	"tandem/internal/fsutil"
	"tandem/internal/index"
	"tandem/internal/record"
	"tandem/internal/version"
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

// TestScanPathsInChunks: the watcher's paths are statted and their
// records read a chunk at a time (scanPaths). Over several chunks, with
// changed, deleted, re-moded and untouched files, and a new directory
// whose files come after it in the same list (scanning the directory
// records them before their own turn, with their records read earlier),
// every path ends up recorded as it is on disk, each change is recorded
// once, and an untouched file keeps its version and sequence number.
func TestScanPathsInChunks(t *testing.T) {
	const dirs, per = 3, 200
	content := func(i, gen int) []byte { return []byte(fmt.Sprintf("file %d generation %d", i, gen)) }
	name := func(i int) string { return fmt.Sprintf("d%d/f%03d", i%dirs, i) }
	f, root := unwatchedFolder(t, func(root string) {
		for d := range dirs {
			must(t, os.Mkdir(filepath.Join(root, fmt.Sprintf("d%d", d)), 0o755))
		}
		for i := range dirs * per {
			must(t, os.WriteFile(filepath.Join(root, name(i)), content(i, 0), 0o644))
		}
	})
	before := map[string]record.Record{}
	for i := range dirs * per {
		r, ok, err := f.get(name(i))
		if err != nil || !ok {
			t.Fatalf("%s not indexed by the first scan: %v", name(i), err)
		}
		before[name(i)] = r
	}
	seq0 := f.Status().Sequence
	var paths []string
	changes := 0
	for i := range dirs * per {
		p := filepath.Join(root, name(i))
		switch {
		case i%11 == 0:
			must(t, os.Remove(p))
		case i%7 == 0:
			must(t, os.WriteFile(p, content(i, 1), 0o644))
		case i%13 == 0:
			must(t, os.Chmod(p, 0o600))
		default:
			changes-- // untouched
		}
		changes++
		paths = append(paths, name(i), name(i)) // twice: the watcher's lists may repeat
	}
	must(t, os.Mkdir(filepath.Join(root, "n"), 0o755))
	paths = append(paths, "n")
	for i := range 300 {
		must(t, os.WriteFile(filepath.Join(root, fmt.Sprintf("n/g%03d", i)), content(1000+i, 0), 0o644))
		paths = append(paths, fmt.Sprintf("n/g%03d", i))
	}
	changes += 301
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
	if len(paths) < 3*scanChunk {
		t.Fatalf("only %d paths: not several chunks", len(paths))
	}
	if err := f.scanPaths(context.Background(), paths); err != nil {
		t.Fatal(err)
	}
	if got := f.Status().Sequence - seq0; got != uint64(changes) {
		t.Errorf("%d changes recorded, %d made", got, changes)
	}
	check := func(rel string, data []byte, mode uint32) record.Record {
		t.Helper()
		r, ok, err := f.get(rel)
		if err != nil || !ok || r.Deleted {
			t.Fatalf("%s: recorded %v (deleted %v, err %v), want a file", rel, ok, r.Deleted, err)
		}
		if len(r.Blocks) != 1 || r.Blocks[0].Hash != sha256.Sum256(data) || r.Mode != mode {
			t.Fatalf("%s: recorded mode %o blocks %d, want mode %o and the content %q", rel, r.Mode, len(r.Blocks), mode, data)
		}
		return r
	}
	for i := range dirs * per {
		p, old := name(i), before[name(i)]
		switch {
		case i%11 == 0:
			r, ok, err := f.get(p)
			if err != nil || !ok || !r.Deleted {
				t.Fatalf("%s deleted on disk, recorded %v deleted %v (err %v)", p, ok, r.Deleted, err)
			}
		case i%7 == 0:
			if r := check(p, content(i, 1), 0o644); r.Version.Compare(old.Version) == version.Equal {
				t.Fatalf("%s: new content recorded without a new version", p)
			}
		case i%13 == 0:
			if r := check(p, content(i, 0), 0o600); r.Version.Compare(old.Version) == version.Equal {
				t.Fatalf("%s: new mode recorded without a new version", p)
			}
		default:
			if r := check(p, content(i, 0), 0o644); r.Version.Compare(old.Version) != version.Equal || r.Seq != old.Seq {
				t.Fatalf("%s untouched, but recorded anew: version %v seq %d, was %v seq %d", p, r.Version, r.Seq, old.Version, old.Seq)
			}
		}
	}
	for i := range 300 {
		check(fmt.Sprintf("n/g%03d", i), content(1000+i, 0), 0o644)
	}
}

// unwatchedFolder returns a folder that is not running (no watcher, no
// puller: only what the test calls happens), on a root holding what
// write put there, indexed by a full scan.
func unwatchedFolder(t testing.TB, write func(root string)) (*Folder, string) {
	t.Helper()
	f, root := newTestFolder(t, newFakePeers(), config.Folder{}, func(_ *index.Folder, root string) { write(root) }, nil)
	must(t, f.checkRoot())
	var err error
	f.root, err = fsutil.Open(root)
	must(t, err)
	t.Cleanup(func() { f.root.Close() })
	must(t, f.fullScan(context.Background()))
	return f, root
}

// must fails the test on a non-nil error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

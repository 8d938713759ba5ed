package watcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

const waitTimeout = 5 * time.Second

// harness runs a Watcher and collects everything it reports.
type harness struct {
	t      *testing.T
	root   string
	w      *Watcher
	out    chan Batch
	cancel context.CancelFunc
	runErr chan error

	seen    map[string]int // path → number of batches it appeared in
	batches []Batch
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func start(t *testing.T, root string, opt Options) *harness {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quietLogger()
	}
	w, err := New(root, opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{
		t:      t,
		root:   root,
		w:      w,
		out:    make(chan Batch, 16),
		cancel: cancel,
		runErr: make(chan error, 1),
		seen:   make(map[string]int),
	}
	go func() { h.runErr <- w.Run(ctx, h.out) }()
	t.Cleanup(func() {
		cancel()
		w.Close()
		select {
		case <-h.runErr:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return")
		}
	})
	return h
}

func (h *harness) record(b Batch) {
	h.t.Helper()
	if !slices.IsSorted(b.Paths) {
		h.t.Errorf("batch paths not sorted: %q", b.Paths)
	}
	for i, p := range b.Paths {
		if p == "" || p == "." || p != filepath.ToSlash(filepath.Clean(p)) || strings.HasPrefix(p, "/") {
			h.t.Errorf("bad path %q in batch", p)
		}
		if i > 0 && b.Paths[i-1] == p {
			h.t.Errorf("duplicate path %q in batch", p)
		}
		h.seen[p]++
	}
	h.batches = append(h.batches, b)
}

// waitFor reads batches until all paths have been reported (in this or an
// earlier call), failing after a deadline.
func (h *harness) waitFor(paths ...string) {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		missing := []string(nil)
		for _, p := range paths {
			if h.seen[p] == 0 {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return
		}
		select {
		case b := <-h.out:
			h.record(b)
		case <-deadline.C:
			h.t.Fatalf("paths %q not reported within %v; got %v", missing, waitTimeout, h.seenList())
		}
	}
}

// waitRescan reads batches until one has Rescan set.
func (h *harness) waitRescan() {
	h.t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		select {
		case b := <-h.out:
			h.record(b)
			if b.Rescan {
				return
			}
		case <-deadline.C:
			h.t.Fatalf("no Rescan batch within %v", waitTimeout)
		}
	}
}

// sync writes a fresh sentinel file and waits for it: every event that
// happened before has then been reported too (events are ordered).
func (h *harness) sync(name string) {
	h.t.Helper()
	h.write(name, "sentinel")
	h.waitFor(name)
}

func (h *harness) seenList() []string {
	var s []string
	for p := range h.seen {
		s = append(s, p)
	}
	slices.Sort(s)
	return s
}

func (h *harness) path(rel string) string { return filepath.Join(h.root, filepath.FromSlash(rel)) }

func (h *harness) write(rel, data string) {
	h.t.Helper()
	if err := os.WriteFile(h.path(rel), []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) notSeen(paths ...string) {
	h.t.Helper()
	for _, p := range paths {
		if h.seen[p] > 0 {
			h.t.Errorf("path %q must not be reported; got %v", p, h.seenList())
		}
	}
}

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCreateFile(t *testing.T) {
	h := start(t, t.TempDir(), Options{})
	h.write("new.txt", "hello")
	h.waitFor("new.txt")
}

func TestWrite(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "sub", "f"), "old")
	h := start(t, root, Options{})
	h.write("sub/f", "new contents")
	h.waitFor("sub/f")
}

func TestChmod(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "f"), "x")
	h := start(t, root, Options{})
	if err := os.Chmod(h.path("f"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitFor("f")
}

func TestDelete(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "f"), "x")
	mustWrite(t, filepath.Join(root, "d", "g"), "x")
	h := start(t, root, Options{})
	if err := os.Remove(h.path("f")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(h.path("d")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("f", "d", "d/g")
}

func TestRenameFile(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "a"), "x")
	h := start(t, root, Options{})
	if err := os.Rename(h.path("a"), h.path("b")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a", "b")
}

func TestMkdirPThenCreate(t *testing.T) {
	h := start(t, t.TempDir(), Options{})
	// Repeat: the race between mkdir and adding the watch is timing
	// dependent.
	for i := range 20 {
		dir := fmt.Sprintf("a%d/b/c", i)
		if err := os.MkdirAll(h.path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		h.write(dir+"/f", "x")
		h.waitFor(dir + "/f")
	}
	// Later changes deep inside are seen too.
	h.write("a0/b/c/g", "x")
	h.waitFor("a0/b/c/g")
}

func TestMoveTreeIn(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "x", "top.txt"), "1")
	mustWrite(t, filepath.Join(outside, "x", "y", "z", "deep.txt"), "2")
	h := start(t, root, Options{})
	if err := os.Rename(filepath.Join(outside, "x"), h.path("x")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("x", "x/top.txt", "x/y", "x/y/z", "x/y/z/deep.txt")

	h.write("x/y/z/later.txt", "3")
	h.write("x/y/later2.txt", "3")
	h.waitFor("x/y/z/later.txt", "x/y/later2.txt")
}

func TestMoveTreeOut(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mustWrite(t, filepath.Join(root, "x", "y", "f"), "1")
	h := start(t, root, Options{})
	if err := os.Rename(h.path("x"), filepath.Join(outside, "x")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("x")
	// Changes in the moved-away tree are not reported.
	mustWrite(t, filepath.Join(outside, "x", "y", "g"), "1")
	h.sync("sentinel")
	h.notSeen("x/y/g")
}

func TestRenameDir(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "d", "sub", "f"), "x")
	h := start(t, root, Options{})
	if err := os.Rename(h.path("d"), h.path("e")); err != nil {
		t.Fatal(err)
	}
	h.write("e/sub/g", "x")
	h.write("e/h", "x")
	h.waitFor("d", "e", "e/sub/g", "e/h")

	// After the rename has been processed, changes are reported under
	// the new name only.
	h.sync("sentinel1")
	h.write("e/sub/g2", "x")
	h.sync("sentinel2")
	h.waitFor("e/sub/g2")
	h.notSeen("d/sub/g2")

	// A new directory with the old name works.
	if err := os.Mkdir(h.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write("d/new", "x")
	h.waitFor("d/new")
}

func TestRemoveAndRecreateDir(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "d", "sub", "f"), "x")
	h := start(t, root, Options{})
	for i := range 10 {
		if err := os.RemoveAll(h.path("d")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(h.path("d/sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("d/sub/f%d", i)
		h.write(name, "x")
		h.waitFor(name)
	}
}

func TestRenameExchangeDirs(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "a", "fa"), "x")
	mustWrite(t, filepath.Join(root, "b", "fb"), "x")
	h := start(t, root, Options{})
	err := unix.Renameat2(unix.AT_FDCWD, h.path("a"), unix.AT_FDCWD, h.path("b"), unix.RENAME_EXCHANGE)
	if err != nil {
		t.Skipf("renameat2 RENAME_EXCHANGE: %v", err)
	}
	h.waitFor("a", "b")
	h.sync("sentinel1")
	h.write("a/new", "x")
	h.write("b/new", "x")
	h.sync("sentinel2")
	h.waitFor("a/new", "b/new")
}

func TestTandemDirIgnored(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, ".tandem", "db"), "x")
	h := start(t, root, Options{})
	h.write(".tandem/db", "y")
	h.write(".tandem/tmp", "y")
	if err := os.MkdirAll(h.path(".tandem/sub/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write(".tandem/sub/deeper/f", "y")
	if err := os.Chmod(h.path(".tandem"), 0o700); err != nil {
		t.Fatal(err)
	}
	h.sync("sentinel")
	for p := range h.seen {
		if p == ".tandem" || strings.HasPrefix(p, ".tandem/") {
			t.Errorf("reported %q", p)
		}
	}
}

func TestTandemDirCreatedLater(t *testing.T) {
	h := start(t, t.TempDir(), Options{})
	if err := os.MkdirAll(h.path(".tandem/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write(".tandem/x/f", "y")
	h.write(".tandem/g", "y")
	h.sync("sentinel")
	for p := range h.seen {
		if p == ".tandem" || strings.HasPrefix(p, ".tandem/") {
			t.Errorf("reported %q", p)
		}
	}
}

func TestIgnore(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "skip", "old"), "x")
	ignore := func(rel string) bool {
		return strings.HasSuffix(rel, ".tmp") || rel == "skip" || rel == "skip2"
	}
	h := start(t, root, Options{Ignore: ignore})
	h.write("a.tmp", "x")
	h.write("skip/old", "y")
	h.write("skip/new", "y")
	if err := os.MkdirAll(h.path("skip2/inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	h.write("skip2/inner/f", "x")
	h.write("kept", "x")
	h.sync("sentinel")
	h.waitFor("kept")
	h.notSeen("a.tmp", "skip", "skip/old", "skip/new", "skip2", "skip2/inner", "skip2/inner/f")
}

func TestCoalescing(t *testing.T) {
	h := start(t, t.TempDir(), Options{})
	f, err := os.Create(h.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := f.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h.sync("sentinel")
	h.waitFor("f")
	if n := h.seen["f"]; n > 20 {
		t.Errorf("100 writes reported in %d batches; want far fewer", n)
	}
	t.Logf("100 writes → %d batch(es) containing the path, %d batches total", h.seen["f"], len(h.batches))
}

func TestMaxDelay(t *testing.T) {
	// A continuous stream of events, never quiet for Delay: batches must
	// still come out every MaxDelay.
	h := start(t, t.TempDir(), Options{Delay: 200 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	f, err := os.Create(h.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for got := 0; got < 2; {
		select {
		case <-tick.C:
			if _, err := f.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		case b := <-h.out:
			h.record(b)
			got++
		case <-deadline.C:
			t.Fatalf("no batches during a continuous stream of events")
		}
	}
	if h.seen["f"] == 0 {
		t.Errorf("f not reported")
	}
}

func TestSlowConsumerNoDrop(t *testing.T) {
	root := t.TempDir()
	w, err := New(root, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	out := make(chan Batch) // unbuffered and not read for a while
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, out) }()

	h := &harness{t: t, root: root, out: out, seen: make(map[string]int)}
	var want []string
	for i := range 50 {
		name := fmt.Sprintf("f%02d", i)
		h.write(name, "x")
		want = append(want, name)
	}
	// Receive one batch, then keep producing while not reading.
	b := <-out
	h.record(b)
	for i := range 50 {
		name := fmt.Sprintf("g%02d", i)
		h.write(name, "x")
		want = append(want, name)
	}
	h.sync("sentinel")
	h.waitFor(want...)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
}

func TestOverflowRescan(t *testing.T) {
	h := start(t, t.TempDir(), Options{})
	// Simulate the fsnotify reader reporting a kernel queue overflow.
	select {
	case h.w.fsw.Errors <- fsnotify.ErrEventOverflow:
	case <-time.After(waitTimeout):
		t.Fatal("could not inject error")
	}
	h.waitRescan()
	// Still working afterwards.
	h.write("f", "x")
	h.waitFor("f")
}

func TestNewErrors(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "missing"), Options{}); err == nil {
		t.Error("New on a missing directory succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	mustWrite(t, f, "x")
	if _, err := New(f, Options{}); err == nil {
		t.Error("New on a file succeeded")
	}
}

func TestCloseStopsRun(t *testing.T) {
	w, err := New(t.TempDir(), Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background(), make(chan Batch)) }()
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after Close")
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCancelStopsRun(t *testing.T) {
	root := t.TempDir()
	w, err := New(root, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := make(chan Batch) // never read: Run is blocked on delivery
	go func() { done <- w.Run(ctx, out) }()
	mustWrite(t, filepath.Join(root, "f"), "x")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

// BenchmarkLatency measures the time from the end of a small file write to
// the arrival of the batch reporting it (ns/op; includes the write itself).
func BenchmarkLatency(b *testing.B) {
	root := b.TempDir()
	w, err := New(root, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	out := make(chan Batch, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, out)

	var lat []time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("f%d", i)
		i++
		if err := os.WriteFile(filepath.Join(root, name), []byte("hello"), 0o644); err != nil {
			b.Fatal(err)
		}
		written := time.Now()
	wait:
		for {
			select {
			case batch := <-out:
				if _, ok := slices.BinarySearch(batch.Paths, name); ok {
					lat = append(lat, time.Since(written))
					break wait
				}
			case <-time.After(waitTimeout):
				b.Fatalf("%s not reported", name)
			}
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}

package watcher

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDirectoryMovesDoNotStallWatcher replays the directory operations
// of a fault-suite round after which a node stopped seeing changes:
// fsnotify, handling the IN_MOVE_SELF of a moved directory whose watch
// was already dropped, sent an error while holding the lock that Add and
// Remove take, and the goroutine that should have read the error was
// blocked in Remove. Before errors were read by their own goroutine this
// hung within a few iterations.
func TestDirectoryMovesDoNotStallWatcher(t *testing.T) {
	for i := 0; i < 30; i++ {
		root := t.TempDir()
		out := t.TempDir()
		mustWrite(t, filepath.Join(root, "d1", "d3", "f4.txt"), "x")
		mustWrite(t, filepath.Join(root, "d1", "f3.txt"), "x")
		mustWrite(t, filepath.Join(root, "f5.txt", "d1", "x"), "x")
		os.Remove(filepath.Join(root, "f5.txt", "d1", "x"))
		mustWrite(t, filepath.Join(root, "d2", "d1", "f"), "x")
		mustWrite(t, filepath.Join(root, "d3", "d1", "f2"), "x")
		h := start(t, root, Options{})
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.Rename(h.path("d2/d1"), filepath.Join(out, "g1")))
		must(os.Remove(h.path("d3/d1/f2")))
		must(os.Rename(h.path("d1/d3"), h.path("d1/d2")))
		h.write("d1/d2/f3.txt", "new")
		must(os.Rename(h.path("f5.txt/d1"), h.path("d1/d0")))
		must(os.Remove(h.path("d1/d0")))
		h.write("d1/f3.txt", "overwritten")
		h.waitFor("d1/d2/f3.txt", "d1/f3.txt", "d1/d0", "f5.txt/d1")
		h.sync("s1")
		h.write("d1/late", "x")
		h.write("d1/d2/late", "x")
		h.waitFor("d1/late", "d1/d2/late")
	}
}

// Package watcher watches one folder tree recursively with fsnotify
// (inotify on Linux) and reports which relative paths changed.
//
// fsnotify is not recursive, so the watcher keeps one watch per directory:
// every directory under the root is watched when the Watcher is created,
// and directories that are created in or moved into the tree later are
// watched (with all their subdirectories) as soon as their event is seen.
// Because files may appear in a new directory before its watch is in place,
// every path found while walking a new directory is reported as changed.
//
// Changed paths are coalesced into batches: a batch is emitted when no new
// event arrived for Options.Delay, or at the latest Options.MaxDelay after
// the first event of the batch. When events may have been lost (inotify
// queue overflow, a watch that could not be added) a batch with Rescan set
// is emitted and the consumer must do a full scan.
//
// Nothing under <root>/.tandem/ is ever watched or reported.
package watcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// DefaultDelay is the default quiet period of a batch.
	DefaultDelay = 5 * time.Millisecond
	// DefaultMaxDelay is the default upper bound on how long a batch is held.
	DefaultMaxDelay = 100 * time.Millisecond

	// metaDir is the folder's private metadata directory, never watched.
	metaDir = ".tandem"

	// eventBuffer is the size of the fsnotify Events channel. It lets the
	// fsnotify reader keep draining the kernel queue while Run is busy
	// walking a new directory tree.
	eventBuffer = 4096
)

// Options configures a Watcher.
type Options struct {
	Delay    time.Duration         // quiet period: a batch is emitted when no new event arrived for Delay (default 5ms)
	MaxDelay time.Duration         // a batch is emitted at most MaxDelay after its first event even under a continuous stream (default 100ms)
	Ignore   func(rel string) bool // optional extra filter on relative slash paths
	Logger   *slog.Logger          // optional, default slog.Default()
}

// Batch is a set of changed paths.
type Batch struct {
	Paths  []string // relative, slash-separated, cleaned paths (never "" or "."), deduplicated, sorted
	Rescan bool     // true when events may have been lost (inotify queue overflow, a watch that could not be added): the consumer must do a full scan
}

// fileKey identifies a directory inode. inotify watches are per inode, so
// the watcher must notice when a watched path now names another inode (or
// a watched inode now lives at another path).
type fileKey struct {
	dev, ino uint64
}

// dirState is a watched directory.
type dirState struct {
	key      fileKey
	children map[string]struct{} // base names of watched subdirectories
}

// Watcher watches one folder tree. Create it with New, then call Run once.
type Watcher struct {
	root   string // absolute, cleaned, symlinks resolved
	prefix string // root with a trailing separator
	delay  time.Duration
	maxDel time.Duration
	ignore func(string) bool
	log    *slog.Logger
	fsw    *fsnotify.Watcher

	// The fields below are only used by New and then by the goroutine
	// running Run.
	dirs    map[string]*dirState // rel path ("." for root) → watched directory
	byKey   map[fileKey]string   // inode → rel path it is watched under
	pending map[string]struct{}  // changed paths not yet handed over
	rescan  bool                 // pending batch needs Rescan
	touched bool                 // something was added to the pending batch

	// errs receives fsnotify's errors from a goroutine that does nothing
	// else: fsnotify sends some errors while holding the lock that Add and
	// Remove take, so the goroutine calling those must never be the one
	// its error send waits for. errLost is set when errs was full.
	errs    chan error
	errLost atomic.Bool

	running   atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New starts watching root recursively. It returns an error if root cannot
// be watched.
func New(root string, opt Options) (*Watcher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watcher: %s is not a directory", abs)
	}

	if opt.Delay <= 0 {
		opt.Delay = DefaultDelay
	}
	if opt.MaxDelay <= 0 {
		opt.MaxDelay = DefaultMaxDelay
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}

	fsw, err := fsnotify.NewBufferedWatcher(eventBuffer)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	prefix := abs
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	w := &Watcher{
		root:    abs,
		prefix:  prefix,
		delay:   opt.Delay,
		maxDel:  opt.MaxDelay,
		ignore:  opt.Ignore,
		log:     opt.Logger,
		fsw:     fsw,
		dirs:    make(map[string]*dirState),
		byKey:   make(map[fileKey]string),
		pending: make(map[string]struct{}),
		done:    make(chan struct{}),
		errs:    make(chan error, 64),
	}
	go w.forwardErrors()
	if err := fsw.Add(abs); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("watcher: watching %s: %w", abs, err)
	}
	w.track(".", keyOf(fi))
	w.walk(".", false, nil)
	return w, nil
}

// Close stops the watcher; a running Run returns nil.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.closeErr = w.fsw.Close()
	})
	return w.closeErr
}

// Run delivers batches to out until ctx is done or Close is called; it
// returns nil on ctx cancel/Close. Run must not be called more than once.
//
// If out is not ready when a batch is due, Run keeps reading events and
// merges them into the batch waiting to be delivered; nothing is dropped.
func (w *Watcher) Run(ctx context.Context, out chan<- Batch) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("watcher: Run called twice")
	}

	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	maxT := time.NewTimer(time.Hour)
	maxT.Stop()
	defer maxT.Stop()

	var (
		timing   bool         // the pending batch has armed timers
		ready    Batch        // batch due for delivery
		hasReady bool         // ready is valid
		sendCh   chan<- Batch // out while hasReady, else nil
		due      bool         // a timer fired: move pending into ready
	)
	// A rescan requested while New walked the tree.
	w.touched = w.rescan || len(w.pending) > 0

	for {
		if due {
			due = false
			timing = false
			quiet.Stop()
			maxT.Stop()
			if len(w.pending) > 0 || w.rescan {
				if hasReady {
					// out was not ready: merge into the waiting batch.
					for _, p := range ready.Paths {
						w.pending[p] = struct{}{}
					}
					w.rescan = w.rescan || ready.Rescan
				}
				ready = Batch{Paths: sortedKeys(w.pending), Rescan: w.rescan}
				hasReady = true
				clear(w.pending)
				w.rescan = false
			}
		}
		if w.touched {
			w.touched = false
			if !timing {
				timing = true
				maxT.Reset(w.maxDel)
			}
			quiet.Reset(w.delay)
		}
		sendCh = nil
		if hasReady {
			sendCh = out
		}

		select {
		case <-ctx.Done():
			return nil
		case <-w.done:
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil
			}
			w.handleEvent(ev)
		case err, ok := <-w.errs:
			if !ok {
				return nil
			}
			w.handleError(err)
			if w.errLost.Swap(false) {
				w.handleError(errors.New("more errors were dropped"))
			}
		case <-quiet.C:
			due = true
		case <-maxT.C:
			due = true
		case sendCh <- ready:
			ready = Batch{}
			hasReady = false
		}
	}
}

// forwardErrors moves fsnotify's errors to w.errs without ever blocking
// fsnotify (which may hold its lock while sending one).
func (w *Watcher) forwardErrors() {
	defer close(w.errs)
	for err := range w.fsw.Errors {
		select {
		case w.errs <- err:
		default:
			w.errLost.Store(true)
		}
	}
}

func sortedKeys(m map[string]struct{}) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// rel converts an absolute path below root to a cleaned slash path
// relative to root ("." for the root itself).
func (w *Watcher) rel(name string) (string, bool) {
	if name == w.root {
		return ".", true
	}
	if !strings.HasPrefix(name, w.prefix) {
		return "", false
	}
	r := strings.TrimLeft(filepath.ToSlash(name[len(w.prefix):]), "/")
	if r == "" {
		return ".", true
	}
	return path.Clean(r), true
}

// abs converts a rel path to an absolute one.
func (w *Watcher) abs(rel string) string {
	if rel == "." {
		return w.root
	}
	return filepath.Join(w.root, filepath.FromSlash(rel))
}

// ignored reports whether rel must be neither watched nor reported.
func (w *Watcher) ignored(rel string) bool {
	if rel == metaDir || strings.HasPrefix(rel, metaDir+"/") {
		return true
	}
	return w.ignore != nil && w.ignore(rel)
}

// mark adds rel to the pending batch.
func (w *Watcher) mark(rel string) {
	w.pending[rel] = struct{}{}
	w.touched = true
}

// requestRescan makes the pending batch a Rescan batch.
func (w *Watcher) requestRescan() {
	w.rescan = true
	w.touched = true
}

func (w *Watcher) handleEvent(ev fsnotify.Event) {
	rel, ok := w.rel(ev.Name)
	if !ok {
		return
	}
	if rel == "." {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.log.Error("watcher: the watched folder root was removed or moved away; no further changes will be seen",
				"root", w.root)
			w.requestRescan()
		}
		return
	}
	if w.ignored(rel) {
		return
	}
	w.mark(rel)

	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// A watched directory went away: drop its watch and those of its
		// subdirectories (after a rename they would keep reporting under
		// the old name), so a later directory with this name works.
		w.untrack(rel)
		if ev.Has(fsnotify.Rename) {
			// Something else may already be at this name again (rename
			// over it, RENAME_EXCHANGE, quick re-creation).
			w.checkDir(rel)
		}
		return
	}
	if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Chmod) {
		w.checkDir(rel)
	}
}

func (w *Watcher) handleError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Warn("watcher: inotify event queue overflowed, events were lost; requesting a full rescan (consider raising fs.inotify.max_queued_events)",
			"root", w.root)
		// Directories created during the overflow are not watched yet.
		w.resync()
	} else {
		w.log.Error("watcher: inotify error; requesting a full rescan", "root", w.root, "err", err)
	}
	w.requestRescan()
}

// checkDir starts watching rel (and everything below) if it is a
// directory that is not watched yet, reporting every path found inside.
func (w *Watcher) checkDir(rel string) {
	fi, err := os.Lstat(w.abs(rel))
	if err != nil || !fi.IsDir() {
		return
	}
	if d, ok := w.dirs[rel]; ok && d.key == keyOf(fi) {
		return // already watched (and listed after the watch was added)
	}
	w.walk(rel, true, nil)
}

// resync walks the whole tree, adding watches for unwatched directories
// and dropping bookkeeping for directories that no longer exist.
func (w *Watcher) resync() {
	seen := make(map[string]struct{}, len(w.dirs))
	w.walk(".", false, seen)
	for rel := range w.dirs {
		if _, ok := seen[rel]; !ok {
			w.untrack(rel)
		}
	}
}

// walk adds watches for rel and all directories below it. With report set,
// every path found is marked changed. If seen is not nil, the rel paths of
// all directories watched are recorded in it.
func (w *Watcher) walk(start string, report bool, seen map[string]struct{}) {
	var (
		failures  int
		firstErr  error
		firstPath string
	)
	fail := func(p string, err error) {
		failures++
		if firstErr == nil {
			firstErr, firstPath = err, p
		}
	}

	// Without reporting, only directories matter: they are watched.
	walkFn := walkDirs
	if report {
		walkFn = filepath.WalkDir
	}
	_ = walkFn(w.abs(start), func(p string, d fs.DirEntry, err error) error {
		rel, ok := w.rel(p)
		if !ok {
			return filepath.SkipDir
		}
		if rel != "." && w.ignored(rel) {
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err != nil {
			if vanished(err) {
				if d != nil && d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			// Usually a directory that cannot be read.
			fail(p, err)
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if report && rel != "." {
			w.mark(rel)
		}
		if !d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if !vanished(err) {
				fail(p, err)
			}
			return filepath.SkipDir
		}
		key := keyOf(fi)
		if cur, ok := w.dirs[rel]; ok && cur.key == key {
			// Already watched under this name.
			if seen != nil {
				seen[rel] = struct{}{}
			}
			return nil
		}
		// A watch for another inode under this name, or for this inode
		// under another name: inotify has one watch per inode and
		// fsnotify would keep reporting the old name, so drop them first.
		w.untrack(rel)
		if old, ok := w.byKey[key]; ok {
			w.untrack(old)
		}
		if err := w.fsw.Add(p); err != nil {
			switch {
			case errors.Is(err, fsnotify.ErrClosed):
				return filepath.SkipAll
			case vanished(err):
				return filepath.SkipDir
			default:
				fail(p, err)
				return filepath.SkipDir
			}
		}
		w.track(rel, key)
		if seen != nil {
			seen[rel] = struct{}{}
		}
		return nil
	})

	if failures > 0 {
		attrs := []any{"dir", firstPath, "err", firstErr, "failed_dirs", failures}
		if errors.Is(firstErr, syscall.ENOSPC) {
			attrs = append(attrs, "hint", "raise the fs.inotify.max_user_watches sysctl")
		}
		w.log.Error("watcher: cannot watch directory, changes there will be missed; requesting a full rescan", attrs...)
		w.requestRescan()
	}
}

// vanished reports whether err means the path disappeared meanwhile.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// track records that rel is watched.
func (w *Watcher) track(rel string, key fileKey) {
	w.dirs[rel] = &dirState{key: key}
	w.byKey[key] = rel
	if rel == "." {
		return
	}
	if parent, ok := w.dirs[path.Dir(rel)]; ok {
		if parent.children == nil {
			parent.children = make(map[string]struct{})
		}
		parent.children[path.Base(rel)] = struct{}{}
	}
}

// untrack drops the watches of rel and all directories below it.
func (w *Watcher) untrack(rel string) {
	d, ok := w.dirs[rel]
	if !ok {
		return
	}
	for child := range d.children {
		w.untrack(path.Join(rel, child))
	}
	// Errors are expected: the kernel drops watches of deleted directories
	// and fsnotify those of directories renamed away.
	_ = w.fsw.Remove(w.abs(rel))
	delete(w.dirs, rel)
	if w.byKey[d.key] == rel {
		delete(w.byKey, d.key)
	}
	if rel != "." {
		if parent, ok := w.dirs[path.Dir(rel)]; ok {
			delete(parent.children, path.Base(rel))
		}
	}
}

func keyOf(fi fs.FileInfo) fileKey {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}
	}
	return fileKey{}
}

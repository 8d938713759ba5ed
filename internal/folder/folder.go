// Package folder runs one synced folder on one node: it scans the disk
// into the index, takes in what peers announce, decides with package
// reconcile, and applies remote versions atomically (temporary file,
// fsync, rename). It guards against a missing disk and never applies a
// remote change over a local edit it has not yet seen.
package folder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/config"
	"tandem/internal/fsutil"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
	"tandem/internal/watcher"
)

// Peers is what a folder needs from the network.
type Peers interface {
	// Request fetches one block from a connected peer.
	Request(ctx context.Context, peer identity.ID, req *protocol.Request) ([]byte, error)
	// Connected reports whether peer is connected now.
	Connected(peer identity.ID) bool
	// Hint passes a hint to the connected peers sharing its folder,
	// without waiting.
	Hint(h *protocol.Hint)
}

// Options configure a Folder.
type Options struct {
	Config config.Folder
	Me     identity.ID
	Index  *index.Folder
	Peers  Peers
	Log    *slog.Logger
	// Changed is called after the local index got new sequence numbers.
	Changed func()
	// Now returns the current time; tests may replace it.
	Now func() time.Time
}

// Folder is one synced folder.
type Folder struct {
	opt       Options
	cfg       config.Folder
	me        identity.ID
	meShort   uint64
	idx       *index.Folder
	log       *slog.Logger
	withOwner bool
	tmpSetgid bool   // .tandem/tmp passes its group on to new files
	tmpACL    bool   // .tandem/tmp has a default ACL (or it is unknown): modes are set with chmod
	tmpPath   string // .tandem/tmp, joined once (tmpDir)
	// requests bounds the block requests in flight (maxRequests).
	requests chan struct{}

	// mu serialises every transition between disk and index: a scan's
	// commit and an apply's check-rename-commit never interleave.
	mu   sync.Mutex
	root *fsutil.Root

	wakePull    chan struct{}
	scanReq     chan scanRequest
	fullPending atomic.Bool // a full scan was asked while the queue was full

	// testHook, if set (tests only), runs at every crash point of the
	// pipeline with the point's name (see hit).
	testHook atomic.Pointer[func(point string)]

	// inflight holds the paths a batch is placing, from before the first
	// rename to after the commit, and whether the watcher reported one
	// of them meanwhile: such a scan is postponed until the commit, when
	// the index knows what was placed (it would otherwise hash our own
	// new file as an unknown one).
	flMu     sync.Mutex
	inflight map[string]bool

	// prefetch holds blocks of large files fetched ahead of their
	// announcement (see HandleHint).
	prefetch prefetches

	// lastDot is the last event counter this node issued (see eventAt).
	lastDot atomic.Uint64

	stMu       sync.Mutex
	state      string
	lastErr    string
	itemErrs   map[string]string
	ready      bool // initial scan done, marker present
	lastScan   time.Time
	retryAfter map[string]retry
	applying   map[string]struct{} // files being fetched or placed (applier)
	stats      Stats
}

// Stats are cumulative counters for metrics.
type Stats struct {
	FilesApplied   uint64
	BytesFetched   uint64
	BytesReused    uint64
	Conflicts      uint64
	ScansCompleted uint64
	// Read and hashed by scans (files whose stat changed); a rescan of an
	// unchanged tree adds nothing here.
	FilesHashed uint64
	BytesHashed uint64
}

// retry is the backoff state of a failing item.
type retry struct {
	at       time.Time
	attempts int
}

// Backoff bounds for failing items.
const (
	retryMin = 2 * time.Second
	retryMax = time.Minute
)

type scanRequest struct {
	paths []string
	full  bool
}

// New creates a folder; Run starts it.
func New(opt Options) *Folder {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Changed == nil {
		opt.Changed = func() {}
	}
	return &Folder{
		opt:        opt,
		cfg:        opt.Config,
		tmpPath:    filepath.Join(opt.Config.Path, record.MarkerDir, "tmp"),
		me:         opt.Me,
		meShort:    opt.Me.Short64(),
		idx:        opt.Index,
		log:        opt.Log.With("folder", opt.Config.ID),
		withOwner:  os.Geteuid() == 0,
		wakePull:   make(chan struct{}, 1),
		requests:   make(chan struct{}, maxRequests),
		scanReq:    make(chan scanRequest, 64),
		state:      "starting",
		itemErrs:   map[string]string{},
		retryAfter: map[string]retry{},
		applying:   map[string]struct{}{},
	}
}

// newEvent returns r as a new local event replacing a version with
// context prev (record.NewEvent with this folder's counter, eventAt).
func (f *Folder) newEvent(r record.Record, prev version.Vector) record.Record {
	return r.NewEvent(prev, f.meShort, f.eventAt(prev))
}

// eventAt returns the counter of a new local event on a path whose
// version holds prev: above prev's counter of this node, and above every
// counter issued before in this folder, so that an event's dot (node,
// counter) names it across all paths, not only on its own. A conflict
// copy's records carry dots of its original's path next to dots of its
// own (Replacing), and two events on different paths with one dot would
// be taken for each other: a copy deleted as replaced by a change that
// never saw it. Counters are wall-clock nanoseconds, so they keep
// increasing across restarts without being stored.
func (f *Folder) eventAt(prev version.Vector) uint64 {
	floor := prev.Get(f.meShort) + 1
	for {
		last := f.lastDot.Load()
		n := max(last+1, uint64(f.opt.Now().UnixNano()), floor)
		if f.lastDot.CompareAndSwap(last, n) {
			return n
		}
	}
}

// ID returns the folder ID.
func (f *Folder) ID() string { return f.cfg.ID }

// Index returns the folder's index.
func (f *Folder) Index() *index.Folder { return f.idx }

func (f *Folder) markerPath() string { return filepath.Join(f.cfg.Path, record.MarkerDir) }

// ErrMarkerMissing means the folder root or its .tandem marker is missing
// while the index says the folder had content.
var ErrMarkerMissing = errors.New("folder marker missing")

// checkRoot verifies the root and its marker. A folder that never held
// anything gets its marker created; one that did must still have it.
func (f *Folder) checkRoot() error {
	fi, err := os.Stat(f.cfg.Path)
	if err != nil {
		return fmt.Errorf("folder %q: root %s is not accessible: %w; is the disk mounted?", f.cfg.ID, f.cfg.Path, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("folder %q: root %s is not a directory", f.cfg.ID, f.cfg.Path)
	}
	if mfi, err := os.Lstat(f.markerPath()); err == nil && mfi.IsDir() {
		return nil
	}
	var live int
	if err := f.idx.View(func(tx *index.Tx) error {
		live = tx.Live()
		return nil
	}); err != nil {
		return err
	}
	if live > 0 {
		return fmt.Errorf("folder %q: marker %s is missing but the index holds %d entries; refusing to sync (a disk that is not mounted would look like everything was deleted). If the folder really is meant to be empty now, create the marker with `mkdir %s` and tandem will propagate the deletions: %w",
			f.cfg.ID, f.markerPath(), live, f.markerPath(), ErrMarkerMissing)
	}
	if err := os.MkdirAll(filepath.Join(f.markerPath(), "tmp"), 0o700); err != nil {
		return fmt.Errorf("folder %q: create marker: %w", f.cfg.ID, err)
	}
	return nil
}

func (f *Folder) setState(state string, err error) {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	f.state = state
	if err != nil {
		f.lastErr = err.Error()
	} else if state != "error" {
		f.lastErr = ""
	}
}

// clearError returns the folder from "error" to "idle" (a scan succeeded).
func (f *Folder) clearError() {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	if f.state == "error" {
		f.state, f.lastErr = "idle", ""
	}
}

func (f *Folder) setItemErr(path string, err error) {
	f.stMu.Lock()
	defer f.stMu.Unlock()
	if err == nil {
		delete(f.itemErrs, path)
		delete(f.retryAfter, path)
		return
	}
	f.itemErrs[path] = err.Error()
}

// Status is a snapshot for `tandem status`.
type Status struct {
	ID        string            `json:"id"`
	Path      string            `json:"path"`
	State     string            `json:"state"`
	Error     string            `json:"error,omitempty"`
	Files     int               `json:"files"`
	Needed    int               `json:"needed"`
	Sequence  uint64            `json:"sequence"`
	ItemError map[string]string `json:"item_errors,omitempty"`
	LastScan  time.Time         `json:"last_scan,omitzero"`
	Stats     Stats             `json:"stats"`
}

// Status returns the folder's current status.
func (f *Folder) Status() Status {
	s := Status{ID: f.cfg.ID, Path: f.cfg.Path}
	_ = f.idx.View(func(tx *index.Tx) error {
		s.Files = tx.Live()
		s.Needed = tx.NeedCount()
		s.Sequence = tx.MaxSeq()
		return nil
	})
	f.stMu.Lock()
	defer f.stMu.Unlock()
	s.State, s.Error, s.LastScan, s.Stats = f.state, f.lastErr, f.lastScan, f.stats
	if s.State == "idle" && s.Needed > 0 {
		s.State = "syncing"
	}
	if len(f.itemErrs) > 0 {
		s.ItemError = map[string]string{}
		for k, v := range f.itemErrs {
			s.ItemError[k] = v
		}
	}
	return s
}

// Run runs the folder until ctx ends. It retries start-up (missing disk,
// missing marker) every few seconds, reporting the error in its status.
func (f *Folder) Run(ctx context.Context) error {
	for {
		err := f.checkRoot()
		if err == nil {
			break
		}
		f.setState("error", err)
		f.log.Error("folder stopped", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	root, err := fsutil.Open(f.cfg.Path)
	if err != nil {
		f.setState("error", err)
		return fmt.Errorf("folder %q: %w", f.cfg.ID, err)
	}
	f.root = root
	_ = os.MkdirAll(f.tmpDir(), 0o700)
	if fi, err := os.Stat(f.tmpDir()); err != nil || fi.Mode()&os.ModeSetgid != 0 {
		f.tmpSetgid = true // unknown or inherited group: always chown
	}
	f.tmpACL = hasDefaultACL(f.tmpDir())
	defer root.Close()
	if err := f.recover(); err != nil {
		f.log.Warn("recovering interrupted transfers", "err", err)
	}
	// The watcher starts before the initial scan: a change made while the
	// scan runs is then either seen by the scan or reported by the
	// watcher (its scan request waits in the queue until the initial
	// scan is done), never missed.
	var wg sync.WaitGroup
	defer wg.Wait()
	w, werr := watcher.New(f.cfg.Path, watcher.Options{Logger: f.log})
	if werr != nil {
		f.log.Error("cannot watch folder; relying on periodic rescans until it can", "err", werr)
	}
	wg.Go(func() { f.watchLoop(ctx, w) })
	f.setState("scanning", nil)
	if err := f.fullScan(ctx); err != nil {
		f.setState("error", err)
		f.log.Error("initial scan failed", "err", err)
	} else {
		f.setState("idle", nil)
	}
	f.stMu.Lock()
	f.ready = true
	f.stMu.Unlock()
	f.Wake()

	wg.Go(func() { f.pullLoop(ctx) })
	wg.Go(func() { f.trashLoop(ctx) })
	wg.Go(func() { f.prefetchLoop(ctx) })
	f.scanLoop(ctx)
	return nil
}

// Wake asks the puller to look at the work list.
func (f *Folder) Wake() {
	select {
	case f.wakePull <- struct{}{}:
	default:
	}
}

// requestScan queues a scan; full scans are coalesced by the loop.
func (f *Folder) requestScan(paths []string, full bool) {
	select {
	case f.scanReq <- scanRequest{paths: paths, full: full}:
	default:
		// The queue is full: a full scan covers everything that was asked.
		f.fullPending.Store(true)
		select {
		case f.scanReq <- scanRequest{full: true}:
		default:
		}
	}
}

func (f *Folder) scanLoop(ctx context.Context) {
	rescan := time.NewTicker(f.cfg.Rescan)
	defer rescan.Stop()
	for {
		var req scanRequest
		select {
		case <-ctx.Done():
			return
		case <-rescan.C:
			req.full = true
		case req = <-f.scanReq:
		}
		// Drain what queued up meanwhile into one pass.
		req.full = req.full || f.fullPending.Swap(false)
	drain:
		for {
			select {
			case r := <-f.scanReq:
				req.full = req.full || r.full
				req.paths = append(req.paths, r.paths...)
			default:
				break drain
			}
		}
		var err error
		if req.full {
			err = f.fullScan(ctx)
		} else {
			err = f.scanPaths(ctx, req.paths)
		}
		if err != nil {
			f.setState("error", err)
			f.log.Error("scan failed", "err", err)
			if errors.Is(err, ErrMarkerMissing) {
				continue
			}
		} else {
			f.clearError()
		}
	}
}

// trashLoop expires old trash at start-up and then hourly.
func (f *Folder) trashLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		f.cleanTrash()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

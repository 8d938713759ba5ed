package folder

import (
	"context"
	"time"

	"tandem/internal/watcher"
)

// watchLoop feeds filesystem events to the scanner, starting with w if it
// is not nil. If the watcher fails it is restarted and a full scan covers
// whatever it missed.
func (f *Folder) watchLoop(ctx context.Context, w *watcher.Watcher) {
	for ctx.Err() == nil {
		var err error
		if w == nil {
			w, err = watcher.New(f.cfg.Path, watcher.Options{Logger: f.log})
		}
		if err != nil {
			f.log.Error("cannot watch folder; relying on periodic rescans until it can", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Second):
			}
			continue
		}
		out := make(chan watcher.Batch, 64)
		errc := make(chan error, 1)
		wctx, cancel := context.WithCancel(ctx)
		go func() { errc <- w.Run(wctx, out) }()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case b := <-out:
				if b.Rescan {
					f.requestScan(nil, true)
				}
				if len(b.Paths) > 0 {
					f.requestScan(b.Paths, false)
				}
			case err := <-errc:
				if err != nil {
					f.log.Error("watcher stopped; restarting it", "err", err)
				}
				break loop
			}
		}
		cancel()
		w.Close()
		w = nil
		if ctx.Err() == nil {
			f.requestScan(nil, true)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

package main

import (
	"fmt"
	"os/exec"
	"time"

	"tandem/internal/cluster"
	"tandem/internal/folder"
)

// rescan indexes a tree of small files on one node, stops it, and times
// the start-up scan of the unchanged tree on restart (process start to the
// end of the first full scan, as the daemon reports it) against
// `find DIR -printf '%s %T@\n'`, both with a warm cache. It also checks
// that the rescan hashed nothing.
func rescan(t *tb, full bool) []row {
	n := 20000
	if full {
		n = 200000
	}
	c := newCluster(t, 1, "rescan")
	nd := c.Nodes[0]
	populate(t, nd.Dir, n)
	nd.Start()
	scanned(t, nd, time.Time{}, 30*time.Minute)
	nd.Stop()

	var findBest time.Duration
	for i := range 3 {
		quiesce()
		start := time.Now()
		out, err := exec.Command("find", nd.Dir, "-printf", `%s %T@\n`).Output()
		d := time.Since(start)
		if err != nil {
			t.Fatalf("find: %v", err)
		}
		_ = out
		if i == 0 || d < findBest {
			findBest = d
		}
	}

	var best time.Duration
	var hashed uint64
	var rss int64
	for i := range 2 {
		quiesce()
		start := time.Now()
		nd.Start()
		st := scanned(t, nd, start, 30*time.Minute)
		d := st.LastScan.Sub(start)
		hashed += st.Stats.BytesHashed
		if i == 0 || d < best {
			best = d
		}
		rss = max(rss, nd.PeakRSS())
		nd.Stop()
	}
	note := "no file rehashed"
	if hashed > 0 {
		note = fmt.Sprintf("REHASHED %d bytes", hashed)
	}
	return []row{{name: fmt.Sprintf("rescan %d unchanged files", n), tandem: secs(best), rsync: secs(findBest), ratio: ratio(best, findBest),
		rss: fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), note: "rsync column: find -printf '%s %T@'; target ratio <= 2; " + note}}
}

// scanned waits until nd has completed a full scan that ended after
// since, and returns its folder status.
func scanned(t *tb, nd *cluster.Node, since time.Time, timeout time.Duration) (st folder.Status) {
	cluster.WaitFor(t, timeout, "full scan on "+nd.Name, func() (bool, string) {
		f, _, err := folderStatus(nd)
		if err != nil {
			return false, err.Error()
		}
		st = f
		return f.Stats.ScansCompleted > 0 && f.LastScan.After(since), fmt.Sprintf("%d files indexed", f.Files)
	})
	return st
}

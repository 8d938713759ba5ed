package main

import (
	"fmt"
	"time"
)

// memory indexes a tree of tiny files on one node and reports the peak
// RSS (VmHWM) of the process over the first scan and a restart with a
// rescan. The index lives on disk (bbolt); its pages that the kernel
// keeps mapped count in RSS too.
func memory(t *tb, full bool) []row {
	n := 100000
	if full {
		n = 1000000
	}
	c := newCluster(t, 1, "memory")
	nd := c.Nodes[0]
	start := time.Now()
	populateWide(t, nd.Dir, n)
	made := time.Since(start)
	start = time.Now()
	nd.Start()
	st := scanned(t, nd, time.Time{}, 2*time.Hour)
	first := time.Since(start)
	rss1 := nd.PeakRSS()
	if st.Files < n {
		t.Fatalf("index holds %d live entries, want at least %d", st.Files, n)
	}
	nd.Stop()
	start = time.Now()
	nd.Start()
	scanned(t, nd, start, 2*time.Hour)
	rss2 := nd.PeakRSS()
	nd.Stop()
	return []row{
		{name: fmt.Sprintf("memory, %d files, first scan", n), tandem: secs(first), rss: fmt.Sprintf("%.0f MiB", float64(rss1)/(1<<20)),
			note: fmt.Sprintf("target < 300 MiB; creating the files took %s", secs(made))},
		{name: fmt.Sprintf("memory, %d files, restart", n), rss: fmt.Sprintf("%.0f MiB", float64(rss2)/(1<<20)), note: "target < 300 MiB"},
	}
}

// populateWide is populate with 1000 directories, so that a million
// files make directories of a thousand entries.
func populateWide(t *tb, dir string, n int) {
	populateIn(t, dir, n, 1000)
}

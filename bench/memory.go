package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"tandem/internal/cluster"
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
	stop := sampleRSS(nd)
	st := scanned(t, nd, time.Time{}, 2*time.Hour)
	first := time.Since(start)
	rss1 := nd.PeakRSS()
	anon1, file1 := stop()
	if st.Files < n {
		t.Fatalf("index holds %d live entries, want at least %d", st.Files, n)
	}
	nd.Stop()
	start = time.Now()
	nd.Start()
	stop = sampleRSS(nd)
	scanned(t, nd, start, 2*time.Hour)
	rss2 := nd.PeakRSS()
	anon2, file2 := stop()
	nd.Stop()
	return []row{
		{name: fmt.Sprintf("memory, %d files, first scan", n), tandem: secs(first), rss: fmt.Sprintf("%.0f MiB", float64(rss1)/(1<<20)),
			note: fmt.Sprintf("target < 300 MiB; largest sampled: anon %s, file-backed %s; creating the files took %s", mib(anon1), mib(file1), secs(made))},
		{name: fmt.Sprintf("memory, %d files, restart", n), rss: fmt.Sprintf("%.0f MiB", float64(rss2)/(1<<20)),
			note: fmt.Sprintf("target < 300 MiB; largest sampled: anon %s, file-backed %s", mib(anon2), mib(file2))},
	}
}

// populateWide is populate with 1000 directories, so that a million
// files make directories of a thousand entries.
func populateWide(t *tb, dir string, n int) {
	populateIn(t, dir, n, 1000)
}

// sampleRSS samples nd's anonymous and file-backed resident memory every
// 20 ms until the returned function is called, which returns the largest
// of each seen.
func sampleRSS(nd *cluster.Node) func() (anon, file int64) {
	done := make(chan struct{})
	var maxAnon, maxFile int64
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
			}
			if nd.Cmd == nil {
				continue
			}
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", nd.Cmd.Process.Pid))
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				var kb int64
				if rest, ok := strings.CutPrefix(l, "RssAnon:"); ok {
					fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
					maxAnon = max(maxAnon, kb<<10)
				} else if rest, ok := strings.CutPrefix(l, "RssFile:"); ok {
					fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
					maxFile = max(maxFile, kb<<10)
				}
			}
		}
	}()
	return func() (int64, int64) {
		close(done)
		<-finished
		return maxAnon, maxFile
	}
}

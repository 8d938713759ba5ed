package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"tandem/internal/cluster"
	"tandem/internal/daemon"
)

// makeSmallFiles writes n files of 1-16 KiB spread over 200 directories.
func makeSmallFiles(t *tb, dir string, n int, seed uint64) int64 {
	r := rand.New(rand.NewPCG(seed, 1))
	var total int64
	buf := make([]byte, 16<<10)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("dir%03d", i%200))
		if i < 200 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatalf("%v", err)
			}
		}
		size := 1<<10 + r.IntN(15<<10)
		for j := range size {
			buf[j] = byte(r.Uint32() % 64) // compressible-ish like text
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file%05d.dat", i)), buf[:size], 0o644); err != nil {
			t.Fatalf("%v", err)
		}
		total += int64(size)
	}
	return total
}

// waitSynced waits until nd's index holds at least entries live entries
// and nothing is pending, asking the daemon (cheap, unlike walking the tree
// every few milliseconds, which would compete with tandem for the CPU),
// then checks the tree itself for files regular files. It returns when the
// daemon first reported the entries (the tree check is not timed). A node
// of c that exits ends the wait with its log.
func waitSynced(t *tb, c *cluster.Cluster, nd *cluster.Node, entries, files int, timeout time.Duration) time.Time {
	var at time.Time
	cluster.WaitFor(t, timeout, "entries in "+nd.Name+"'s index", func() (bool, string) {
		failIfExited(t, c)
		var st daemon.Status
		if err := daemon.QueryStatus(context.Background(), nd.Home, &st); err != nil || len(st.Folders) == 0 {
			return false, fmt.Sprint(err)
		}
		f := st.Folders[0]
		at = time.Now()
		return f.Files >= entries && f.Needed == 0, fmt.Sprintf("%d of %d, %d needed", f.Files, entries, f.Needed)
	})
	waitCount(t, nd.Dir, files, time.Minute)
	return at
}

// waitCount waits until dir holds want regular files (ignoring .tandem).
func waitCount(t *tb, dir string, want int, timeout time.Duration) {
	cluster.WaitFor(t, timeout, "files on the receiver", func() (bool, string) {
		n := 0
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == ".tandem" {
				return filepath.SkipDir
			}
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n >= want, fmt.Sprintf("%d of %d", n, want)
	})
}

func smallFiles(t *tb, full bool) []row {
	n := 2000
	if full {
		n = 20000
	}
	var rows []row
	// rsync -a of the same tree to an rsync daemon on loopback.
	src := filepath.Join(t.TempDir(), "src")
	bytes := makeSmallFiles(t, src, n, 1)
	rd := startRsyncd(t)
	quiesceFresh(t, src)
	rsyncTime, rsyncWire := rd.push(t, src, "-a")
	rsyncCPU, rsyncSteal := rd.cpu, rd.steal
	// For reference: rsync making every file durable, as tandem does.
	rd.fresh()
	quiesceFresh(t, src)
	rsyncFsync, _ := rd.push(t, src, "-a", "--fsync")

	// tandem, files present on a when both nodes start.
	c := newCluster(t, 2, "smallfiles-start")
	onWire := c.CountWire()
	a, b := c.Nodes[0], c.Nodes[1]
	if err := os.Remove(a.Dir); err != nil {
		t.Fatalf("%v", err)
	}
	if err := os.Rename(src, a.Dir); err != nil {
		t.Fatalf("%v", err)
	}
	quiesceFresh(t, a.Dir)
	start, stolen := time.Now(), sampleCPU()
	c.Start()
	initial := waitSynced(t, c, b, n+200, n, 30*time.Minute).Sub(start)
	steal := stolenSince(stolen)
	cpu := clusterCPU(t, c) // both nodes, from their start
	c.Converged(5 * time.Minute)
	wire, rss := kib(onWire()), rssOf(c)
	stopCluster(c)
	rows = append(rows, row{name: fmt.Sprintf("%d small files, present at start", n), tandem: secs(initial), rsync: secs(rsyncTime),
		ratio: ratio(initial, rsyncTime), wire: wire, rss: rss,
		note: fmt.Sprintf("%.0f MiB; CPU tandem %s, rsync %s, ratio %s; rsync on the wire %s; rsync -a --fsync %s, ratio %s; %s", float64(bytes)/(1<<20), cpuSecs(cpu), cpuSecs(rsyncCPU), ratio(cpu, rsyncCPU), kib(rsyncWire), secs(rsyncFsync), ratio(initial, rsyncFsync), stealNote(steal, rsyncSteal))})

	// tandem, files created on a while both run (a fresh cluster).
	c2 := newCluster(t, 2, "smallfiles-live")
	onWire2 := c2.CountWire()
	c2.Start()
	c2.Connected(time.Minute)
	quiesceFresh(t)
	cpu0 := clusterCPU(t, c2)
	start, stolen = time.Now(), sampleCPU()
	makeSmallFiles(t, c2.Nodes[0].Dir, n, 2)
	live := waitSynced(t, c2, c2.Nodes[1], n+200, n, 30*time.Minute).Sub(start)
	steal = stolenSince(stolen)
	cpuLive := clusterCPU(t, c2) - cpu0
	c2.Converged(5 * time.Minute)
	// rsync of the same amount, created then pushed.
	src2 := filepath.Join(t.TempDir(), "src2")
	rd.fresh()
	quiesceFresh(t)
	start, stolen = time.Now(), sampleCPU()
	makeSmallFiles(t, src2, n, 2)
	rd.push(t, src2, "-a")
	rsyncLive := time.Since(start)
	rsyncSteal = stolenSince(stolen)
	rows = append(rows, row{name: fmt.Sprintf("%d small files, created while running", n), tandem: secs(live), rsync: secs(rsyncLive),
		ratio: ratio(live, rsyncLive), wire: kib(onWire2()), rss: rssOf(c2),
		note: fmt.Sprintf("both include creating the files; CPU (without creating them) tandem %s, rsync %s, ratio %s; %s", cpuSecs(cpuLive), cpuSecs(rd.cpu), ratio(cpuLive, rd.cpu), stealNote(steal, rsyncSteal))})
	return rows
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ratio(a, b time.Duration) string { return fmt.Sprintf("%.2f", float64(a)/float64(b)) }

// rssOf reports the peak RSS of the cluster's nodes.
func rssOf(c *cluster.Cluster) string {
	var peak int64
	for _, nd := range c.Nodes {
		peak = max(peak, nd.PeakRSS())
	}
	return fmt.Sprintf("%.0f MiB", float64(peak)/(1<<20))
}

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// large measures throughput: one large file, then a tree of mixed sizes,
// each moved into a's folder while both nodes run, against
// `rsync -a --whole-file` of the same tree to an rsync daemon. Data is
// incompressible. tandem's time includes hashing on a (it announces a file
// once it has read it whole) and fsync on b; rsync neither hashes ahead
// nor fsyncs. The note gives rsync --fsync's time as well: making the data
// durable is what the disk's write speed limits.
func large(t *tb, full bool) []row {
	one, mixed := int64(256<<20), int64(256<<20)
	if full {
		one, mixed = 2<<30, 1<<30
	}
	rows := []row{
		throughput(t, fmt.Sprintf("large file %s", mib(one)), "large-one", func(dir string) {
			writeRandom(t, filepath.Join(dir, "big.bin"), one, 1)
		}),
		throughput(t, fmt.Sprintf("mixed tree %s", mib(mixed)), "large-mixed", func(dir string) {
			makeMixed(t, dir, mixed)
		}),
	}
	return rows
}

// makeMixed writes at least total bytes (each class overshoots by its last
// file; the row's note gives the real total): a quarter each in files of 4-64
// MiB, 256 KiB-4 MiB, 16-256 KiB and 1-16 KiB.
func makeMixed(t *tb, dir string, total int64) {
	r := rand.New(rand.NewPCG(uint64(total), 3))
	classes := [][2]int64{{4 << 20, 64 << 20}, {256 << 10, 4 << 20}, {16 << 10, 256 << 10}, {1 << 10, 16 << 10}}
	i := 0
	for ci, cl := range classes {
		var sum int64
		for sum < total/4 {
			size := cl[0] + r.Int64N(cl[1]-cl[0])
			writeRandom(t, filepath.Join(dir, fmt.Sprintf("c%d/d%02d/f%05d", ci, i%50, i)), size, uint64(i))
			sum += size
			i++
		}
	}
}

func throughput(t *tb, label, prof string, make func(dir string)) row {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	make(src)
	files, dirs, bytes := treeSize(src)

	rd := startRsyncd(t)
	quiesceFresh(t, src)
	rsyncTime, rsyncWire := rd.push(t, src, "-a", "--whole-file")
	rsyncCPU, rsyncSteal := rd.cpu, rd.steal
	rd.fresh()
	// For reference: rsync making every file durable as tandem does
	// before it shows a file at its name (the target compares with the
	// plain run above).
	quiesceFresh(t, src)
	rsyncFsync, _ := rd.push(t, src, "-a", "--whole-file", "--fsync")
	// rsync's copies stay until the bench run ends (removeTrees).

	c := newCluster(t, 2, prof)
	onWire := c.CountWire()
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	c.Connected(time.Minute)
	w0 := onWire()
	quiesceFresh(t, src)
	cpu0 := clusterCPU(t, c)
	start, stolen := time.Now(), sampleCPU()
	moveIn(t, src, a.Dir)
	d := waitSynced(t, c, b, files+dirs, files, 30*time.Minute).Sub(start)
	steal := stolenSince(stolen)
	cpu := clusterCPU(t, c) - cpu0
	waitInSync(t, c, time.Minute)
	sent := onWire() - w0
	c.Converged(10 * time.Minute) // every byte compared, untimed
	rss := rssOf(c)
	stopCluster(c)
	return row{name: label, tandem: fmt.Sprintf("%s (%s)", secs(d), mbps(bytes, d)), rsync: fmt.Sprintf("%s (%s)", secs(rsyncTime), mbps(bytes, rsyncTime)),
		ratio: fmt.Sprintf("%.2f", rsyncTime.Seconds()/d.Seconds()), wire: kib(sent), rss: rss,
		note: fmt.Sprintf("%d files, %s in all; ratio = tandem throughput / rsync --whole-file throughput (target >= 0.70); CPU tandem %s, rsync %s, ratio %s; rsync on the wire %s; rsync --fsync %s, ratio %.2f; %s", files, mib(bytes), cpuSecs(cpu), cpuSecs(rsyncCPU), ratio(cpu, rsyncCPU), kib(rsyncWire), secs(rsyncFsync), rsyncFsync.Seconds()/d.Seconds(), stealNote(steal, rsyncSteal))}
}

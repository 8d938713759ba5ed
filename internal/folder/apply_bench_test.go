package folder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/config"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// BenchmarkApplySmallFiles measures the receiving side of many small files
// without the network and without the sender: a folder takes in a peer's
// index of 10 000 files of 1-16 KiB in 100 directories (the peer is a
// fake that answers from memory), then fetches, places and commits them,
// as a node does after a peer's scan. Besides the time per file it
// reports the process's CPU time per file (user and system, from
// getrusage) and the whole machine's (from /proc/stat: this process, the
// kernel's writeback threads that syncfs waits for, and anything else
// running, so run it on an otherwise idle machine). The testing package removes the trees of one run of the benchmark
// before the next (with -benchtime Nx, N > 1, a run with N = 1 comes
// first), and on ext4 without a journal files created soon after many
// deletions cost more (see the README); each run therefore starts with
// the clean page cache dropped (as root), which takes most of that cost
// away. For the most comparable numbers, run it once (1x) per fresh
// filesystem:
//
//	TMPDIR=/mnt/fresh go test -run '^$' -bench ApplySmallFiles -benchtime 1x ./internal/folder/
func BenchmarkApplySmallFiles(b *testing.B) {
	const n, dirs = 10000, 100
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	m := newCPUMeter(b)
	for i := range b.N {
		peers := newFakePeers()
		f, _ := startFolder(b, peers)
		r := rand.New(rand.NewPCG(uint64(i), 1))
		var v version.Vector
		v = v.Update(by, 0)
		recs := make([]record.Record, 0, n+dirs)
		for d := range dirs {
			recs = append(recs, record.Record{Path: fmt.Sprintf("d%03d", d), Type: record.Dir, Mode: 0o755, MTime: 1e18, Version: v, ModifiedBy: by, Dot: 1})
		}
		buf := make([]byte, 16<<10)
		for k := range n {
			recs = append(recs, remoteFile(peers, fmt.Sprintf("d%03d/f%05d", k%dirs, k), string(smallContent(r, buf)), 0o644, by, 1))
		}
		for k := range recs {
			recs[k].Seq = uint64(k + 1)
		}
		dropCleanCaches()
		m.start()
		if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: recs, Last: uint64(len(recs))}); err != nil {
			b.Fatal(err)
		}
		m.stopWhen(n, "applied", f, func(s Status) bool { return s.Needed == 0 && s.Files >= len(recs) })
	}
	m.report()
}

// dropCleanCaches writes out dirty pages and drops the clean page cache
// (as root; elsewhere it only syncs). On ext4 without a journal, creating
// a file steps over every inode freed in the last minute whose inode
// table block is cached (see the README), and an earlier run of the
// benchmark freed tens of thousands: with the cache dropped, those blocks
// are read back only where needed, and creating files costs what it
// costs on a filesystem without that history.
func dropCleanCaches() {
	syscall.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
}

// smallContent fills buf with a random file's content of 1-16 KiB and
// returns it.
func smallContent(r *rand.Rand, buf []byte) []byte {
	size := 1<<10 + r.IntN(15<<10)
	for j := range size {
		buf[j] = byte(r.Uint32())
	}
	return buf[:size]
}

// cpuMeter measures a benchmark's timed phases: their CPU time, the
// process's and the whole machine's, per file.
type cpuMeter struct {
	b                *testing.B
	cpu, machine     time.Duration
	files            int
	cpuAt, machineAt time.Duration
}

// newCPUMeter stops b's timer; each phase runs from start to stopWhen.
func newCPUMeter(b *testing.B) *cpuMeter {
	b.StopTimer()
	return &cpuMeter{b: b}
}

func (m *cpuMeter) start() {
	m.cpuAt, m.machineAt = cpuTime(m.b), machineCPU()
	m.b.StartTimer()
}

// stopWhen waits (for at most a minute) until f's status satisfies done,
// then ends the phase, which handled files files.
func (m *cpuMeter) stopWhen(files int, what string, f *Folder, done func(Status) bool) {
	for deadline := time.Now().Add(time.Minute); !done(f.Status()); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			m.b.Fatalf("not %s within a minute: %+v", what, f.Status())
		}
	}
	m.b.StopTimer()
	m.cpu += cpuTime(m.b) - m.cpuAt
	m.machine += machineCPU() - m.machineAt
	m.files += files
}

// report adds the CPU times per file to the benchmark's results.
func (m *cpuMeter) report() {
	m.b.StartTimer()
	m.b.ReportMetric(float64(m.cpu.Microseconds())/float64(m.files), "cpu-µs/file")
	if m.machine > 0 {
		m.b.ReportMetric(float64(m.machine.Microseconds())/float64(m.files), "machine-cpu-µs/file")
	}
}

// machineCPU returns the CPU time all processors have spent busy (user,
// nice, system, interrupts) since boot, from /proc/stat; zero where it
// cannot be read.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0
		}
		ticks += v
	}
	// USER_HZ is 100 on Linux for every architecture Go supports.
	return time.Duration(ticks) * 10 * time.Millisecond
}

// cpuTime returns the CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScanNewFiles measures the sending side's part of the same
// transfer: a folder starts on 10 000 files of 1-16 KiB in 100
// directories that its index does not know, and its first scan reads,
// hashes and commits them all. It reports the time per file and the
// CPU time per file of the process and of the whole machine, from the
// folder's start to the scan's end (the files are written before).
// Run it like BenchmarkApplySmallFiles, once per fresh filesystem.
func BenchmarkScanNewFiles(b *testing.B) {
	const n, dirs = 10000, 100
	m := newCPUMeter(b)
	for i := range b.N {
		write := func(_ *index.Folder, root string) {
			writeSmallFiles(b, root, n, dirs, uint64(i))
			m.start()
		}
		f, _ := startFolderHooked(b, newFakePeers(), config.Folder{}, write, nil)
		m.stopWhen(n, "scanned", f, func(s Status) bool { return s.Stats.ScansCompleted > 0 && s.Files >= n+dirs })
	}
	m.report()
}

// BenchmarkScanUnchangedPaths measures looking at paths the watcher
// reported that still match the index, as a node does for every file a
// peer's version was just placed at (the event of its own rename) or a
// file touched without a change: 10 000 files of 1-16 KiB in 100
// directories, indexed by the folder's first scan, then scanPaths of all
// of them, which must record nothing. It reports the process's CPU time
// per path.
func BenchmarkScanUnchangedPaths(b *testing.B) {
	const n, dirs = 10000, 100
	var paths []string
	f, _ := unwatchedFolder(b, func(root string) { paths = writeSmallFiles(b, root, n, dirs, 1) })
	st := f.Status()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for range b.N {
		if err := f.scanPaths(context.Background(), slices.Clone(paths)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/1e3/float64(b.N*n), "cpu-µs/path")
	if now := f.Status(); now.Sequence != st.Sequence || now.Stats.FilesHashed != st.Stats.FilesHashed {
		b.Fatalf("unchanged files recorded or hashed again: sequence %d → %d, files hashed %d → %d", st.Sequence, now.Sequence, st.Stats.FilesHashed, now.Stats.FilesHashed)
	}
}

// writeSmallFiles writes n files of 1-16 KiB (smallContent, from seed)
// into dirs new directories of root and returns their paths.
func writeSmallFiles(tb testing.TB, root string, n, dirs int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 2))
	buf := make([]byte, 16<<10)
	for d := range dirs {
		must(tb, os.Mkdir(filepath.Join(root, fmt.Sprintf("d%03d", d)), 0o755))
	}
	paths := make([]string, 0, n)
	for k := range n {
		p := fmt.Sprintf("d%03d/f%05d", k%dirs, k)
		must(tb, os.WriteFile(filepath.Join(root, p), smallContent(r, buf), 0o644))
		paths = append(paths, p)
	}
	return paths
}

package folder

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
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
// deletions cost more (see the README): for comparable numbers, run it
// once (1x) per fresh filesystem:
//
//	TMPDIR=/mnt/fresh go test -run '^$' -bench ApplySmallFiles -benchtime 1x ./internal/folder/
func BenchmarkApplySmallFiles(b *testing.B) {
	const n, dirs = 10000, 100
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	var cpu, machine time.Duration
	files := 0
	b.StopTimer()
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
			size := 1<<10 + r.IntN(15<<10)
			for j := range size {
				buf[j] = byte(r.Uint32())
			}
			recs = append(recs, remoteFile(peers, fmt.Sprintf("d%03d/f%05d", k%dirs, k), string(buf[:size]), 0o644, by, 1))
		}
		for k := range recs {
			recs[k].Seq = uint64(k + 1)
		}
		before, machineBefore := cpuTime(b), machineCPU()
		b.StartTimer()
		if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: recs, Last: uint64(len(recs))}); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			if s := f.Status(); s.Needed == 0 && s.Files >= len(recs) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("not applied within a minute: %+v", f.Status())
			}
		}
		b.StopTimer()
		cpu += cpuTime(b) - before
		machine += machineCPU() - machineBefore
		files += n
	}
	b.StartTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(files), "cpu-µs/file")
	if machine > 0 {
		b.ReportMetric(float64(machine.Microseconds())/float64(files), "machine-cpu-µs/file")
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
	var cpu, machine time.Duration
	files := 0
	b.StopTimer()
	for i := range b.N {
		var before, machineBefore time.Duration
		write := func(_ *index.Folder, root string) {
			r := rand.New(rand.NewPCG(uint64(i), 2))
			buf := make([]byte, 16<<10)
			for d := range dirs {
				if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			for k := range n {
				size := 1<<10 + r.IntN(15<<10)
				for j := range size {
					buf[j] = byte(r.Uint32())
				}
				if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("d%03d/f%05d", k%dirs, k)), buf[:size], 0o644); err != nil {
					b.Fatal(err)
				}
			}
			before, machineBefore = cpuTime(b), machineCPU()
			b.StartTimer()
		}
		f, _ := startFolderHooked(b, newFakePeers(), config.Folder{}, write, nil)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			if s := f.Status(); s.Stats.ScansCompleted > 0 && s.Files >= n+dirs {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("not scanned within a minute: %+v", f.Status())
			}
		}
		b.StopTimer()
		cpu += cpuTime(b) - before
		machine += machineCPU() - machineBefore
		files += n
	}
	b.StartTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(files), "cpu-µs/file")
	if machine > 0 {
		b.ReportMetric(float64(machine.Microseconds())/float64(files), "machine-cpu-µs/file")
	}
}

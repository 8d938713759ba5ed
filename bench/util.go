package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tandem/internal/cluster"
	"tandem/internal/daemon"
	"tandem/internal/folder"
)

// folderStatus asks nd's daemon for the status of its folder, in process
// (cheap enough to poll every few milliseconds).
func folderStatus(nd *cluster.Node) (folder.Status, *daemon.Status, error) {
	var st daemon.Status
	if err := daemon.QueryStatus(context.Background(), nd.Home, &st); err != nil {
		return folder.Status{}, nil, err
	}
	if len(st.Folders) == 0 {
		return folder.Status{}, nil, fmt.Errorf("%s has no folder", nd.Name)
	}
	return st.Folders[0], &st, nil
}

// failIfExited ends the case with a node's log if a node of c has
// exited by itself: waiting on would only run into a long timeout.
func failIfExited(t *tb, c *cluster.Cluster) {
	if nd := c.Exited(); nd != nil {
		t.Fatalf("node %s exited by itself; its log:\n%s", nd.Name, nd.Log.String())
	}
}

// waitInSync waits until every node of c reports everything applied and
// sent.
func waitInSync(t *tb, c *cluster.Cluster, timeout time.Duration) {
	cluster.WaitFor(t, timeout, "nodes in sync", func() (bool, string) {
		failIfExited(t, c)
		for _, nd := range c.Nodes {
			_, st, err := folderStatus(nd)
			if err != nil {
				return false, err.Error()
			}
			if !st.InSync() {
				return false, nd.Name + " not in sync"
			}
		}
		return true, ""
	})
}

// waitContent waits until path on nd has exactly the content hashed as
// want and nd has nothing pending. It only hashes when size and mtime
// already match src, so polling stays cheap.
func waitContent(t *tb, nd *cluster.Node, rel string, src os.FileInfo, want [32]byte, timeout time.Duration) {
	cluster.WaitFor(t, timeout, rel+" on "+nd.Name, func() (bool, string) {
		fi, err := os.Stat(nd.Path(rel))
		if err != nil {
			return false, err.Error()
		}
		if fi.Size() != src.Size() || !fi.ModTime().Equal(src.ModTime()) {
			return false, fmt.Sprintf("%d bytes", fi.Size())
		}
		if h, err := hashFile(nd.Path(rel)); err != nil || h != want {
			return false, "other content"
		}
		return true, ""
	})
}

func hashFile(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

// writeRandom writes size incompressible bytes to path.
func writeRandom(t *tb, path string, size int64, seed uint64) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, 7))
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		for i := 0; i < int(n); i += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && i+k < int(n); k++ {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatalf("%v", err)
		}
		size -= n
	}
}

// moveIn renames every entry of src into dst (same filesystem), so that
// a whole tree appears in a folder at once.
func moveIn(t *tb, src, dst string) {
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, e := range es {
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// treeSize counts the regular files, directories and bytes under dir.
func treeSize(dir string) (files, dirs int, bytes int64) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		if d.IsDir() {
			dirs++
		} else if d.Type().IsRegular() {
			files++
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func kib(n uint64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
}

func mbps(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/1e6/d.Seconds())
}

// quiesce writes out every dirty page before a timed phase starts, so
// that no run pays for the writeback of what an earlier one wrote.
func quiesce() { syscall.Sync() }

// quiesceFresh is quiesce for a phase that creates many files: it also
// drops the clean page cache (as root; elsewhere it is quiesce alone)
// and then reads the trees in warm back in, so a source tree is cached as
// it was. The point is the cached inode tables: on ext4 without a
// journal (this machine's root filesystem) the kernel skips, for every
// inode it allocates, each free inode deleted in the last minute whose
// table block is still cached (recently_deleted), one lookup at a time.
// After the bench has just removed a tree of 20 000 files, creating files
// then costs up to ten times the CPU it costs a minute later; whichever
// tool ran right after a removal paid for it. Dropping the cache helps
// less than it seems (files created after a removal, sync and drop
// still cost about twice the system time, presumably as creating files
// reads the inode tables back), so the bench removes nothing until the
// run ends (removeTrees).
func quiesceFresh(t *tb, warm ...string) {
	quiesce()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0); err != nil {
		if !dropWarned {
			dropWarned = true
			fmt.Fprintf(os.Stderr, "bench: cannot drop the page cache (%v); file creation times may include the kernel's skipping of recently deleted inodes\n", err)
		}
		return
	}
	for _, dir := range warm {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			_, err = hashFile(p) // reads it whole, in pieces
			return err
		})
		if err != nil {
			t.Fatalf("warm %s: %v", dir, err)
		}
	}
}

var dropWarned bool

// progress prints, every 100 ms until the case ends, each running node's
// indexed and needed counts, its index's sequence number (how many local
// changes it recorded: more than its files where versions were recorded
// twice) and what its folder has hashed, fetched and applied, to see
// which side of a transfer is the bottleneck.
func progress(t *tb, c *cluster.Cluster, label string) {
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		last := sampleCPU()
		ran := false // some node was running at a tick
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			now := sampleCPU()
			pct, stolen := now.since(last)
			last = now
			line := fmt.Sprintf("%s %6.2fs cpu %3.0f%% (stolen %2.0f%%)", label, time.Since(start).Seconds(), pct, stolen)
			running := 0
			for _, nd := range c.Nodes {
				if !nd.Running() {
					continue
				}
				running++
				var st daemon.Status
				if err := daemon.QueryStatus(context.Background(), nd.Home, &st); err != nil || len(st.Folders) == 0 {
					continue
				}
				f := st.Folders[0]
				line += fmt.Sprintf("  %s: files %d seq %d needed %d hashed %d fetched %s applied %d", nd.Name, f.Files, f.Sequence, f.Needed, f.Stats.FilesHashed, mib(int64(f.Stats.BytesFetched)), f.Stats.FilesApplied)
			}
			if running == 0 && ran {
				return // the cluster was stopped (stopCluster)
			}
			ran = ran || running > 0
			fmt.Fprintln(os.Stderr, line)
		}
	}()
}

// stopCluster stops c's nodes once its measurements are taken, so that
// they do not run (and keep their memory) through the case's later
// phases. With -cpuprofile, this is when their profiles are written.
func stopCluster(c *cluster.Cluster) {
	for _, nd := range c.Nodes {
		nd.Stop()
	}
}

// cpuSample is the machine's busy, stolen and total CPU time from
// /proc/stat, in clock ticks (iowait counts as idle; steal, the time the
// hypervisor gave this virtual machine's CPUs to others, as busy, and
// also on its own).
type cpuSample struct{ busy, steal, all uint64 }

func sampleCPU() (s cpuSample) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		s.all += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
		if i == 7 {
			s.steal += n
		}
	}
	return s
}

// since returns the shares of the CPU time between from and s that were
// busy and that were stolen, in per cent. On a virtual machine the
// stolen share varies from run to run and takes the CPU both tools
// need, so a row reports it for each tool's timed phase.
func (s cpuSample) since(from cpuSample) (busy, stolen float64) {
	if s.all <= from.all {
		return 0, 0
	}
	all := float64(s.all - from.all)
	return 100 * float64(s.busy-from.busy) / all, 100 * float64(s.steal-from.steal) / all
}

// stolenSince is the share of the CPU time since from that was stolen.
func stolenSince(from cpuSample) float64 {
	_, stolen := sampleCPU().since(from)
	return stolen
}

// stealNote is a row's note on the steal during tandem's and rsync's
// phases.
func stealNote(tandem, rsync float64) string {
	return fmt.Sprintf("CPU stolen by the hypervisor: %.0f%% during tandem, %.0f%% during rsync", tandem, rsync)
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"tandem/internal/cluster"
)

// rsyncd is an rsync daemon on loopback with one writable module. rsync
// reaches it through the same byte-counting proxy that tandem's nodes
// talk through (cluster.CountWire): both transfers take the same path,
// the proxy's copying costs both the same CPU, and both are counted on the
// wire the same way.
type rsyncd struct {
	addr  string // the proxy's
	dest  string
	run   int // pushes go to dest/run<N>/ (fresh starts a new one)
	cmd   *exec.Cmd
	proxy *cluster.Proxy
	// cpu is the CPU time of the last push: the client's and that of the
	// daemon's processes for it.
	cpu time.Duration
	// steal is the share of the machine's CPU time stolen during the last
	// push, in per cent.
	steal float64
}

func startRsyncd(t *tb) *rsyncd {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatalf("rsync is not installed (apt-get install rsync): %v", err)
	}
	dir := t.TempDir()
	r := &rsyncd{dest: filepath.Join(dir, "dest")}
	if err := os.MkdirAll(r.dest, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	addr := cluster.FreeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	conf := filepath.Join(dir, "rsyncd.conf")
	body := fmt.Sprintf("use chroot = no\nuid = root\ngid = root\npid file = %s/pid\n[dest]\npath = %s\nread only = no\n", dir, r.dest)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	direct := "127.0.0.1:" + port
	r.proxy = cluster.NewProxy(t, direct)
	r.addr = r.proxy.Addr
	r.cmd = exec.Command("rsync", "--daemon", "--no-detach", "--address=127.0.0.1", "--port="+port, "--config="+conf)
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rsync daemon: %v", err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	cluster.WaitFor(t, 10*time.Second, "rsync daemon", func() (bool, string) {
		err := exec.Command("rsync", "rsync://"+direct+"/").Run()
		return err == nil, fmt.Sprint(err)
	})
	return r
}

// push runs `rsync <args> src/ rsync://addr/dest/run<N>/` and returns its time
// and the bytes it sent and received through the proxy. The CPU time it
// took on both ends is left in r.cpu.
func (r *rsyncd) push(t *tb, src string, args ...string) (time.Duration, uint64) {
	all := append(append([]string{}, args...), src+"/", r.target())
	w := r.proxy.Bytes()
	daemon := r.cmd.Process.Pid
	before, err := procCPU(daemon, true)
	if err != nil {
		t.Fatalf("CPU time of the rsync daemon: %v", err)
	}
	start, stolen := time.Now(), sampleCPU()
	cmd := exec.Command("rsync", all...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rsync %v: %v\n%s", all, err, out)
	}
	d := time.Since(start)
	r.steal = stolenSince(stolen)
	// The daemon's process for this push ends with the client; its CPU
	// time counts once the daemon has waited for it.
	cluster.WaitFor(t, 10*time.Second, "the rsync daemon's process for the push to end", func() (bool, string) {
		return !hasChildren(daemon), ""
	})
	after, err := procCPU(daemon, true)
	if err != nil {
		t.Fatalf("CPU time of the rsync daemon: %v", err)
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() + after - before
	return d, r.proxy.Bytes() - w
}

// target is the rsync URL of the current run's directory; rsync creates
// it on the first push.
func (r *rsyncd) target() string { return fmt.Sprintf("rsync://%s/dest/run%d/", r.addr, r.run) }

// fresh makes the next push go to an empty directory. The earlier run's
// tree stays until the bench run ends: removing a tree of many files right
// before a timed run would make that run's file creation slower (see
// quiesceFresh).
func (r *rsyncd) fresh() { r.run++ }

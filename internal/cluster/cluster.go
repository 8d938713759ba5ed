// Package cluster starts real tandem processes on loopback for tests and
// benchmarks: it builds the binary, creates homes and folders, writes each
// node's config with all others as peers, starts, kills and stops nodes,
// and compares trees.
package cluster

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TB is the part of testing.TB the cluster needs; benchmarks outside
// `go test` provide their own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Bin is the tandem binary the cluster runs; Build sets it.
var Bin string

// Main is a TestMain for packages that run tandem processes: it builds
// the binary once into a temporary directory (with the race detector if
// TANDEM_TEST_RACE is set), runs the tests and removes it.
func Main(m interface{ Run() int }) {
	dir, err := os.MkdirTemp("", "tandem-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := Build(dir, os.Getenv("TANDEM_TEST_RACE") != ""); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Build compiles ./cmd/tandem (found from the module root) into dir.
func Build(dir string, race bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	// Tests may run nodes as an unprivileged user: they must reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	Bin = filepath.Join(dir, "tandem")
	args := []string{"build", "-o", Bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/tandem")...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the tandem module")
	}
	return filepath.Dir(mod), nil
}

// syncBuf is a goroutine-safe log buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type Node struct {
	t TB
	c *Cluster
	// Env is added to this node's environment on its next Start (on top
	// of the cluster's Env).
	Env []string
	// Top is added to the top level of this node's configuration (after
	// listen) by WriteConfig.
	Top string
	// UID and GID, if UID is not 0, run the node as that user.
	UID, GID uint32
	Name     string // a, b, c, ...
	Home     string // --home directory
	Dir      string // the synced folder
	Addr     string // listen address
	ID       string // node ID
	Cmd      *exec.Cmd
	Log      *syncBuf // stdout and stderr of every run
	exit     chan struct{}
}

type Cluster struct {
	t     TB
	Nodes []*Node
	// PeerAddr, if set, gives the address node from dials to reach node to
	// (for example a fault-injecting proxy); default: to's listen address.
	// Call WriteConfig for every node after setting it.
	PeerAddr func(from, to *Node) string
	// FolderExtra is appended to every node's [[folder]] table.
	FolderExtra string
	// Env is added to the environment of every node process.
	Env []string
	// LogLevel is passed to tandem run (default "debug", so that a failing
	// test's logs show every decision).
	LogLevel string
}

func Run(t TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(Bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tandem %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// newCluster creates n nodes, each configured with all others as peers,
// sharing one folder "data". Nodes are not started.
func New(t TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	base := t.TempDir()
	for i := range n {
		name := string(rune('a' + i))
		nd := &Node{t: t, c: c, Name: name, Home: filepath.Join(base, "home-"+name), Dir: filepath.Join(base, "data-"+name), Addr: FreeAddr(t), Log: &syncBuf{}}
		if err := os.MkdirAll(nd.Dir, 0o755); err != nil {
			t.Fatalf("%v", err)
		}
		nd.ID = strings.TrimSpace(Run(t, "init", "--home", nd.Home))
		c.Nodes = append(c.Nodes, nd)
	}
	for _, nd := range c.Nodes {
		c.WriteConfig(nd, "")
	}
	t.Cleanup(func() {
		for _, nd := range c.Nodes {
			nd.Kill()
			if strings.Contains(nd.Log.String(), "WARNING: DATA RACE") {
				t.Errorf("node %s reported a data race", nd.Name)
			}
		}
		if t.Failed() {
			for _, nd := range c.Nodes {
				t.Logf("---- log of node %s ----\n%s", nd.Name, nd.Log.String())
			}
		}
	})
	return c
}

func (c *Cluster) WriteConfig(nd *Node, extra string) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\n%s", nd.Addr, nd.Top)
	for _, p := range c.Nodes {
		if p != nd {
			addr := p.Addr
			if c.PeerAddr != nil {
				addr = c.PeerAddr(nd, p)
			}
			fmt.Fprintf(&b, "\n[[peer]]\nid = %q\naddress = %q\n", p.ID, addr)
		}
	}
	fmt.Fprintf(&b, "\n[[folder]]\nid = \"data\"\npath = %q\n%s%s", nd.Dir, c.FolderExtra, extra)
	if err := os.WriteFile(filepath.Join(nd.Home, "tandem.toml"), []byte(b.String()), 0o600); err != nil {
		c.t.Fatalf("%v", err)
	}
}

func (c *Cluster) Start() {
	for _, nd := range c.Nodes {
		nd.Start()
	}
}

func (n *Node) Start() {
	n.t.Helper()
	if n.Cmd != nil {
		n.t.Fatalf("node %s already running", n.Name)
	}
	level := n.c.LogLevel
	if level == "" {
		level = "debug"
	}
	cmd := exec.Command(Bin, "run", "--home", n.Home, "--log-level", level)
	cmd.Stdout, cmd.Stderr = n.Log, n.Log
	cmd.Env = append(append(os.Environ(), n.c.Env...), n.Env...)
	if n.UID != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: n.UID, Gid: n.GID}}
	}
	fmt.Fprintf(n.Log, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("%v", err)
	}
	n.Cmd = cmd
	n.exit = make(chan struct{})
	go func() { cmd.Wait(); close(n.exit) }()
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	if n.Cmd == nil {
		return
	}
	_ = n.Cmd.Process.Signal(syscall.SIGKILL)
	<-n.exit
	n.Cmd = nil
	fmt.Fprintf(n.Log, "==== killed %s\n", time.Now().Format(time.RFC3339Nano))
}

// DumpGoroutines makes a running node print the stacks of all its
// goroutines to its log (Go's SIGQUIT handler) and exit: for a node that
// stopped answering.
func (n *Node) DumpGoroutines() {
	if n.Cmd == nil {
		return
	}
	fmt.Fprintf(n.Log, "==== SIGQUIT for a goroutine dump %s\n", time.Now().Format(time.RFC3339Nano))
	_ = n.Cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.exit:
	case <-time.After(10 * time.Second):
		_ = n.Cmd.Process.Signal(syscall.SIGKILL)
		<-n.exit
	}
	n.Cmd = nil
}

// WaitExit waits up to timeout for the process to exit by itself (for
// example at a crash point) and reports whether it did.
func (n *Node) WaitExit(timeout time.Duration) bool {
	if n.Cmd == nil {
		return true
	}
	select {
	case <-n.exit:
		n.Cmd = nil
		fmt.Fprintf(n.Log, "==== exited by itself %s\n", time.Now().Format(time.RFC3339Nano))
		return true
	case <-time.After(timeout):
		return false
	}
}

// PeakRSS returns the node process's peak resident memory in bytes
// (VmHWM), or 0 if it is not running.
func (n *Node) PeakRSS() int64 {
	if n.Cmd == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.Cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// Exited returns a node whose process ended without being stopped or
// killed (a crash, or an exit on an error), or nil: a wait for a node
// that is gone would otherwise run into its timeout.
func (c *Cluster) Exited() *Node {
	for _, nd := range c.Nodes {
		if nd.Cmd == nil {
			continue
		}
		select {
		case <-nd.exit:
			return nd
		default:
		}
	}
	return nil
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool { return n.Cmd != nil }

// Status runs `tandem status --json` for the node and returns its output.
func (n *Node) Status() string {
	out, _ := exec.Command(Bin, "status", "--home", n.Home, "--json").CombinedOutput()
	return string(out)
}

// stop sends SIGTERM and waits for a clean exit.
func (n *Node) Stop() {
	n.t.Helper()
	if n.Cmd == nil {
		return
	}
	_ = n.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exit:
	case <-time.After(15 * time.Second):
		n.t.Errorf("node %s did not stop within 15s of SIGTERM", n.Name)
		n.Kill()
		return
	}
	if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Errorf("node %s exited with %d after SIGTERM", n.Name, code)
	}
	n.Cmd = nil
}

func (n *Node) Path(rel string) string { return filepath.Join(n.Dir, filepath.FromSlash(rel)) }

func (n *Node) Write(rel, content string) {
	n.t.Helper()
	p := n.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		n.t.Fatalf("%v", err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		n.t.Fatalf("%v", err)
	}
}

func (n *Node) Read(rel string) (string, bool) {
	b, err := os.ReadFile(n.Path(rel))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// waitFor polls cond until it holds or the deadline passes.
func WaitFor(t TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Entry describes one path of a tree for comparison.
type Entry struct {
	UID    uint32
	GID    uint32
	Type   string
	Mode   fs.FileMode
	MTime  int64
	Hash   [32]byte
	Target string
}

// tree reads a folder (without .tandem) into a map.
func Tree(dir string) (map[string]Entry, error) {
	out := map[string]Entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel == ".tandem" {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := Entry{Mode: fi.Mode().Perm()}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.UID, e.GID = st.Uid, st.Gid
		}
		switch {
		case fi.Mode().IsRegular():
			e.Type, e.MTime = "file", fi.ModTime().UnixNano()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Hash = sha256.Sum256(b)
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type, e.Mode, e.MTime = "symlink", 0, fi.ModTime().UnixNano()
			e.Target, _ = os.Readlink(p)
		default:
			e.Type = "other"
		}
		out[rel] = e
		return nil
	})
	return out, err
}

// diffTrees describes the differences between two trees ("" if none).
func DiffTrees(a, b map[string]Entry) string {
	var diffs []string
	for p, ea := range a {
		eb, ok := b[p]
		if !ok {
			diffs = append(diffs, "only in first: "+p)
		} else if ea != eb {
			diffs = append(diffs, fmt.Sprintf("differs: %s (%+v vs %+v)", p, ea, eb))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, "only in second: "+p)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("... %d more", len(diffs)-8))
	}
	return strings.Join(diffs, "; ")
}

// converged waits until all running nodes hold identical trees.
func (c *Cluster) Converged(timeout time.Duration) map[string]Entry {
	c.t.Helper()
	var first map[string]Entry
	WaitFor(c.t, timeout, "trees to converge", func() (bool, string) {
		var err error
		first, err = Tree(c.Nodes[0].Dir)
		if err != nil {
			return false, err.Error()
		}
		for _, nd := range c.Nodes[1:] {
			other, err := Tree(nd.Dir)
			if err != nil {
				return false, err.Error()
			}
			if d := DiffTrees(first, other); d != "" {
				return false, fmt.Sprintf("%s vs %s: %s", c.Nodes[0].Name, nd.Name, d)
			}
		}
		return true, ""
	})
	return first
}

// connected waits until every node reports all peers connected.
func (c *Cluster) Connected(timeout time.Duration) {
	c.t.Helper()
	running := 0
	for _, nd := range c.Nodes {
		if nd.Cmd != nil {
			running++
		}
	}
	WaitFor(c.t, timeout, "peers to connect", func() (bool, string) {
		for _, nd := range c.Nodes {
			if nd.Cmd == nil {
				continue
			}
			out, err := exec.Command(Bin, "status", "--home", nd.Home, "--json").Output()
			if err != nil {
				return false, fmt.Sprintf("status of %s: %v", nd.Name, err)
			}
			if n := strings.Count(string(out), `"connected": true`); n < running-1 {
				return false, fmt.Sprintf("%s has %d connected peers", nd.Name, n)
			}
		}
		return true, ""
	})
}

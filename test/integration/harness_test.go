// Package integration runs real tandem processes on loopback and checks
// the promises end to end: no lost writes, no resurrection, convergence,
// atomic visibility, crash safety, missing-disk safety, no echo.
package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/tandem")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

type tnode struct {
	t    *testing.T
	name string
	home string
	dir  string
	addr string
	id   string
	cmd  *exec.Cmd
	log  *syncBuf
	exit chan struct{}
}

type cluster struct {
	t     *testing.T
	nodes []*tnode
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tandem %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// newCluster creates n nodes, each configured with all others as peers,
// sharing one folder "data". Nodes are not started.
func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	base := t.TempDir()
	for i := range n {
		name := string(rune('a' + i))
		nd := &tnode{t: t, name: name, home: filepath.Join(base, "home-"+name), dir: filepath.Join(base, "data-"+name), addr: freeAddr(t), log: &syncBuf{}}
		if err := os.MkdirAll(nd.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		nd.id = strings.TrimSpace(run(t, "init", "--home", nd.home))
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		c.writeConfig(nd, "")
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.kill()
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("---- log of node %s ----\n%s", nd.name, nd.log.String())
			}
		}
	})
	return c
}

func (c *cluster) writeConfig(nd *tnode, extra string) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\n", nd.addr)
	for _, p := range c.nodes {
		if p != nd {
			fmt.Fprintf(&b, "\n[[peer]]\nid = %q\naddress = %q\n", p.id, p.addr)
		}
	}
	fmt.Fprintf(&b, "\n[[folder]]\nid = \"data\"\npath = %q\n%s", nd.dir, extra)
	if err := os.WriteFile(filepath.Join(nd.home, "tandem.toml"), []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) start() {
	for _, nd := range c.nodes {
		nd.start()
	}
}

func (n *tnode) start() {
	n.t.Helper()
	if n.cmd != nil {
		n.t.Fatalf("node %s already running", n.name)
	}
	cmd := exec.Command(bin, "run", "--home", n.home, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = n.log, n.log
	fmt.Fprintf(n.log, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd = cmd
	n.exit = make(chan struct{})
	go func() { cmd.Wait(); close(n.exit) }()
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *tnode) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exit
	n.cmd = nil
	fmt.Fprintf(n.log, "==== killed %s\n", time.Now().Format(time.RFC3339Nano))
}

// stop sends SIGTERM and waits for a clean exit.
func (n *tnode) stop() {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exit:
	case <-time.After(15 * time.Second):
		n.t.Errorf("node %s did not stop within 15s of SIGTERM", n.name)
		n.kill()
		return
	}
	if code := n.cmd.ProcessState.ExitCode(); code != 0 {
		n.t.Errorf("node %s exited with %d after SIGTERM", n.name, code)
	}
	n.cmd = nil
}

func (n *tnode) path(rel string) string { return filepath.Join(n.dir, filepath.FromSlash(rel)) }

func (n *tnode) write(rel, content string) {
	n.t.Helper()
	p := n.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *tnode) read(rel string) (string, bool) {
	b, err := os.ReadFile(n.path(rel))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
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

// entry describes one path of a tree for comparison.
type entry struct {
	Type   string
	Mode   fs.FileMode
	MTime  int64
	Hash   [32]byte
	Target string
}

// tree reads a folder (without .tandem) into a map.
func tree(dir string) (map[string]entry, error) {
	out := map[string]entry{}
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
		e := entry{Mode: fi.Mode().Perm()}
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
			e.Type, e.Mode = "symlink", 0
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
func diffTrees(a, b map[string]entry) string {
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
func (c *cluster) converged(timeout time.Duration) map[string]entry {
	c.t.Helper()
	var first map[string]entry
	waitFor(c.t, timeout, "trees to converge", func() (bool, string) {
		var err error
		first, err = tree(c.nodes[0].dir)
		if err != nil {
			return false, err.Error()
		}
		for _, nd := range c.nodes[1:] {
			other, err := tree(nd.dir)
			if err != nil {
				return false, err.Error()
			}
			if d := diffTrees(first, other); d != "" {
				return false, fmt.Sprintf("%s vs %s: %s", c.nodes[0].name, nd.name, d)
			}
		}
		return true, ""
	})
	return first
}

// connected waits until every node reports all peers connected.
func (c *cluster) connected(timeout time.Duration) {
	c.t.Helper()
	running := 0
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			running++
		}
	}
	waitFor(c.t, timeout, "peers to connect", func() (bool, string) {
		for _, nd := range c.nodes {
			if nd.cmd == nil {
				continue
			}
			out, err := exec.Command(bin, "status", "--home", nd.home, "--json").Output()
			if err != nil {
				return false, fmt.Sprintf("status of %s: %v", nd.name, err)
			}
			if n := strings.Count(string(out), `"connected": true`); n < running-1 {
				return false, fmt.Sprintf("%s has %d connected peers", nd.name, n)
			}
		}
		return true, ""
	})
}

package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"tandem/internal/cluster"
)

const settle = 30 * time.Second

func TestCreateModifyDeleteRename(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("top.txt", "top")
	a.Write("d1/d2/deep.txt", "deep")
	b.Write("fromb/x.txt", "x from b")
	c.Converged(settle)
	if s, _ := b.Read("d1/d2/deep.txt"); s != "deep" {
		t.Fatalf("deep file on b: %q", s)
	}
	if s, _ := a.Read("fromb/x.txt"); s != "x from b" {
		t.Fatalf("b's file on a: %q", s)
	}
	// Modify on b, delete on a, rename a file and a directory on b.
	b.Write("top.txt", "top v2")
	if err := os.Remove(a.Path("fromb/x.txt")); err != nil {
		t.Fatal(err)
	}
	tr := c.Converged(settle)
	if _, ok := tr["fromb/x.txt"]; ok {
		t.Fatal("deleted file came back")
	}
	if err := os.Rename(b.Path("top.txt"), b.Path("renamed.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.Path("d1"), b.Path("moved")); err != nil {
		t.Fatal(err)
	}
	tr = c.Converged(settle)
	for _, gone := range []string{"top.txt", "d1", "d1/d2/deep.txt"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s still exists after rename", gone)
		}
	}
	if s, _ := a.Read("renamed.txt"); s != "top v2" {
		t.Errorf("renamed.txt on a: %q", s)
	}
	if s, _ := a.Read("moved/d2/deep.txt"); s != "deep" {
		t.Errorf("moved dir content on a: %q", s)
	}
	// Remove a whole tree on a.
	if err := os.RemoveAll(a.Path("moved")); err != nil {
		t.Fatal(err)
	}
	tr = c.Converged(settle)
	if _, ok := tr["moved"]; ok {
		t.Error("removed tree still present")
	}
}

func TestKilledNodeGetsWritesMadeMeanwhile(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("shared.txt", "original")
	c.Converged(settle)
	for rep := range 5 {
		a.Kill()
		for i := range 20 {
			b.Write(fmt.Sprintf("rep%d/new-%02d.txt", rep, i), fmt.Sprintf("rep %d file %d", rep, i))
		}
		edit := fmt.Sprintf("edited on b in rep %d", rep)
		b.Write("shared.txt", edit)
		a.Start()
		tr := c.Converged(settle)
		for i := range 20 {
			p := fmt.Sprintf("rep%d/new-%02d.txt", rep, i)
			if s, _ := a.Read(p); s != fmt.Sprintf("rep %d file %d", rep, i) {
				t.Fatalf("rep %d: %s on a = %q", rep, p, s)
			}
		}
		if s, _ := a.Read("shared.txt"); s != edit {
			t.Fatalf("rep %d: edit lost, a has %q", rep, s)
		}
		for p := range tr {
			if strings.Contains(p, ".conflict-") {
				t.Fatalf("rep %d: spurious conflict copy %s", rep, p)
			}
		}
	}
}

func TestDeleteWhileNodeDown(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("doomed.txt", "bye")
	a.Write("keep.txt", "stay")
	c.Converged(settle)
	a.Kill()
	if err := os.Remove(b.Path("doomed.txt")); err != nil {
		t.Fatal(err)
	}
	a.Start()
	c.Connected(settle)
	tr := c.Converged(settle)
	if _, ok := tr["doomed.txt"]; ok {
		t.Fatal("file deleted on b while a was down was resurrected")
	}
	if _, ok := tr["keep.txt"]; !ok {
		t.Fatal("keep.txt lost")
	}
}

func TestAlternatingOutages(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("base.txt", "base")
	c.Converged(settle)
	a.Kill()
	b.Write("y.txt", "y from b")
	cluster.WaitFor(t, settle, "b to index y.txt", func() (bool, string) {
		out, _ := exec.Command(cluster.Bin, "status", "--home", b.Home, "--json").Output()
		return bytes.Contains(out, []byte(`"files": 2`)), string(out)
	})
	b.Kill()
	a.Start()
	a.Write("z.txt", "z from a")
	cluster.WaitFor(t, settle, "a to index z.txt", func() (bool, string) {
		out, _ := exec.Command(cluster.Bin, "status", "--home", a.Home, "--json").Output()
		return bytes.Contains(out, []byte(`"files": 2`)), string(out)
	})
	b.Start()
	c.Converged(settle)
	for _, nd := range c.Nodes {
		if s, _ := nd.Read("y.txt"); s != "y from b" {
			t.Errorf("y.txt on %s = %q", nd.Name, s)
		}
		if s, _ := nd.Read("z.txt"); s != "z from a" {
			t.Errorf("z.txt on %s = %q", nd.Name, s)
		}
	}
}

func TestChangesWhileDaemonStoppedPropagate(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("modify.txt", "v1")
	a.Write("delete.txt", "gone soon")
	c.Converged(settle)
	a.Stop()
	a.Write("modify.txt", "v2 offline")
	a.Write("create.txt", "created offline")
	if err := os.Remove(a.Path("delete.txt")); err != nil {
		t.Fatal(err)
	}
	a.Start()
	cluster.WaitFor(t, settle, "b to get the offline changes", func() (bool, string) {
		m, _ := b.Read("modify.txt")
		cr, _ := b.Read("create.txt")
		_, del := b.Read("delete.txt")
		return m == "v2 offline" && cr == "created offline" && !del, fmt.Sprintf("modify=%q create=%q delete exists=%v", m, cr, del)
	})
	c.Converged(settle)
}

func TestMetadataArrivesAsIs(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("secret.txt", "s")
	a.Write("script.sh", "#!/bin/sh\necho hi\n")
	a.Write("old.txt", "old")
	must(t, os.Chmod(a.Path("secret.txt"), 0o640))
	must(t, os.Chmod(a.Path("script.sh"), 0o755))
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	must(t, os.Chtimes(a.Path("old.txt"), old, old))
	must(t, os.Symlink("old.txt", a.Path("link")))
	must(t, os.Symlink("../outside/target", a.Path("dangling")))
	must(t, os.MkdirAll(a.Path("empty/nested-empty"), 0o750))
	root := os.Geteuid() == 0
	if root {
		a.Write("owned.txt", "owned")
		must(t, os.Lchown(a.Path("owned.txt"), 1234, 5678))
		must(t, os.Lchown(a.Path("link"), 2345, 6789))
	}
	c.Converged(settle)
	if root {
		for rel, want := range map[string][2]uint32{"owned.txt": {1234, 5678}, "link": {2345, 6789}} {
			fi, err := os.Lstat(b.Path(rel))
			must(t, err)
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != want[0] || st.Gid != want[1] {
				t.Errorf("%s on b owned by %d:%d, want %d:%d", rel, st.Uid, st.Gid, want[0], want[1])
			}
		}
	}
	check := func(rel string, want fs.FileMode) {
		fi, err := os.Lstat(b.Path(rel))
		if err != nil {
			t.Fatalf("%s on b: %v", rel, err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s on b: mode %o, want %o", rel, fi.Mode().Perm(), want)
		}
	}
	check("secret.txt", 0o640)
	check("script.sh", 0o755)
	check("empty", 0o750)
	check("empty/nested-empty", 0o750)
	fi, err := os.Stat(b.Path("old.txt"))
	must(t, err)
	if !fi.ModTime().Equal(old) {
		t.Errorf("old.txt mtime on b %v, want %v", fi.ModTime(), old)
	}
	for link, target := range map[string]string{"link": "old.txt", "dangling": "../outside/target"} {
		got, err := os.Readlink(b.Path(link))
		if err != nil || got != target {
			t.Errorf("symlink %s on b: %q, %v; want %q", link, got, err, target)
		}
	}
	// Metadata-only changes propagate too.
	must(t, os.Chmod(b.Path("secret.txt"), 0o600))
	cluster.WaitFor(t, settle, "chmod to reach a", func() (bool, string) {
		fi, err := os.Stat(a.Path("secret.txt"))
		return err == nil && fi.Mode().Perm() == 0o600, fmt.Sprint(fi.Mode())
	})
}

func TestMissingMarkerStopsFolder(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	for i := range 10 {
		a.Write(fmt.Sprintf("f%d.txt", i), "content")
	}
	before := c.Converged(settle)
	a.Stop()
	// The disk "is not mounted": an empty directory at the folder's path.
	must(t, os.RemoveAll(a.Dir))
	must(t, os.Mkdir(a.Dir, 0o755))
	a.Start()
	cluster.WaitFor(t, settle, "a to report the missing marker", func() (bool, string) {
		out, _ := exec.Command(cluster.Bin, "status", "--home", a.Home).CombinedOutput()
		return strings.Contains(string(out), "marker") && strings.Contains(string(out), "ERROR"), string(out)
	})
	c.Connected(settle)
	// Give a misbehaving node ample opportunity to propagate deletions: b
	// must stay untouched across an observation window.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		now, err := cluster.Tree(b.Dir)
		must(t, err)
		if d := cluster.DiffTrees(before, now); d != "" {
			t.Fatalf("b's tree changed while a's disk was missing: %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(a.Log.String(), "marker") {
		t.Errorf("a's log does not mention the missing marker:\n%s", a.Log.String())
	}
	if entries, _ := os.ReadDir(a.Dir); len(entries) != 0 {
		t.Errorf("a wrote into the unmounted folder: %v", entries)
	}
}

func TestNoEchoAfterSettling(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("one.txt", "1")
	a.Write("dir/two.txt", "2")
	b.Write("three.txt", "3")
	must(t, os.Symlink("one.txt", a.Path("link")))
	c.Converged(settle)
	// Wait until both report in sync, then watch both trees for 5 s.
	for _, nd := range c.Nodes {
		cluster.WaitFor(t, settle, nd.Name+" in sync", func() (bool, string) {
			out, _ := exec.Command(cluster.Bin, "status", "--home", nd.Home, "--json").Output()
			return bytes.Contains(out, []byte(`"state": "idle"`)) && bytes.Contains(out, []byte(`"needed": 0`)), string(out)
		})
	}
	w, err := fsnotify.NewWatcher()
	must(t, err)
	defer w.Close()
	for _, nd := range []*cluster.Node{a, b} {
		must(t, filepath.WalkDir(nd.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				return w.Add(p)
			}
			return err
		}))
	}
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-w.Events:
			t.Fatalf("filesystem event after settling: %v", ev)
		case err := <-w.Errors:
			t.Fatal(err)
		case <-timeout:
			return
		}
	}
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestReaderNeverSeesPartialFile(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	small, big := randomData(8<<20, 1), randomData(24<<20, 2)
	hs, hb := sha256.Sum256(small), sha256.Sum256(big)
	must(t, os.WriteFile(a.Path("blob.bin"), small, 0o644))
	cluster.WaitFor(t, settle, "8 MiB file on b", func() (bool, string) {
		d, err := os.ReadFile(b.Path("blob.bin"))
		return err == nil && sha256.Sum256(d) == hs, ""
	})
	// Write the new version elsewhere and rename it into place on a, so
	// the source itself is never partial; b must switch atomically.
	must(t, os.WriteFile(a.Path(".new-blob"), big, 0o644))
	must(t, os.Rename(a.Path(".new-blob"), a.Path("blob.bin")))
	reads := 0
	cluster.WaitFor(t, settle, "24 MiB file on b", func() (bool, string) {
		d, err := os.ReadFile(b.Path("blob.bin"))
		if err != nil {
			t.Fatalf("reader on b: %v", err)
		}
		reads++
		h := sha256.Sum256(d)
		if h != hs && h != hb {
			t.Fatalf("reader saw a partial or mixed file of %d bytes", len(d))
		}
		return h == hb, ""
	})
	t.Logf("reader polled %d times", reads)
}

func TestReceiverKilledMidTransfer(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	c.Connected(settle)
	data := randomData(64<<20, 3)
	want := sha256.Sum256(data)
	// Appear on a atomically, so the first version b sees is the whole file.
	staged := filepath.Join(a.Dir, ".tandem", "staged.bin")
	must(t, os.WriteFile(staged, data, 0o644))
	must(t, os.Rename(staged, a.Path("big.bin")))
	// Kill b as soon as a temporary file of the transfer exists.
	tmp := filepath.Join(b.Dir, ".tandem", "tmp")
	cluster.WaitFor(t, settle, "transfer to start on b", func() (bool, string) {
		es, _ := os.ReadDir(tmp)
		return len(es) > 0, ""
	})
	b.Kill()
	if d, err := os.ReadFile(b.Path("big.bin")); err == nil {
		t.Fatalf("a file of %d bytes appeared at the final path before the transfer completed", len(d))
	}
	b.Start()
	cluster.WaitFor(t, settle, "whole file on b after restart", func() (bool, string) {
		d, err := os.ReadFile(b.Path("big.bin"))
		return err == nil && sha256.Sum256(d) == want, ""
	})
	c.Converged(settle)
	cluster.WaitFor(t, settle, "temporary files cleaned up", func() (bool, string) {
		es, _ := os.ReadDir(tmp)
		return len(es) == 0, fmt.Sprint(es)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

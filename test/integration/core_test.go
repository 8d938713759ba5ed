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
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

const settle = 30 * time.Second

func TestCreateModifyDeleteRename(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("top.txt", "top")
	a.write("d1/d2/deep.txt", "deep")
	b.write("fromb/x.txt", "x from b")
	c.converged(settle)
	if s, _ := b.read("d1/d2/deep.txt"); s != "deep" {
		t.Fatalf("deep file on b: %q", s)
	}
	if s, _ := a.read("fromb/x.txt"); s != "x from b" {
		t.Fatalf("b's file on a: %q", s)
	}
	// Modify on b, delete on a, rename a file and a directory on b.
	b.write("top.txt", "top v2")
	if err := os.Remove(a.path("fromb/x.txt")); err != nil {
		t.Fatal(err)
	}
	tr := c.converged(settle)
	if _, ok := tr["fromb/x.txt"]; ok {
		t.Fatal("deleted file came back")
	}
	if err := os.Rename(b.path("top.txt"), b.path("renamed.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(b.path("d1"), b.path("moved")); err != nil {
		t.Fatal(err)
	}
	tr = c.converged(settle)
	for _, gone := range []string{"top.txt", "d1", "d1/d2/deep.txt"} {
		if _, ok := tr[gone]; ok {
			t.Errorf("%s still exists after rename", gone)
		}
	}
	if s, _ := a.read("renamed.txt"); s != "top v2" {
		t.Errorf("renamed.txt on a: %q", s)
	}
	if s, _ := a.read("moved/d2/deep.txt"); s != "deep" {
		t.Errorf("moved dir content on a: %q", s)
	}
	// Remove a whole tree on a.
	if err := os.RemoveAll(a.path("moved")); err != nil {
		t.Fatal(err)
	}
	tr = c.converged(settle)
	if _, ok := tr["moved"]; ok {
		t.Error("removed tree still present")
	}
}

func TestKilledNodeGetsWritesMadeMeanwhile(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("shared.txt", "original")
	c.converged(settle)
	for rep := range 5 {
		a.kill()
		for i := range 20 {
			b.write(fmt.Sprintf("rep%d/new-%02d.txt", rep, i), fmt.Sprintf("rep %d file %d", rep, i))
		}
		edit := fmt.Sprintf("edited on b in rep %d", rep)
		b.write("shared.txt", edit)
		a.start()
		tr := c.converged(settle)
		for i := range 20 {
			p := fmt.Sprintf("rep%d/new-%02d.txt", rep, i)
			if s, _ := a.read(p); s != fmt.Sprintf("rep %d file %d", rep, i) {
				t.Fatalf("rep %d: %s on a = %q", rep, p, s)
			}
		}
		if s, _ := a.read("shared.txt"); s != edit {
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
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("doomed.txt", "bye")
	a.write("keep.txt", "stay")
	c.converged(settle)
	a.kill()
	if err := os.Remove(b.path("doomed.txt")); err != nil {
		t.Fatal(err)
	}
	a.start()
	c.connected(settle)
	tr := c.converged(settle)
	if _, ok := tr["doomed.txt"]; ok {
		t.Fatal("file deleted on b while a was down was resurrected")
	}
	if _, ok := tr["keep.txt"]; !ok {
		t.Fatal("keep.txt lost")
	}
}

func TestAlternatingOutages(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("base.txt", "base")
	c.converged(settle)
	a.kill()
	b.write("y.txt", "y from b")
	waitFor(t, settle, "b to index y.txt", func() (bool, string) {
		out, _ := exec.Command(bin, "status", "--home", b.home, "--json").Output()
		return bytes.Contains(out, []byte(`"files": 2`)), string(out)
	})
	b.kill()
	a.start()
	a.write("z.txt", "z from a")
	waitFor(t, settle, "a to index z.txt", func() (bool, string) {
		out, _ := exec.Command(bin, "status", "--home", a.home, "--json").Output()
		return bytes.Contains(out, []byte(`"files": 2`)), string(out)
	})
	b.start()
	c.converged(settle)
	for _, nd := range c.nodes {
		if s, _ := nd.read("y.txt"); s != "y from b" {
			t.Errorf("y.txt on %s = %q", nd.name, s)
		}
		if s, _ := nd.read("z.txt"); s != "z from a" {
			t.Errorf("z.txt on %s = %q", nd.name, s)
		}
	}
}

func TestChangesWhileDaemonStoppedPropagate(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("modify.txt", "v1")
	a.write("delete.txt", "gone soon")
	c.converged(settle)
	a.stop()
	a.write("modify.txt", "v2 offline")
	a.write("create.txt", "created offline")
	if err := os.Remove(a.path("delete.txt")); err != nil {
		t.Fatal(err)
	}
	a.start()
	waitFor(t, settle, "b to get the offline changes", func() (bool, string) {
		m, _ := b.read("modify.txt")
		cr, _ := b.read("create.txt")
		_, del := b.read("delete.txt")
		return m == "v2 offline" && cr == "created offline" && !del, fmt.Sprintf("modify=%q create=%q delete exists=%v", m, cr, del)
	})
	c.converged(settle)
}

func TestMetadataArrivesAsIs(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("secret.txt", "s")
	a.write("script.sh", "#!/bin/sh\necho hi\n")
	a.write("old.txt", "old")
	must(t, os.Chmod(a.path("secret.txt"), 0o640))
	must(t, os.Chmod(a.path("script.sh"), 0o755))
	old := time.Date(2001, 2, 3, 4, 5, 6, 789, time.UTC)
	must(t, os.Chtimes(a.path("old.txt"), old, old))
	must(t, os.Symlink("old.txt", a.path("link")))
	must(t, os.Symlink("../outside/target", a.path("dangling")))
	must(t, os.MkdirAll(a.path("empty/nested-empty"), 0o750))
	c.converged(settle)
	check := func(rel string, want fs.FileMode) {
		fi, err := os.Lstat(b.path(rel))
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
	fi, err := os.Stat(b.path("old.txt"))
	must(t, err)
	if !fi.ModTime().Equal(old) {
		t.Errorf("old.txt mtime on b %v, want %v", fi.ModTime(), old)
	}
	for link, target := range map[string]string{"link": "old.txt", "dangling": "../outside/target"} {
		got, err := os.Readlink(b.path(link))
		if err != nil || got != target {
			t.Errorf("symlink %s on b: %q, %v; want %q", link, got, err, target)
		}
	}
	// Metadata-only changes propagate too.
	must(t, os.Chmod(b.path("secret.txt"), 0o600))
	waitFor(t, settle, "chmod to reach a", func() (bool, string) {
		fi, err := os.Stat(a.path("secret.txt"))
		return err == nil && fi.Mode().Perm() == 0o600, fmt.Sprint(fi.Mode())
	})
}

func TestMissingMarkerStopsFolder(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	for i := range 10 {
		a.write(fmt.Sprintf("f%d.txt", i), "content")
	}
	before := c.converged(settle)
	a.stop()
	// The disk "is not mounted": an empty directory at the folder's path.
	must(t, os.RemoveAll(a.dir))
	must(t, os.Mkdir(a.dir, 0o755))
	a.start()
	waitFor(t, settle, "a to report the missing marker", func() (bool, string) {
		out, _ := exec.Command(bin, "status", "--home", a.home).CombinedOutput()
		return strings.Contains(string(out), "marker") && strings.Contains(string(out), "ERROR"), string(out)
	})
	c.connected(settle)
	// Give a misbehaving node ample opportunity to propagate deletions: b
	// must stay untouched across an observation window.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		now, err := tree(b.dir)
		must(t, err)
		if d := diffTrees(before, now); d != "" {
			t.Fatalf("b's tree changed while a's disk was missing: %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(a.log.String(), "marker") {
		t.Errorf("a's log does not mention the missing marker:\n%s", a.log.String())
	}
	if entries, _ := os.ReadDir(a.dir); len(entries) != 0 {
		t.Errorf("a wrote into the unmounted folder: %v", entries)
	}
}

func TestNoEchoAfterSettling(t *testing.T) {
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	a.write("one.txt", "1")
	a.write("dir/two.txt", "2")
	b.write("three.txt", "3")
	must(t, os.Symlink("one.txt", a.path("link")))
	c.converged(settle)
	// Wait until both report in sync, then watch both trees for 5 s.
	for _, nd := range c.nodes {
		waitFor(t, settle, nd.name+" in sync", func() (bool, string) {
			out, _ := exec.Command(bin, "status", "--home", nd.home, "--json").Output()
			return bytes.Contains(out, []byte(`"state": "idle"`)) && bytes.Contains(out, []byte(`"needed": 0`)), string(out)
		})
	}
	w, err := fsnotify.NewWatcher()
	must(t, err)
	defer w.Close()
	for _, nd := range []*tnode{a, b} {
		must(t, filepath.WalkDir(nd.dir, func(p string, d fs.DirEntry, err error) error {
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
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	small, big := randomData(8<<20, 1), randomData(24<<20, 2)
	hs, hb := sha256.Sum256(small), sha256.Sum256(big)
	must(t, os.WriteFile(a.path("blob.bin"), small, 0o644))
	waitFor(t, settle, "8 MiB file on b", func() (bool, string) {
		d, err := os.ReadFile(b.path("blob.bin"))
		return err == nil && sha256.Sum256(d) == hs, ""
	})
	// Write the new version elsewhere and rename it into place on a, so
	// the source itself is never partial; b must switch atomically.
	must(t, os.WriteFile(a.path(".new-blob"), big, 0o644))
	must(t, os.Rename(a.path(".new-blob"), a.path("blob.bin")))
	reads := 0
	waitFor(t, settle, "24 MiB file on b", func() (bool, string) {
		d, err := os.ReadFile(b.path("blob.bin"))
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
	c := newCluster(t, 2)
	a, b := c.nodes[0], c.nodes[1]
	c.start()
	c.connected(settle)
	data := randomData(64<<20, 3)
	want := sha256.Sum256(data)
	must(t, os.WriteFile(a.path("big.bin"), data, 0o644))
	// Kill b as soon as a temporary file of the transfer exists.
	tmp := filepath.Join(b.dir, ".tandem", "tmp")
	waitFor(t, settle, "transfer to start on b", func() (bool, string) {
		es, _ := os.ReadDir(tmp)
		return len(es) > 0, ""
	})
	b.kill()
	if d, err := os.ReadFile(b.path("big.bin")); err == nil {
		t.Fatalf("a file of %d bytes appeared at the final path before the transfer completed", len(d))
	}
	b.start()
	waitFor(t, settle, "whole file on b after restart", func() (bool, string) {
		d, err := os.ReadFile(b.path("big.bin"))
		return err == nil && sha256.Sum256(d) == want, ""
	})
	c.converged(settle)
	waitFor(t, settle, "temporary files cleaned up", func() (bool, string) {
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

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"tandem/internal/cluster"
	"tandem/internal/daemon"
)

// This file is the reduced-size run of the benchmark's small-file and
// delta cases (go run ./bench has the full ones): it checks that every
// file arrives intact and how many bytes cross the wire, never how long
// anything takes.

// inSync waits until every node reports everything applied and sent.
func inSync(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	cluster.WaitFor(t, settle, "nodes in sync", func() (bool, string) {
		for _, nd := range c.Nodes {
			var st daemon.Status
			if err := json.Unmarshal([]byte(nd.Status()), &st); err != nil {
				return false, fmt.Sprintf("status of %s: %v", nd.Name, err)
			}
			if !st.InSync() {
				return false, nd.Name + " not in sync"
			}
		}
		return true, ""
	})
}

func writeSmallFiles(t *testing.T, dir string, n int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 16<<10)
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("dir%02d", i%20))
		must(t, os.MkdirAll(d, 0o755))
		size := 1<<10 + r.IntN(15<<10)
		for j := range size {
			buf[j] = byte(r.Uint32())
		}
		must(t, os.WriteFile(filepath.Join(d, fmt.Sprintf("s%d-%05d.dat", seed, i)), buf[:size], 0o644))
	}
}

// TestSmokeSmallFiles: 1000 small files present on a when both nodes
// start, then 500 created while they run, all arrive identical, and the
// wire carries little more than their content.
func TestSmokeSmallFiles(t *testing.T) {
	c := cluster.New(t, 2)
	wire := c.CountWire()
	a := c.Nodes[0]
	writeSmallFiles(t, a.Dir, 1000, 1)
	writeSmallFiles(t, filepath.Join(a.Home, "later"), 500, 2)
	var content int64
	for _, d := range []string{a.Dir, filepath.Join(a.Home, "later")} {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				fi, _ := e.Info()
				content += fi.Size()
			}
			return nil
		})
	}
	c.Start()
	tree := c.Converged(settle)
	if n := len(tree); n != 1000+20 {
		t.Fatalf("b has %d entries, want 1020", n)
	}
	// The second set appears while both run (moved in, one directory at
	// a time).
	es, err := os.ReadDir(filepath.Join(a.Home, "later"))
	must(t, err)
	for _, e := range es {
		src := filepath.Join(a.Home, "later", e.Name())
		fs, err := os.ReadDir(src)
		must(t, err)
		for _, f := range fs {
			must(t, os.Rename(filepath.Join(src, f.Name()), a.Path(filepath.Join(e.Name(), f.Name()))))
		}
	}
	tree = c.Converged(settle)
	if n := len(tree); n != 1500+20 {
		t.Fatalf("b has %d entries, want 1520", n)
	}
	inSync(t, c)
	// Random content does not compress: the wire must carry it once, plus
	// the index and TLS framing, which stay well under the content here.
	sent := wire()
	t.Logf("%d bytes of content, %d bytes on the wire", content, sent)
	if sent < uint64(content) || sent > uint64(content)*2 {
		t.Fatalf("%d bytes on the wire for %d bytes of small files: want between 1x and 2x", sent, content)
	}
}

// TestSmokeDelta changes a synced 32 MiB file in the ways the benchmark
// does and bounds the bytes each change puts on the wire: a 64 KiB
// overwrite mid-file under 1 MiB, a 100-byte insertion at the start under
// 2 MiB (content-defined chunks), a rename and a copy under 256 KiB
// (blocks found locally).
func TestSmokeDelta(t *testing.T) {
	c := cluster.New(t, 2)
	wire := c.CountWire()
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	// Large enough to be hinted while a hashes it (b fetches its start
	// ahead): the wire must still carry it once, not once ahead and once
	// when it is announced.
	big := randomData(48<<20, 5)
	must(t, os.WriteFile(filepath.Join(a.Home, "big.bin"), big, 0o644))
	must(t, os.Rename(filepath.Join(a.Home, "big.bin"), a.Path("big.bin")))
	c.Converged(settle)
	inSync(t, c)
	if w := wire(); w < 48<<20 || w > 52<<20 {
		t.Fatalf("%d bytes on the wire for a 48 MiB file of random data: want it once", w)
	} else {
		t.Logf("48 MiB file: %d bytes on the wire", w)
	}
	steps := []struct {
		name  string
		limit uint64
		do    func()
		check string // path whose content must equal a's
	}{
		{"64 KiB overwritten mid-file", 1 << 20, func() {
			f, err := os.OpenFile(a.Path("big.bin"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt(bytes.Repeat([]byte{0x5a}, 64<<10), 24<<20)
			must(t, err)
			must(t, f.Close())
		}, "big.bin"},
		{"100 bytes inserted at the start", 2 << 20, func() {
			old, err := os.ReadFile(a.Path("big.bin"))
			must(t, err)
			tmp := filepath.Join(a.Dir, ".big.tmp")
			must(t, os.WriteFile(tmp, append(bytes.Repeat([]byte("i"), 100), old...), 0o644))
			must(t, os.Rename(tmp, a.Path("big.bin")))
		}, "big.bin"},
		{"renamed", 256 << 10, func() {
			must(t, os.Rename(a.Path("big.bin"), a.Path("moved.bin")))
		}, "moved.bin"},
		{"copied", 256 << 10, func() {
			if out, err := exec.Command("cp", "-p", a.Path("moved.bin"), a.Path("copy.bin")).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
		}, "copy.bin"},
	}
	for _, st := range steps {
		w0 := wire()
		st.do()
		want, err := os.ReadFile(a.Path(st.check))
		must(t, err)
		cluster.WaitFor(t, settle, st.check+" on b", func() (bool, string) {
			got, err := os.ReadFile(b.Path(st.check))
			return err == nil && bytes.Equal(got, want), fmt.Sprint(len(got), " bytes")
		})
		c.Converged(settle)
		inSync(t, c)
		sent := wire() - w0
		t.Logf("%s: %d bytes on the wire", st.name, sent)
		if sent > st.limit {
			t.Errorf("%s: %d bytes on the wire, limit %d", st.name, sent, st.limit)
		}
	}
}

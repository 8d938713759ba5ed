package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// deltaStep is one change to the synced 256 MiB file and its bound on the
// bytes tandem may send for it.
type deltaStep struct {
	name  string
	limit uint64
	// apply changes dir (a's folder or rsync's source) and returns the
	// path whose content must arrive.
	apply func(t *tb, dir string) string
}

var deltaSteps = []deltaStep{
	{"delta: 64 KiB changed mid-file", 1 << 20, func(t *tb, dir string) string {
		f, err := os.OpenFile(filepath.Join(dir, "big.bin"), os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("%v", err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		patch := make([]byte, 64<<10)
		for i := range patch {
			patch[i] = byte(i*7 + 1)
		}
		if _, err := f.WriteAt(patch, fi.Size()/2); err != nil {
			t.Fatalf("%v", err)
		}
		return "big.bin"
	}},
	{"delta: 100 B inserted at start", 2 << 20, func(t *tb, dir string) string {
		p := filepath.Join(dir, "big.bin")
		old, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v", err)
		}
		ins := make([]byte, 100)
		for i := range ins {
			ins[i] = byte('a' + i%26)
		}
		// Write beside and rename over, as editors and deploy tools do.
		tmp := filepath.Join(dir, ".big.tmp")
		if err := os.WriteFile(tmp, append(ins, old...), 0o644); err != nil {
			t.Fatalf("%v", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatalf("%v", err)
		}
		return "big.bin"
	}},
	{"delta: file renamed", 256 << 10, func(t *tb, dir string) string {
		if err := os.Rename(filepath.Join(dir, "big.bin"), filepath.Join(dir, "moved.bin")); err != nil {
			t.Fatalf("%v", err)
		}
		return "moved.bin"
	}},
	{"delta: file copied", 256 << 10, func(t *tb, dir string) string {
		out, err := exec.Command("cp", "-p", filepath.Join(dir, "moved.bin"), filepath.Join(dir, "copy.bin")).CombinedOutput()
		if err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		return "copy.bin"
	}},
}

// delta syncs a 256 MiB file, then applies each change on a and counts the
// bytes between the nodes until b has the new content. rsync (delta
// algorithm, the default to a daemon) gets the same changes in the same
// order; its byte counts come from --stats.
func delta(t *tb, full bool) []row {
	size := int64(256 << 20)
	c := newCluster(t, 2, "delta")
	onWire := c.CountWire()
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	c.Connected(time.Minute)
	writeRandom(t, filepath.Join(a.Home, "big.bin"), size, 11)
	if err := os.Rename(filepath.Join(a.Home, "big.bin"), a.Path("big.bin")); err != nil {
		t.Fatalf("%v", err)
	}
	src, _ := os.Stat(a.Path("big.bin"))
	want, _ := hashFile(a.Path("big.bin"))
	waitContent(t, b, "big.bin", src, want, 10*time.Minute)
	waitInSync(t, c, time.Minute)

	rd := startRsyncd(t)
	rsrc := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("cp", "-a", a.Dir, rsrc).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	os.RemoveAll(filepath.Join(rsrc, ".tandem"))
	rd.pushStats(t, rsrc, "-a")

	var rows []row
	for _, st := range deltaSteps {
		w0 := onWire()
		quiesce()
		// Timed from the moment the change is complete, as rsync's run
		// is: writing a new 256 MiB file (the insertion) or copying one
		// took seconds of the bench's own time, which was counted for
		// tandem only.
		rel := st.apply(t, a.Dir)
		start := time.Now()
		src, err := os.Stat(a.Path(rel))
		if err != nil {
			t.Fatalf("%v", err)
		}
		want, _ := hashFile(a.Path(rel))
		waitContent(t, b, rel, src, want, 10*time.Minute)
		d := time.Since(start)
		waitInSync(t, c, time.Minute)
		sent := onWire() - w0

		st.apply(t, rsrc)
		quiesce()
		rstart := time.Now()
		rbytes := rd.pushStats(t, rsrc, "-a", "--delete")
		rd2 := time.Since(rstart)
		verdict := "ok"
		if sent > st.limit {
			verdict = "OVER LIMIT"
		}
		rows = append(rows, row{name: st.name, tandem: secs(d), rsync: secs(rd2), ratio: ratio(d, rd2), wire: kib(sent), rss: rssOf(c),
			note: fmt.Sprintf("limit %s: %s; rsync sent+received %s", kib(st.limit), verdict, kib(rbytes))})
	}
	c.Converged(10 * time.Minute)
	return rows
}

var statsRe = regexp.MustCompile(`Total bytes (sent|received): ([\d,.]+)`)

// pushStats is push with --stats; it returns the bytes rsync reports as
// sent plus received.
func (r *rsyncd) pushStats(t *tb, src string, args ...string) uint64 {
	all := append(append([]string{"--stats"}, args...), src+"/", r.target())
	out, err := exec.Command("rsync", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("rsync %v: %v\n%s", all, err, out)
	}
	var n uint64
	for _, m := range statsRe.FindAllStringSubmatch(string(out), -1) {
		v, err := strconv.ParseUint(regexp.MustCompile(`[,.]`).ReplaceAllString(m[2], ""), 10, 64)
		if err == nil {
			n += v
		}
	}
	return n
}

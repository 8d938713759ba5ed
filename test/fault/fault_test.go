package fault

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/cluster"
)

func TestRandomFaults2Nodes(t *testing.T) {
	newWorld(t, 2, 2).runRounds(rounds)
}

func TestRandomFaults3Nodes(t *testing.T) {
	newWorld(t, 3, 3).runRounds(rounds)
}

// TestKillDuringTransfers kills the receiver of 30 files of 1-4 MiB five
// times, aiming at moments when temporary files of the transfer exist (at
// least three kills must hit one), then checks that
// every file arrives exactly, with no spurious conflict copy and no
// temporary file left behind.
func TestKillDuringTransfers(t *testing.T) {
	start := time.Now()
	rng := rand.New(rand.NewPCG(seed, 99))
	replay := fmt.Sprintf("seed %d (replay with TANDEM_FAULT_SEED=%d go test -count=1 -v -run '^%s$' ./test/fault/)", seed, seed, t.Name())
	t.Logf("%s", replay)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\n%s", replay, fmt.Sprintf(format, args...))
	}
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	settle(c, fail)

	want := map[string][32]byte{}
	size := map[string]int64{}
	total := 0
	// writeFiles writes files [from, to) outside a's folder, then renames
	// them in together, so that b has the whole wave to fetch at once and
	// a kill finds a transfer in progress even on a fast machine.
	stage := filepath.Join(a.Home, "stage")
	writeFiles := func(from, to int) {
		if err := os.MkdirAll(stage, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(a.Path("big"), 0o755); err != nil {
			t.Fatal(err)
		}
		var names []string
		for i := from; i < to; i++ {
			data := make([]byte, 1<<20+rng.IntN(3<<20+1))
			for j := 0; j+8 <= len(data); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			rel := fmt.Sprintf("big/f%02d.bin", i)
			want[rel] = sha256.Sum256(data)
			size[rel] = int64(len(data))
			total += len(data)
			if err := os.WriteFile(filepath.Join(stage, filepath.Base(rel)), data, 0o644); err != nil {
				t.Fatal(err)
			}
			names = append(names, rel)
		}
		for _, rel := range names {
			if err := os.Rename(filepath.Join(stage, filepath.Base(rel)), a.Path(rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(b.Dir, ".tandem", "tmp")
	tmpNames := func() map[string]bool {
		es, _ := os.ReadDir(tmp)
		m := map[string]bool{}
		for _, e := range es {
			m[e.Name()] = true
		}
		return m
	}
	// complete reports how many files b holds with their exact content,
	// and fails on any file at its final path with other content: a
	// reader must never see a partial file.
	complete := func() int {
		n := 0
		for rel, h := range want {
			d, err := os.ReadFile(b.Path(rel))
			if err != nil {
				continue
			}
			if sha256.Sum256(d) != h {
				fail("%s on b has %d bytes of other content: partial or wrong file at its final path", rel, len(d))
			}
			n++
		}
		return n
	}
	// arrived reports whether b has every file at its full size; it is
	// cheap enough to poll, unlike complete, which hashes everything.
	arrived := func() bool {
		for rel, n := range size {
			fi, err := os.Stat(b.Path(rel))
			if err != nil || fi.Size() != n {
				return false
			}
		}
		return true
	}
	kills, midTransfer := 0, 0
	leftover := map[string]bool{}
	for wave := range 5 {
		// The files come in five waves of six, so that every kill finds
		// a transfer to interrupt even on a fast machine; a wave usually
		// starts while b is still catching up with the previous ones.
		writeFiles(6*wave, 6*wave+6)
		// Wait for a temporary file this run of b created (leftovers of the
		// previous run do not count), or for the transfer to end.
		deadline := time.Now().Add(settleTimeout)
		found, done := false, false
		for !found && !done {
			for n := range tmpNames() {
				if !leftover[n] {
					found = true
				}
			}
			if !found {
				if arrived() {
					done = true
				} else if time.Now().After(deadline) {
					fail("no transfer in progress on b after %v; b has %d of %d files", settleTimeout, complete(), len(want))
				} else {
					time.Sleep(time.Millisecond) // poll interval
				}
			}
		}
		if done {
			t.Logf("wave %d: transfer complete before b could be killed", wave)
			continue
		}
		// Kill at a random moment of the transfer.
		if d := rng.IntN(10); d > 0 {
			time.Sleep(time.Duration(d) * time.Millisecond) // random schedule
		}
		if len(tmpNames()) > 0 {
			midTransfer++
		}
		b.Kill()
		kills++
		got := complete()
		now, old := tmpNames(), 0
		for n := range now {
			if leftover[n] {
				old++
			}
		}
		leftover = now
		t.Logf("kill %d: b had %d of %d files, %d temporary files (%d left over from the run before)", kills, got, len(want), len(now), old)
		b.Start()
	}
	tree := settle(c, fail)
	for rel, h := range want {
		for _, nd := range c.Nodes {
			d, err := os.ReadFile(nd.Path(rel))
			if err != nil || sha256.Sum256(d) != h {
				fail("%s on %s: %d bytes, err %v: not the content written", rel, nd.Name, len(d), err)
			}
		}
	}
	for p := range tree {
		if strings.Contains(p, ".conflict-") {
			fail("spurious conflict copy %s", p)
		}
		if _, ok := want[p]; !ok && p != "big" {
			fail("unexpected entry %s", p)
		}
	}
	if n := tmpNames(); len(n) != 0 {
		fail("b's .tandem/tmp is not empty after settling: %v", n)
	}
	// The test must exercise what it is about; under load a kill may now
	// and then land just after a transfer ended.
	if midTransfer < 3 {
		t.Errorf("%s\nonly %d of %d kills hit a transfer in progress", replay, midTransfer, kills)
	}
	t.Logf("summary: %d MiB in %d files, %d kills (%d mid-transfer), elapsed %v", total>>20, len(want), kills, midTransfer, time.Since(start).Round(time.Millisecond))
}

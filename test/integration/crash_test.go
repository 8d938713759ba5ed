package integration

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/internal/cluster"
	"tandem/internal/crashpoint"
)

// crashAt starts nd with the crash point armed, runs trigger, waits for
// the process to kill itself there, and restarts it normally.
func crashAt(t *testing.T, nd *cluster.Node, point string, trigger func()) {
	t.Helper()
	crashAtNoRestart(t, nd, point, trigger)
	nd.Start()
}

// noTemporaries waits until the folder holds no temporary files.
func noTemporaries(t *testing.T, nd *cluster.Node) {
	t.Helper()
	cluster.WaitFor(t, settle, "temporary files cleaned up on "+nd.Name, func() (bool, string) {
		es, _ := os.ReadDir(filepath.Join(nd.Dir, ".tandem", "tmp"))
		return len(es) == 0, ""
	})
}

func noConflicts(t *testing.T, tr map[string]cluster.Entry) {
	t.Helper()
	if cp := conflictCopies(tr); len(cp) != 0 {
		t.Fatalf("spurious conflict copies after a crash: %v", cp)
	}
}

// afterwardsEditsFlow checks that versions are in order after recovery:
// an edit on either side replaces the file everywhere without conflict.
func afterwardsEditsFlow(t *testing.T, c *cluster.Cluster, rel string) {
	t.Helper()
	for _, nd := range c.Nodes {
		want := "after recovery, edited on " + nd.Name
		nd.Write(rel, want)
		cluster.WaitFor(t, settle, "edit after recovery", func() (bool, string) {
			for _, o := range c.Nodes {
				if s, _ := o.Read(rel); s != want {
					return false, o.Name + " has " + s
				}
			}
			return true, ""
		})
	}
	stem := strings.TrimSuffix(rel, filepath.Ext(rel))
	for _, p := range conflictCopies(c.Converged(settle)) {
		if strings.HasPrefix(p, stem+".conflict-") {
			t.Fatalf("an edit after recovery made a conflict copy %s", p)
		}
	}
}

func TestCrashPoints(t *testing.T) {
	big := randomData(3<<20, 11) // several blocks, so a transfer has a middle
	bigSum := sha256.Sum256(big)
	// conflictRun makes a concurrent edit on each side, the receiver's
	// one older, and starts the receiver with the crash point set.
	conflictRun := func(point string) func(t *testing.T, c *cluster.Cluster) {
		return func(t *testing.T, c *cluster.Cluster) {
			for _, nd := range c.Nodes {
				nd.Kill()
			}
			c.Nodes[0].Write("old.txt", "newer edit on a")
			c.Nodes[1].Write("old.txt", "older edit on b")
			past := time.Now().Add(-time.Hour)
			must(t, os.Chtimes(c.Nodes[1].Path("old.txt"), past, past))
			c.Nodes[0].Start()
			c.Nodes[1].Env = []string{"TANDEM_CRASHPOINT=" + point}
			c.Nodes[1].Start()
			c.Nodes[1].Env = nil
		}
	}
	conflictCheck := func(t *testing.T, c *cluster.Cluster) {
		seen := map[string]bool{}
		for _, s := range contents(t, c.Nodes[0]) {
			seen[s] = true
		}
		if !seen["newer edit on a"] || !seen["older edit on b"] {
			t.Fatalf("an edit was lost across a crash during conflict handling: %v", seen)
		}
	}
	cases := []struct {
		point string
		// victim 0 = the node making the change, 1 = the receiver
		victim int
		// conflict: the crash happens while the receiver resolves a
		// conflict (run and check are conflictRun and conflictCheck)
		conflict bool
		run      func(t *testing.T, c *cluster.Cluster)
		check    func(t *testing.T, c *cluster.Cluster)
	}{
		{crashpoint.ScanBeforeCommit, 0, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "new local file") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "new local file" {
					t.Fatalf("change hashed before the crash did not propagate: %q", s)
				}
			}},
		{crashpoint.ScanAfterCommitBatch, 0, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "committed then crashed") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "committed then crashed" {
					t.Fatalf("got %q", s)
				}
			}},
		{crashpoint.IndexAfterReceive, 1, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "announced") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "announced" {
					t.Fatalf("got %q", s)
				}
			}},
		{crashpoint.FetchMidTransfer, 1, false,
			func(t *testing.T, c *cluster.Cluster) {
				must(t, os.WriteFile(c.Nodes[0].Path("big.bin"), big, 0o644))
			},
			func(t *testing.T, c *cluster.Cluster) {
				d, err := os.ReadFile(c.Nodes[1].Path("big.bin"))
				if err != nil || sha256.Sum256(d) != bigSum {
					t.Fatalf("big.bin incomplete after a crash mid-transfer: %d bytes, %v", len(d), err)
				}
			}},
		{crashpoint.ApplyAfterPending, 1, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "pending") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "pending" {
					t.Fatalf("got %q", s)
				}
			}},
		{crashpoint.ApplyAfterRename, 1, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "renamed, not committed") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "renamed, not committed" {
					t.Fatalf("got %q", s)
				}
			}},
		{crashpoint.DeleteAfterRemove, 1, false,
			func(t *testing.T, c *cluster.Cluster) { must(t, os.Remove(c.Nodes[0].Path("old.txt"))) },
			func(t *testing.T, c *cluster.Cluster) {
				if _, ok := c.Nodes[1].Read("old.txt"); ok {
					t.Fatal("deleted file resurrected after a crash")
				}
			}},
		{point: crashpoint.ConflictAfterCopy, victim: 1, conflict: true},
		// The same conflict, crashing after the winner's pending record is
		// stored (before it is placed) and after it is placed (before the
		// commit): the losing edit must survive as a copy either way.
		{point: crashpoint.ApplyAfterPending, victim: 1, conflict: true},
		{point: crashpoint.ApplyAfterRename, victim: 1, conflict: true},
		{crashpoint.ApplyAfterCommit, 1, false,
			func(t *testing.T, c *cluster.Cluster) { c.Nodes[0].Write("f.txt", "all committed") },
			func(t *testing.T, c *cluster.Cluster) {
				if s, _ := c.Nodes[1].Read("f.txt"); s != "all committed" {
					t.Fatalf("got %q", s)
				}
			}},
	}
	for _, tc := range cases {
		name := tc.point
		if tc.conflict {
			name = "conflict-" + tc.point
			tc.run, tc.check = conflictRun(tc.point), conflictCheck
		}
		t.Run(name, func(t *testing.T) {
			c := cluster.New(t, 2)
			c.Start()
			c.Nodes[0].Write("old.txt", "exists before")
			c.Converged(settle)
			victim := c.Nodes[tc.victim]
			if tc.conflict {
				tc.run(t, c)
				if !victim.WaitExit(settle) {
					t.Fatalf("did not reach %s", tc.point)
				}
				victim.Start()
			} else {
				crashAt(t, victim, tc.point, func() { tc.run(t, c) })
			}
			tr := c.Converged(settle)
			tc.check(t, c)
			if !tc.conflict {
				noConflicts(t, tr)
			}
			for _, nd := range c.Nodes {
				noTemporaries(t, nd)
				if strings.Contains(nd.Log.String(), "panic") {
					t.Errorf("node %s panicked", nd.Name)
				}
			}
			afterwardsEditsFlow(t, c, "old2.txt")
		})
	}
}

// TestChangeBetweenPlaceAndCommitSurvivesCrash: the receiver renames a
// remote version into place and dies before recording it; before it
// restarts, the file is deleted (or overwritten) there. The restarted node
// must treat that as a change that saw the version: the delete propagates
// and the old content does not come back (neither at its name nor as a
// conflict copy), and an overwrite replaces it everywhere.
func TestChangeBetweenPlaceAndCommitSurvivesCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, b *cluster.Node)
		want   string // content of f.txt everywhere, "" for deleted
	}{
		{"delete", func(t *testing.T, b *cluster.Node) { must(t, os.Remove(b.Path("f.txt"))) }, ""},
		{"overwrite", func(t *testing.T, b *cluster.Node) { b.Write("f.txt", "written on b after the crash") }, "written on b after the crash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.New(t, 2)
			a, b := c.Nodes[0], c.Nodes[1]
			c.Start()
			c.Converged(settle)
			crashAtNoRestart(t, b, crashpoint.ApplyAfterRename, func() { a.Write("f.txt", "from a") })
			if s, ok := b.Read("f.txt"); !ok || s != "from a" {
				t.Fatalf("b did not reach the crash point with the file in place: %q %v", s, ok)
			}
			tc.change(t, b)
			b.Start()
			tr := c.Converged(settle)
			for _, nd := range c.Nodes {
				s, ok := nd.Read("f.txt")
				if tc.want == "" && ok {
					t.Fatalf("f.txt came back on %s: %q", nd.Name, s)
				}
				if tc.want != "" && s != tc.want {
					t.Fatalf("f.txt on %s is %q, want %q", nd.Name, s, tc.want)
				}
			}
			noConflicts(t, tr)
		})
	}
}

// crashAtNoRestart is crashAt without the restart.
func crashAtNoRestart(t *testing.T, nd *cluster.Node, point string, trigger func()) {
	t.Helper()
	nd.Kill()
	nd.Env = []string{"TANDEM_CRASHPOINT=" + point}
	nd.Start()
	nd.Env = nil
	trigger()
	if !nd.WaitExit(settle) {
		t.Fatalf("node %s did not reach crash point %s", nd.Name, point)
	}
}

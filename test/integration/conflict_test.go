package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"tandem/internal/cluster"
)

// apart runs fn while no node is running, so that the changes fn makes on
// several disks are concurrent: no node saw the others'. Then it starts
// every node again.
func apart(c *cluster.Cluster, fn func()) {
	for _, nd := range c.Nodes {
		nd.Kill()
	}
	fn()
	c.Start()
}

func setMTime(t *testing.T, p string, at time.Time) {
	t.Helper()
	must(t, os.Chtimes(p, at, at))
}

// contents returns the content of every regular file of the tree whose
// path starts with prefix (conflict copies included), by path.
func contents(t *testing.T, nd *cluster.Node) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr, err := cluster.Tree(nd.Dir)
	must(t, err)
	for p, e := range tr {
		if e.Type == "file" {
			s, _ := nd.Read(p)
			out[p] = s
		}
	}
	return out
}

func conflictCopies(tr map[string]cluster.Entry) []string {
	var out []string
	for p := range tr {
		if strings.Contains(p, ".conflict-") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func TestConflictModifyModify(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := cluster.New(t, n)
			c.Start()
			c.Nodes[0].Write("doc.txt", "base")
			c.Converged(settle)
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			apart(c, func() {
				for i, nd := range c.Nodes {
					nd.Write("doc.txt", "edit by "+nd.Name)
					// The last node's edit is the newest and must win.
					setMTime(t, nd.Path("doc.txt"), base.Add(time.Duration(i)*time.Minute))
				}
			})
			tr := c.Converged(settle)
			winner := c.Nodes[n-1]
			for _, nd := range c.Nodes {
				if s, _ := nd.Read("doc.txt"); s != "edit by "+winner.Name {
					t.Errorf("doc.txt on %s = %q, want the newest edit (by %s)", nd.Name, s, winner.Name)
				}
			}
			copies := conflictCopies(tr)
			if len(copies) != n-1 {
				t.Fatalf("want %d conflict copies, got %v", n-1, copies)
			}
			got := map[string]bool{}
			for _, p := range copies {
				if !strings.HasPrefix(p, "doc.conflict-") || !strings.HasSuffix(p, ".txt") {
					t.Errorf("conflict copy name %q does not follow <name>.conflict-<stamp>-<id><.ext>", p)
				}
				s, _ := c.Nodes[0].Read(p)
				got[s] = true
			}
			for _, nd := range c.Nodes[:n-1] {
				if !got["edit by "+nd.Name] {
					t.Errorf("the edit by %s was lost; copies hold %v", nd.Name, got)
				}
			}
			// `tandem conflicts` lists them with node and time.
			out, err := exec.Command(cluster.Bin, "conflicts", "--home", c.Nodes[0].Home, "--json").Output()
			must(t, err)
			var listed []struct{ Path, Original, Node string }
			must(t, json.Unmarshal(out, &listed))
			if len(listed) != n-1 || listed[0].Original != "doc.txt" || len(listed[0].Node) != 7 {
				t.Errorf("tandem conflicts: %s", out)
			}
		})
	}
}

func TestConflictDeleteVsModify(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := cluster.New(t, n)
			c.Start()
			c.Nodes[0].Write("f.txt", "base")
			c.Converged(settle)
			apart(c, func() {
				must(t, os.Remove(c.Nodes[0].Path("f.txt")))
				c.Nodes[1].Write("f.txt", "edited")
				// Make the delete look newer: it must still lose.
				setMTime(t, c.Nodes[1].Path("f.txt"), time.Now().Add(-24*time.Hour))
			})
			tr := c.Converged(settle)
			for _, nd := range c.Nodes {
				if s, _ := nd.Read("f.txt"); s != "edited" {
					t.Errorf("f.txt on %s = %q: the edit must survive a concurrent delete", nd.Name, s)
				}
			}
			if cp := conflictCopies(tr); len(cp) != 0 {
				t.Errorf("unexpected conflict copies %v", cp)
			}
		})
	}
}

func TestConflictCreateCreate(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	apart(c, func() {
		a.Write("new.txt", "from a")
		b.Write("new.txt", "from b")
	})
	tr := c.Converged(settle)
	all := map[string]bool{}
	for _, s := range contents(t, a) {
		all[s] = true
	}
	if !all["from a"] || !all["from b"] || len(conflictCopies(tr)) != 1 {
		t.Fatalf("create/create: contents %v, copies %v", all, conflictCopies(tr))
	}
}

func TestConflictFileVsDirectory(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	apart(c, func() {
		a.Write("x", "a file")
		b.Write("x/child.txt", "in the dir")
		// The file is newer, the directory must win anyway.
		setMTime(t, b.Path("x"), time.Now().Add(-time.Hour))
	})
	tr := c.Converged(settle)
	if tr["x"].Type != "dir" {
		t.Fatalf("x is a %s, want the directory to keep the name", tr["x"].Type)
	}
	if s, _ := a.Read("x/child.txt"); s != "in the dir" {
		t.Fatalf("x/child.txt on a = %q", s)
	}
	cp := conflictCopies(tr)
	if len(cp) != 1 {
		t.Fatalf("want the file as one conflict copy, got %v", cp)
	}
	if s, _ := a.Read(cp[0]); s != "a file" {
		t.Fatalf("conflict copy holds %q", s)
	}
}

func TestConcurrentDirectoriesMerge(t *testing.T) {
	c := cluster.New(t, 3)
	apart(c, func() {
		for _, nd := range c.Nodes {
			nd.Write("shared/from-"+nd.Name+".txt", nd.Name)
		}
		must(t, os.Chmod(c.Nodes[1].Path("shared"), 0o750))
	})
	tr := c.Converged(settle)
	for _, nd := range c.Nodes {
		if s, _ := c.Nodes[0].Read("shared/from-" + nd.Name + ".txt"); s != nd.Name {
			t.Errorf("child from %s missing after merge", nd.Name)
		}
	}
	if cp := conflictCopies(tr); len(cp) != 0 {
		t.Errorf("directories must merge without conflict copies: %v", cp)
	}
}

func TestIdenticalChangesAreNotConflicts(t *testing.T) {
	c := cluster.New(t, 3)
	c.Start()
	c.Nodes[0].Write("same.txt", "v1")
	c.Converged(settle)
	apart(c, func() {
		for _, nd := range c.Nodes {
			nd.Write("same.txt", "v2 everywhere")
			nd.Write("new-same.txt", "created identically")
			must(t, os.Remove(nd.Path("same.txt")))
			nd.Write("same.txt", "v2 everywhere")
		}
	})
	tr := c.Converged(settle)
	if cp := conflictCopies(tr); len(cp) != 0 {
		t.Fatalf("identical changes produced conflict copies: %v", cp)
	}
}

func TestRenameVersusEdit(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("report.txt", "draft")
	c.Converged(settle)
	apart(c, func() {
		must(t, os.Rename(a.Path("report.txt"), a.Path("final.txt")))
		b.Write("report.txt", "draft, edited on b")
	})
	c.Converged(settle)
	found := false
	for _, s := range contents(t, a) {
		if s == "draft, edited on b" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the edit made concurrently with a rename was lost: %v", contents(t, a))
	}
	if s, _ := b.Read("final.txt"); s != "draft" {
		t.Errorf("the rename did not arrive: final.txt on b = %q", s)
	}
}

func TestConflictOfConflictCopyDoesNotCascade(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	apart(c, func() {
		a.Write("n.txt", "a1")
		b.Write("n.txt", "b1")
	})
	tr := c.Converged(settle)
	cp := conflictCopies(tr)
	if len(cp) != 1 {
		t.Fatalf("copies %v", cp)
	}
	// Both sides now edit the conflict copy concurrently.
	apart(c, func() {
		a.Write(cp[0], "a2")
		b.Write(cp[0], "b2")
	})
	tr = c.Converged(settle)
	for _, p := range conflictCopies(tr) {
		if strings.Count(p, ".conflict-") > 1 {
			t.Errorf("conflict copy of a conflict copy cascaded: %s", p)
		}
	}
	all := contents(t, a)
	seen := map[string]bool{}
	for _, s := range all {
		seen[s] = true
	}
	if !seen["a2"] || !seen["b2"] {
		t.Errorf("edits of the conflict copy lost: %v", all)
	}
}

func TestNewestWinsPolicy(t *testing.T) {
	c := cluster.New(t, 2)
	c.FolderExtra = "conflict = \"newest-wins\"\n"
	for _, nd := range c.Nodes {
		c.WriteConfig(nd, "")
	}
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("p.txt", "base")
	c.Converged(settle)
	apart(c, func() {
		a.Write("p.txt", "older edit on a")
		setMTime(t, a.Path("p.txt"), time.Now().Add(-time.Hour))
		b.Write("p.txt", "newer edit on b")
	})
	tr := c.Converged(settle)
	if cp := conflictCopies(tr); len(cp) != 0 {
		t.Fatalf("newest-wins made copies: %v", cp)
	}
	if s, _ := a.Read("p.txt"); s != "newer edit on b" {
		t.Fatalf("p.txt on a = %q", s)
	}
	// The losing version is in a's trash.
	out, err := exec.Command(cluster.Bin, "trash", "--home", a.Home, "--json").Output()
	must(t, err)
	var entries []struct{ Path, File string }
	must(t, json.Unmarshal(out, &entries))
	found := false
	for _, e := range entries {
		if d, _ := os.ReadFile(e.File); e.Path == "p.txt" && string(d) == "older edit on a" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the losing version is not in the trash: %s", out)
	}
}

func TestTrashKeepsDeletedAndOverwrittenFiles(t *testing.T) {
	c := cluster.New(t, 2)
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("del.txt", "deleted later")
	a.Write("over.txt", "version 1")
	c.Converged(settle)
	must(t, os.Remove(a.Path("del.txt")))
	a.Write("over.txt", "version 2")
	c.Converged(settle)
	kept := map[string]string{}
	cluster.WaitFor(t, settle, "b's trash", func() (bool, string) {
		out, err := exec.Command(cluster.Bin, "trash", "--home", b.Home, "--json").Output()
		if err != nil {
			return false, err.Error()
		}
		var entries []struct{ Path, File string }
		if err := json.Unmarshal(out, &entries); err != nil {
			return false, err.Error()
		}
		for _, e := range entries {
			d, _ := os.ReadFile(e.File)
			kept[e.Path] = string(d)
		}
		return kept["del.txt"] == "deleted later" && kept["over.txt"] == "version 1", string(out)
	})
	if _, err := os.Stat(filepath.Join(a.Dir, ".tandem", "trash")); err == nil {
		t.Error("the node that made the changes itself must not trash anything")
	}
}

func TestTrashOff(t *testing.T) {
	c := cluster.New(t, 2)
	c.FolderExtra = "trash_days = 0\n"
	for _, nd := range c.Nodes {
		c.WriteConfig(nd, "")
	}
	a, b := c.Nodes[0], c.Nodes[1]
	c.Start()
	a.Write("x.txt", "1")
	c.Converged(settle)
	must(t, os.Remove(a.Path("x.txt")))
	c.Converged(settle)
	if _, err := os.Stat(filepath.Join(b.Dir, ".tandem", "trash")); err == nil {
		t.Fatal("trash used although trash_days = 0")
	}
}

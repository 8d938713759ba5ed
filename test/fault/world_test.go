package fault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/cluster"
)

// settleTimeout bounds how long a healed cluster may take to settle.
const settleTimeout = 60 * time.Second

// token is one unique piece of content (a line of a file or a symlink
// target) and what the operations did to it.
type token struct {
	written    bool // an operation put it into the tree
	superseded bool // an operation that read it replaced or deleted it
	touch      int  // operations whose affected content contained it
	hist       []string
}

// world is one randomized run on one cluster.
type world struct {
	t     *testing.T
	c     *cluster.Cluster
	rng   *rand.Rand
	prox  [][]*cluster.Proxy // prox[from][to]
	grave []string           // per node: graveyard outside the folder, same filesystem
	// moved are the trees deleted by moving them to a graveyard, with the
	// tokens they held right after the move.
	moved  []movedTree
	down   []int // per node: step it was killed at, -1 if running
	tokens map[string]*token
	nextID int // tokens and graveyard names
	round  int
	step   int
	log    []string // this round's operations and faults
	start  time.Time

	ops, tried                       map[string]int
	kills, starts, partitions, heals int
	pauses                           int
	conflicts                        map[string]bool // conflict copy paths seen
	maxTree                          int
}

func newWorld(t *testing.T, n int, salt uint64) *world {
	c := cluster.New(t, n)
	w := &world{
		t: t, c: c, rng: rand.New(rand.NewPCG(seed, salt)),
		tokens: map[string]*token{}, ops: map[string]int{}, tried: map[string]int{},
		conflicts: map[string]bool{}, start: time.Now(),
	}
	idx := map[*cluster.Node]int{}
	for i, nd := range c.Nodes {
		idx[nd] = i
		g := filepath.Join(filepath.Dir(nd.Dir), "graveyard-"+nd.Name)
		if err := os.Mkdir(g, 0o755); err != nil {
			t.Fatal(err)
		}
		w.grave = append(w.grave, g)
		w.down = append(w.down, -1)
	}
	w.prox = make([][]*cluster.Proxy, n)
	for i := range n {
		w.prox[i] = make([]*cluster.Proxy, n)
		for j := range n {
			if i != j {
				w.prox[i][j] = cluster.NewProxy(t, c.Nodes[j].Addr)
			}
		}
	}
	c.PeerAddr = func(from, to *cluster.Node) string { return w.prox[idx[from]][idx[to]].Addr }
	for _, nd := range c.Nodes {
		c.WriteConfig(nd, "")
	}
	c.Start()
	return w
}

// replay is the line every failure carries.
func (w *world) replay() string {
	return fmt.Sprintf("seed %d (replay with TANDEM_FAULT_SEED=%d go test -count=1 -v -run '^%s$' ./test/fault/)", seed, seed, w.t.Name())
}

func (w *world) fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("%s\nround %d: %s\n%s", w.replay(), w.round, fmt.Sprintf(format, args...), w.roundLog())
}

func (w *world) roundLog() string {
	return "operations and faults of round " + fmt.Sprint(w.round) + ":\n  " + strings.Join(w.log, "\n  ")
}

// note records an event in the round's log.
func (w *world) note(format string, args ...any) {
	line := fmt.Sprintf("#%d ", w.step) + fmt.Sprintf(format, args...)
	w.log = append(w.log, line)
	for _, nd := range w.c.Nodes { // lines up the nodes' logs with the schedule
		fmt.Fprintf(nd.Log, "==== test r%d%s\n", w.round, line)
	}
}

func (w *world) where() string { return fmt.Sprintf("r%d#%d", w.round, w.step) }

// newToken returns a fresh content token.
func (w *world) newToken() string {
	w.nextID++
	tk := fmt.Sprintf("tok-%d-%d", seed, w.nextID)
	w.tokens[tk] = &token{}
	return tk
}

// short is a token's name in logs.
func short(tk string) string { return "t" + tk[strings.LastIndexByte(tk, '-')+1:] }

func shorts(tks []string) string {
	s := make([]string, len(tks))
	for i, tk := range tks {
		s[i] = short(tk)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func (w *world) tok(tk string) *token {
	k := w.tokens[tk]
	if k == nil { // from another run; keep it visible in reports
		k = &token{}
		w.tokens[tk] = k
	}
	return k
}

func (w *world) written(tk string, nd *cluster.Node, what string) {
	k := w.tok(tk)
	k.written = true
	k.hist = append(k.hist, fmt.Sprintf("%s %s %s: written", w.where(), nd.Name, what))
}

// movedTree is a path a delete moved to a graveyard.
type movedTree struct {
	grave string
	nd    *cluster.Node
	what  string
	seen  map[string]bool
}

// settleGraves accounts for files that a node renamed into a directory
// in the very moment the test moved that directory out of the folder: the
// rename, resolved before the move, lands in the moved tree. For the user
// that file left with the directory they moved away (it is in their
// hands, and the node records the delete as one that saw it), so the
// delete touched it.
// Once the cluster settled nothing more can land; the round's graves are
// then forgotten.
func (w *world) settleGraves() {
	defer func() { w.moved = nil }()
	for _, m := range w.moved {
		var late []string
		for _, tk := range dedup(tokensAt(m.grave)) {
			if !m.seen[tk] {
				late = append(late, tk)
				m.seen[tk] = true
			}
		}
		if len(late) > 0 {
			w.touched(late, m.nd, m.what+" [landed in the moved tree after the move]", true)
		}
	}
}

func (w *world) touched(tks []string, nd *cluster.Node, what string, supersede bool) {
	for _, tk := range tks {
		k := w.tok(tk)
		k.touch++
		e := fmt.Sprintf("%s %s %s: touched", w.where(), nd.Name, what)
		if supersede {
			k.superseded = true
			e += ", superseded"
		}
		k.hist = append(k.hist, e)
	}
}

// ---- faults ----

func (w *world) running() []int {
	var r []int
	for i, d := range w.down {
		if d < 0 {
			r = append(r, i)
		}
	}
	return r
}

func (w *world) kill() {
	r := w.running()
	if len(r) < 2 {
		return
	}
	i := r[w.rng.IntN(len(r))]
	w.c.Nodes[i].Kill()
	w.down[i] = w.step
	w.kills++
	w.note("FAULT kill %s", w.c.Nodes[i].Name)
}

// restart starts a killed node that has been down for at least two
// operations (all of them if all is set).
func (w *world) restart(all bool) {
	var cand []int
	for i, d := range w.down {
		if d >= 0 && (all || w.step-d >= 2) {
			cand = append(cand, i)
		}
	}
	if len(cand) == 0 {
		return
	}
	if !all {
		cand = []int{cand[w.rng.IntN(len(cand))]}
	}
	for _, i := range cand {
		w.c.Nodes[i].Start()
		w.down[i] = -1
		w.starts++
		w.note("FAULT start %s", w.c.Nodes[i].Name)
	}
}

// partition cuts every link between a random non-empty proper subset of
// the nodes and the rest, both directions.
func (w *world) partition() {
	n := len(w.c.Nodes)
	mask := 1 + w.rng.IntN(1<<n-2)
	var in, out []string
	for i := range n {
		if mask&(1<<i) != 0 {
			in = append(in, w.c.Nodes[i].Name)
		} else {
			out = append(out, w.c.Nodes[i].Name)
		}
		for j := range n {
			if i != j && (mask&(1<<i) != 0) != (mask&(1<<j) != 0) {
				w.prox[i][j].Cut()
			}
		}
	}
	w.partitions++
	w.note("FAULT partition {%s} | {%s}", strings.Join(in, ","), strings.Join(out, ","))
}

func (w *world) heal(quiet bool) {
	cut := false
	for i := range w.prox {
		for j := range w.prox[i] {
			if p := w.prox[i][j]; p != nil && p.IsCut() {
				cut = true
				p.Heal()
			}
		}
	}
	if cut || !quiet {
		w.heals++
		w.note("FAULT heal")
	}
}

// ---- settling ----

type status struct {
	Folders []struct {
		ID        string            `json:"id"`
		State     string            `json:"state"`
		Error     string            `json:"error"`
		Needed    int               `json:"needed"`
		ItemError map[string]string `json:"item_errors"`
	} `json:"folders"`
	Peers []struct {
		ID        string            `json:"id"`
		Connected bool              `json:"connected"`
		LastError string            `json:"last_error"`
		Unsent    map[string]uint64 `json:"unsent"`
	} `json:"peers"`
}

// nodeInSync asks one node for its status and explains why it is not in
// sync ("" if it is).
func nodeInSync(nd *cluster.Node, peers int) string {
	out, err := exec.Command(cluster.Bin, "status", "--home", nd.Home, "--json").Output()
	var st status
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		return fmt.Sprintf("%s: status: %v %v: %s", nd.Name, err, jerr, out)
	}
	if len(st.Folders) == 0 {
		return fmt.Sprintf("%s: no folders in its status (%v %s)", nd.Name, err, bytes.TrimSpace(out))
	}
	for _, f := range st.Folders {
		if f.State != "idle" || f.Needed != 0 {
			return fmt.Sprintf("%s: folder %s state %q needed %d error %q failing %v", nd.Name, f.ID, f.State, f.Needed, f.Error, f.ItemError)
		}
	}
	if len(st.Peers) != peers {
		return fmt.Sprintf("%s: %d peers, want %d", nd.Name, len(st.Peers), peers)
	}
	for _, p := range st.Peers {
		if !p.Connected {
			return fmt.Sprintf("%s: peer %s not connected (%s)", nd.Name, p.ID, p.LastError)
		}
		for f, n := range p.Unsent {
			if n != 0 {
				return fmt.Sprintf("%s: peer %s has %d unsent for %s", nd.Name, p.ID, n, f)
			}
		}
	}
	return ""
}

// inSync polls every node once: all report in sync and hold identical
// trees. It returns the first node's tree.
func inSync(c *cluster.Cluster) (map[string]cluster.Entry, string) {
	why := make([]string, len(c.Nodes))
	var wg sync.WaitGroup
	for i, nd := range c.Nodes {
		wg.Go(func() { why[i] = nodeInSync(nd, len(c.Nodes)-1) })
	}
	wg.Wait()
	for _, s := range why {
		if s != "" {
			return nil, s
		}
	}
	first, err := cluster.Tree(c.Nodes[0].Dir)
	if err != nil {
		return nil, err.Error()
	}
	for _, nd := range c.Nodes[1:] {
		other, err := cluster.Tree(nd.Dir)
		if err != nil {
			return nil, err.Error()
		}
		if d := cluster.DiffTrees(first, other); d != "" {
			return nil, fmt.Sprintf("trees differ, %s vs %s: %s", c.Nodes[0].Name, nd.Name, d)
		}
	}
	return first, ""
}

// settle polls until the cluster is in sync with identical trees on two
// consecutive polls ~50 ms apart, and returns the tree. fail reports a
// timeout.
func settle(c *cluster.Cluster, fail func(string, ...any)) map[string]cluster.Entry {
	deadline := time.Now().Add(settleTimeout)
	var prev map[string]cluster.Entry
	for {
		tree, why := inSync(c)
		if why == "" && prev != nil && cluster.DiffTrees(prev, tree) == "" {
			return tree
		}
		prev = tree
		if time.Now().After(deadline) {
			if why == "" {
				why = "tree changed between the last two polls"
			}
			if strings.Contains(why, "status") || strings.Contains(why, "no folders") {
				// A node that does not answer: its stacks tell why.
				for _, nd := range c.Nodes {
					if nodeInSync(nd, len(c.Nodes)-1) != "" {
						nd.DumpGoroutines()
					}
				}
			}
			fail("cluster did not settle within %v: %s", settleTimeout, why)
			return nil
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// ---- checker ----

var (
	tokenRe      = regexp.MustCompile(`tok-\d+-\d+`)
	conflictPart = regexp.MustCompile(`\.conflict-\d{8}-\d{6}-[A-Z2-7]{7}(\.\d+)?`)
)

// validName reports whether base is a name the operations use or a
// conflict copy of one.
func validName(base string) bool {
	plain := conflictPart.ReplaceAllString(base, "")
	for _, n := range dirNames {
		if plain == n && plain == base {
			return true
		}
	}
	for _, n := range fileNames {
		if plain == n {
			return true
		}
	}
	return false
}

// check verifies the promises on the settled tree.
func (w *world) check(tree map[string]cluster.Entry) {
	w.t.Helper()
	var problems []string
	where := map[string][]string{} // token -> paths holding it
	nd := w.c.Nodes[0]
	for rel, e := range tree {
		for _, comp := range strings.Split(rel, "/") {
			if !validName(comp) {
				problems = append(problems, fmt.Sprintf("junk: unexpected name %q (%s)", rel, e.Type))
				break
			}
		}
		if conflictPart.MatchString(rel) {
			w.conflicts[rel] = true
		}
		var text string
		switch e.Type {
		case "file":
			b, err := os.ReadFile(nd.Path(rel))
			if err != nil {
				problems = append(problems, fmt.Sprintf("reading %s: %v", rel, err))
			}
			text = string(b)
		case "symlink":
			text = e.Target
		case "dir":
		default:
			problems = append(problems, fmt.Sprintf("junk: %s of type %s", rel, e.Type))
		}
		for _, tk := range tokenRe.FindAllString(text, -1) {
			where[tk] = append(where[tk], rel)
		}
	}
	w.maxTree = max(w.maxTree, len(tree))
	var bad []string
	ids := make([]string, 0, len(w.tokens))
	for tk := range w.tokens {
		ids = append(ids, tk)
	}
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) < len(ids[j]) || len(ids[i]) == len(ids[j]) && ids[i] < ids[j] })
	for _, tk := range ids {
		k := w.tokens[tk]
		_, present := where[tk]
		switch {
		case k.written && !k.superseded && !present:
			problems = append(problems, fmt.Sprintf("LOST WRITE: %s is in no file or symlink", short(tk)))
			bad = append(bad, tk)
		case k.superseded && k.touch == 1 && present:
			problems = append(problems, fmt.Sprintf("RESURRECTION: %s is back at %v", short(tk), where[tk]))
			bad = append(bad, tk)
		}
	}
	if len(problems) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d violations:\n", len(problems))
	for i, p := range problems {
		if i == 30 {
			fmt.Fprintf(&b, "  ... %d more\n", len(problems)-30)
			break
		}
		fmt.Fprintf(&b, "  %s\n", p)
	}
	for i, tk := range bad {
		if i == 15 {
			break
		}
		fmt.Fprintf(&b, "history of %s (%s):\n    %s\n", short(tk), tk, strings.Join(w.tokens[tk].hist, "\n    "))
	}
	fmt.Fprintf(&b, "final tree (%d entries):\n", len(tree))
	paths := make([]string, 0, len(tree))
	for p := range tree {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		var toks []string
		for tk, ps := range where {
			for _, q := range ps {
				if q == p {
					toks = append(toks, tk)
				}
			}
		}
		sort.Strings(toks)
		fmt.Fprintf(&b, "    %-50s %-7s %o %s\n", p, tree[p].Type, tree[p].Mode, shorts(toks))
	}
	w.fatalf("%s", b.String())
}

// ---- rounds ----

// runRounds plays the rounds and logs the summary.
func (w *world) runRounds(n int) {
	w.t.Helper()
	w.t.Logf("%s: %d rounds on %d nodes", w.replay(), n, len(w.c.Nodes))
	w.log = nil
	settle(w.c, w.fatalf)
	for w.round = 1; w.round <= n; w.round++ {
		w.playRound()
		if w.round%25 == 0 || w.round == n {
			w.t.Logf("round %d done after %v: %d tokens, %d entries in the tree", w.round, time.Since(w.start).Round(time.Millisecond), len(w.tokens), w.maxTree)
		}
	}
	kinds := make([]string, 0, len(w.tried))
	for k := range w.tried {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var ops []string
	total := 0
	for _, k := range kinds {
		ops = append(ops, fmt.Sprintf("%s %d/%d", k, w.ops[k], w.tried[k]))
		total += w.ops[k]
	}
	w.t.Logf("summary: %d rounds on %d nodes, %d ops done (done/tried: %s), %d kills, %d restarts, %d partitions, %d heals, %d pauses, %d conflict copies seen, %d tokens, largest tree %d, elapsed %v, seed %d",
		n, len(w.c.Nodes), total, strings.Join(ops, ", "), w.kills, w.starts, w.partitions, w.heals, w.pauses, len(w.conflicts), len(w.tokens), w.maxTree, time.Since(w.start).Round(time.Millisecond), seed)
}

// playRound runs 8-20 random operations interleaved with faults, heals,
// restarts everything, settles and checks.
func (w *world) playRound() {
	w.t.Helper()
	w.log = w.log[:0]
	nops := 8 + w.rng.IntN(13)
	for w.step = 1; w.step <= nops; w.step++ {
		switch r := w.rng.Float64(); {
		case r < 0.10:
			w.kill()
		case r < 0.17:
			w.restart(false)
		case r < 0.23:
			w.partition()
		case r < 0.28:
			w.heal(false)
		}
		if w.rng.Float64() < 0.35 {
			d := time.Duration(1+w.rng.IntN(30)) * time.Millisecond
			w.pauses++
			w.note("pause %v", d)
			time.Sleep(d) // part of the random schedule: lets watchers act
		}
		r := w.running()
		nd := w.c.Nodes[r[w.rng.IntN(len(r))]]
		w.operate(nd)
	}
	w.step = nops + 1
	w.heal(true)
	w.restart(true)
	w.note("settling")
	tree := settle(w.c, w.fatalf)
	w.settleGraves()
	w.check(tree)
}

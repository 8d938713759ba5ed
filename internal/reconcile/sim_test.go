package reconcile

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/record"
	"tandem/internal/version"
)

// TestMain keeps rapid's failures cheap: unless asked otherwise on the
// command line or in the environment, minimisation stops after two seconds
// and no fail files are written into the source tree.
func TestMain(m *testing.M) {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if _, env := os.LookupEnv("RAPID_SHRINKTIME"); !env && !set["rapid.shrinktime"] {
		_ = flag.Set("rapid.shrinktime", "2s")
	}
	if _, env := os.LookupEnv("RAPID_NOFAILFILE"); !env && !set["rapid.nofailfile"] {
		_ = flag.Set("rapid.nofailfile", "true")
	}
	os.Exit(m.Run())
}

// The simulation below is a reference model of tandem's sync for a single
// path, kept deliberately simple. Each node holds one record (nil = never
// heard of the path). A step is either a local change on a node or the
// delivery of one node's record to another, which the receiver handles
// exactly as a node does: it calls Decide and applies the decision. The
// model tracks, outside the nodes, every content ever written, every
// conflict copy ever made and every delete, and checks the promises
// against that history once the nodes have gossiped to quiescence.

// simIDs are short node IDs shaped like real ones (distinct high bits).
var simIDs = []uint64{0x1a2b3c4d00000001, 0x5e6f708100000002, 0x9abcdef000000003, 0xc0ffee1200000004}

// written is what the model remembers of one content (one write).
type written struct {
	vec  version.Vector // the version it was written with
	by   int            // the node that wrote it
	seen bool           // a later change of content was made on top of it
}

// fataler is what the model needs from *testing.T and *rapid.T.
type fataler interface {
	Fatalf(format string, args ...any)
}

type sim struct {
	t        fataler
	clock    bool // use a clock floor in Update, as the real scanner does
	now      uint64
	ids      []uint64
	nodes    []*record.Record
	contents map[uint64]*written // content ID -> history
	copies   []uint64            // content IDs moved to conflict copies
	deletes  []version.Vector    // versions of every delete made
	next     uint64              // last content ID handed out
	log      []string
}

// contentOf returns the content ID held by a live file or symlink record.
func contentOf(r *record.Record) (uint64, bool) {
	if r == nil || r.Deleted {
		return 0, false
	}
	switch r.Type {
	case record.File:
		return binary.BigEndian.Uint64(r.Blocks[0].Hash[:8]), true
	case record.Symlink:
		c, err := strconv.ParseUint(strings.TrimPrefix(r.Target, "c"), 10, 64)
		if err != nil {
			panic(err)
		}
		return c, true
	}
	return 0, false
}

// clone copies the model state; records are never mutated in place, so
// sharing them is safe.
func (s *sim) clone() *sim {
	c := *s
	c.nodes = slices.Clone(s.nodes)
	c.copies = slices.Clone(s.copies)
	c.deletes = slices.Clone(s.deletes)
	c.log = slices.Clone(s.log)
	c.contents = make(map[uint64]*written, len(s.contents))
	for k, w := range s.contents {
		cw := *w
		c.contents[k] = &cw
	}
	return &c
}

func (s *sim) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

func (s *sim) fail(format string, args ...any) {
	s.t.Fatalf("%s\nhistory:\n  %s\nfinal records:\n%s", fmt.Sprintf(format, args...), strings.Join(s.log, "\n  "), s.dump())
}

func (s *sim) dump() string {
	var b strings.Builder
	for i, r := range s.nodes {
		fmt.Fprintf(&b, "  node %d: %s\n", i, show(r))
	}
	fmt.Fprintf(&b, "  copies: %v\n", s.copies)
	return b.String()
}

func show(r *record.Record) string {
	if r == nil {
		return "<nil>"
	}
	what := r.Type.String()
	if c, ok := contentOf(r); ok {
		what += fmt.Sprintf(" c%d", c)
	}
	if r.Deleted {
		what = "deleted " + what
	}
	return fmt.Sprintf("%s v=%v mtime=%d by=%x mode=%o", what, r.Version, r.MTime, r.ModifiedBy>>32, r.Mode)
}

// change applies a local change on node n: the new record is built on top
// of the node's current one, as a scan would.
func (s *sim) change(n int, kind string, mtime int64, mode uint32) {
	prev := s.nodes[n]
	var pv version.Vector
	if prev != nil {
		pv = prev.Version
	}
	var floor uint64
	if s.clock {
		s.now++ // a clock that ticks between any two local changes
		floor = s.now
	}
	r := &record.Record{Path: "p", MTime: mtime, Mode: mode, ModifiedBy: s.ids[n], Version: pv.Update(s.ids[n], floor)}
	switch kind {
	case "file", "symlink":
		s.next++
		c := s.next
		if kind == "file" {
			var b record.Block
			binary.BigEndian.PutUint64(b.Hash[:], c)
			b.Size = uint32(c)
			r.Type, r.Blocks, r.Size = record.File, []record.Block{b}, int64(b.Size)
		} else {
			r.Type, r.Target = record.Symlink, "c"+strconv.FormatUint(c, 10)
		}
		s.contents[c] = &written{vec: r.Version, by: n}
	case "delete":
		r.Type, r.Deleted, r.Mode = prev.Type, true, 0
		s.deletes = append(s.deletes, r.Version)
	case "mkdir":
		r.Type = record.Dir
	case "chmod":
		// A metadata-only change: same content, new mode and mtime.
		r.Type, r.Blocks, r.Size, r.Target = prev.Type, prev.Blocks, prev.Size, prev.Target
	}
	// A change of content made on top of c saw c, so c may now disappear
	// (its vector dominates c's, since a record holding c carries c's
	// vector or one made on top of it). A chmod keeps c, so it does not.
	if c, ok := contentOf(prev); ok && kind != "chmod" {
		if !r.Version.Dominates(s.contents[c].vec) {
			s.fail("model: change on node %d does not dominate c%d's %v", n, c, s.contents[c].vec)
		}
		s.contents[c].seen = true
	}
	s.nodes[n] = r
	s.logf("node %d %s -> %s", n, kind, show(r))
}

// deliver sends node from's record to node to, which handles it as a node
// would. It reports whether the receiver changed.
func (s *sim) deliver(from, to int) bool {
	if s.nodes[from] == nil {
		return false
	}
	local, remote := s.nodes[to], *s.nodes[from]
	d := Decide(local, &remote)
	if d.Action != Nothing {
		s.logf("node %d <- node %d: %v -> %s", to, from, d.Action, show(&d.Result))
	}
	switch d.Action {
	case Nothing:
		return false
	case Take:
		// Promise 1, step by step: live content is only replaced without a
		// conflict copy by a version that saw it.
		if local != nil && !local.Deleted && !d.Result.Version.Dominates(local.Version) {
			s.fail("node %d: Take of %s replaces live %s it did not see", to, show(&d.Result), show(local))
		}
	case Merge:
		if local == nil || !record.SameContent(local, &d.Result) || !record.SameContent(&remote, &d.Result) {
			s.fail("node %d: Merge of different contents %s / %s -> %s", to, show(local), show(&remote), show(&d.Result))
		}
		if !d.Result.Version.Dominates(local.Version) || !d.Result.Version.Dominates(remote.Version) {
			s.fail("node %d: Merge result %s does not dominate both inputs", to, show(&d.Result))
		}
	case ConflictTake:
		if local == nil || local.Deleted || local.Type == record.Dir {
			s.fail("node %d: ConflictTake with nothing to keep: local %s", to, show(local))
		}
		c, _ := contentOf(local)
		s.copies = append(s.copies, c)
	}
	res := d.Result
	s.nodes[to] = &res
	return true
}

// gossip delivers every node's record to every other one, in the order
// given by order for each round, until a whole round changes nothing.
func (s *sim) gossip(order func(round int, pairs [][2]int) [][2]int) {
	var pairs [][2]int
	for i := range s.nodes {
		for j := range s.nodes {
			if i != j {
				pairs = append(pairs, [2]int{i, j})
			}
		}
	}
	const maxRounds = 20
	for round := range maxRounds {
		changed := false
		for _, p := range order(round, pairs) {
			if s.deliver(p[0], p[1]) {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	s.fail("(iv) gossip did not settle within %d rounds", maxRounds)
}

func (s *sim) check() {
	// (i) Convergence.
	first := s.nodes[0]
	for i, r := range s.nodes[1:] {
		if (first == nil) != (r == nil) {
			s.fail("(i) nodes 0 and %d differ: %s / %s", i+1, show(first), show(r))
		}
		if r == nil {
			continue
		}
		if first.Version.Compare(r.Version) != version.Equal || !record.SameContent(first, r) ||
			!record.SameMeta(first, r, true) || first.ModifiedBy != r.ModifiedBy {
			s.fail("(i) nodes 0 and %d differ: %s / %s", i+1, show(first), show(r))
		}
	}
	if first == nil {
		return
	}

	// (ii) No lost writes: every content is still at the name, or in a
	// conflict copy, or some node changed the path while holding it.
	final, hasFinal := contentOf(first)
	for c, w := range s.contents {
		if (hasFinal && c == final) || slices.Contains(s.copies, c) || w.seen {
			continue
		}
		s.fail("(ii) content c%d (written by node %d with %v) was lost", c, w.by, w.vec)
	}

	// (iii) No resurrection.
	if !first.Deleted {
		for _, dv := range s.deletes {
			if dv.Dominates(first.Version) {
				s.fail("(iii) final %s is live although delete %v saw it", show(first), dv)
			}
		}
	}
}

// simulate runs one random history; clock selects the version counter
// floor: false is Update(id, 0) (a node whose clock does not help),
// true a clock that ticks between local changes (the real scanner's
// Update(id, now) on a well-behaved clock).
func simulate(t *rapid.T, clock bool) {
	n := rapid.SampledFrom([]int{3, 4, 2}).Draw(t, "nodes")
	s := &sim{t: t, clock: clock, ids: simIDs[:n], nodes: make([]*record.Record, n), contents: map[uint64]*written{}}
	steps := rapid.IntRange(50, 150).Draw(t, "steps")
	for range steps {
		if rapid.IntRange(0, 9).Draw(t, "deliver?") < 4 {
			// A local change. Small mtime range so that ties happen.
			node := rapid.IntRange(0, n-1).Draw(t, "node")
			kind := rapid.SampledFrom([]string{"file", "file", "symlink", "delete", "mkdir", "chmod"}).Draw(t, "kind")
			prev := s.nodes[node]
			live := prev != nil && !prev.Deleted
			if ((kind == "delete" || kind == "chmod") && !live) || (kind == "mkdir" && live && prev.Type == record.Dir) {
				continue
			}
			mtime := rapid.Int64Range(1, 3).Draw(t, "mtime")
			mode := rapid.SampledFrom([]uint32{0o644, 0o755}).Draw(t, "mode")
			s.change(node, kind, mtime, mode)
		} else {
			from := rapid.IntRange(0, n-1).Draw(t, "from")
			to := rapid.IntRange(0, n-2).Draw(t, "to")
			if to >= from {
				to++
			}
			s.deliver(from, to)
		}
	}
	// The promises hold whatever the delivery order, so the same state is
	// settled several times, each with its own drawn order.
	for k := range 3 {
		g := s.clone()
		g.logf("-- gossip %d --", k)
		g.gossip(func(round int, pairs [][2]int) [][2]int {
			return rapid.Permutation(pairs).Draw(t, fmt.Sprintf("gossip%d.%d", k, round))
		})
		g.check()
	}
}

// TestSimulateOnePath is the model from the brief: version counters
// advance by one (Update(id, 0)).
func TestSimulateOnePath(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { simulate(t, false) })
}

// TestSimulateOnePathWithClock is the same with a ticking clock as the
// counter floor, so a node never reuses a counter value: what fails here
// fails with a perfect clock.
func TestSimulateOnePathWithClock(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { simulate(t, true) })
}

// The histories below are small counterexamples found with the model,
// replayed step by step. Nodes 0, 1, 2 stand for A, B, C.

// inOrder delivers in the fixed order (0→1, 0→2, 1→0, …).
func inOrder(_ int, pairs [][2]int) [][2]int { return pairs }

func newSim(t *testing.T, nodes int, clock bool) *sim {
	return &sim{t: t, clock: clock, ids: simIDs[:nodes], nodes: make([]*record.Record, nodes), contents: map[uint64]*written{}}
}

// A deletes x; the delete loses to C's concurrent edit y, and taking y
// makes A forget its delete. When B's copy of the old x arrives, it beats
// y on mtime and comes back everywhere, although A's delete saw it.
func TestNoResurrectionAfterEditBeatsDelete(t *testing.T) {
	s := newSim(t, 3, true)
	s.change(0, "file", 2, 0o644) // A writes x
	s.deliver(0, 1)               // B has x
	s.change(0, "delete", 2, 0)   // A deletes x
	s.change(2, "file", 1, 0o644) // C writes y, concurrently, older mtime
	s.deliver(2, 0)               // A: edit beats delete, takes y
	s.deliver(1, 0)               // A: x vs y, x is newer: conflict-take x
	s.gossip(inOrder)
	s.check()
}

// The same through a conflict: A deletes x and recreates z; z loses to
// C's concurrent y, and taking y makes A forget the delete, so the old x
// (which A deleted) wins the next conflict and comes back.
func TestNoResurrectionAfterConflict(t *testing.T) {
	s := newSim(t, 3, true)
	s.change(0, "file", 3, 0o644) // A writes x
	s.deliver(0, 1)               // B has x
	s.change(0, "delete", 3, 0)   // A deletes x
	s.change(0, "file", 1, 0o644) // A writes z
	s.change(2, "file", 2, 0o644) // C writes y, concurrently
	s.deliver(2, 0)               // A: y is newer than z: conflict-take y
	s.deliver(1, 0)               // A: x is newer than y: conflict-take x
	s.gossip(inOrder)
	s.check()
}

// Taking a concurrent version drops the node's own counter, so its next
// change reuses a counter value another version already carries: B's
// delete of C's first write, merged with A's delete, looks as if it saw
// C's second write w, which is then replaced without a conflict copy.
// (With Update(id, now) this needs a clock that did not advance.)
func TestNoLostWriteAfterCounterReuse(t *testing.T) {
	s := newSim(t, 3, false)
	s.change(2, "file", 1, 0o644) // C writes c1 {C:1}
	s.deliver(2, 1)               // B has c1
	s.change(2, "delete", 1, 0)   // C deletes {C:2}
	s.change(0, "file", 1, 0o644) // A writes a {A:1}
	s.deliver(0, 2)               // C: edit beats delete: takes a {A:1}
	s.change(2, "file", 1, 0o644) // C writes w {A:1 C:1}: C:1 again
	s.change(0, "delete", 1, 0)   // A deletes a {A:2}
	s.change(1, "delete", 1, 0)   // B deletes c1 {B:1 C:1}
	s.deliver(0, 1)               // B: both deleted: merge {A:2 B:1 C:1}
	s.deliver(1, 2)               // C: "greater": takes the delete, w is gone
	s.gossip(inOrder)
	s.check()
}

// A merge keeps the winner's metadata with the joined vector, even when
// that metadata belongs to a version its own writer has since replaced.
// A and B independently create the same file (A's mtime newer); C merges
// both and keeps A's mtime. A then sets its mtime back (touch -d, cp -p):
// C merges that too but keeps A's stale mtime, while A and B pick B's. All
// three end with equal vectors, so nothing is exchanged again, and C's
// mtime differs for good.
func TestMergeConverges(t *testing.T) {
	s := newSim(t, 3, true)
	s.change(0, "file", 10, 0o644) // A writes c1, mtime 10
	s.deliver(0, 2)                // C has it
	s.sameBytes(1, 1, 7, 0o644)    // B writes the same bytes, mtime 7
	s.change(0, "chmod", 5, 0o644) // A sets the mtime back to 5
	s.deliver(1, 2)                // C: merge, keeps A's mtime 10
	s.deliver(0, 2)                // C: merge, still keeps mtime 10
	s.gossip(inOrder)
	s.check()
}

// sameBytes makes node n write a file holding the bytes of an earlier
// content c (as when two nodes copy in the same file independently).
func (s *sim) sameBytes(n int, c uint64, mtime int64, mode uint32) {
	prev := s.nodes[n]
	var pv version.Vector
	if prev != nil {
		pv = prev.Version
	}
	var floor uint64
	if s.clock {
		s.now++
		floor = s.now
	}
	var b record.Block
	binary.BigEndian.PutUint64(b.Hash[:], c)
	b.Size = uint32(c)
	r := &record.Record{Path: "p", Type: record.File, Blocks: []record.Block{b}, Size: int64(b.Size),
		MTime: mtime, Mode: mode, ModifiedBy: s.ids[n], Version: pv.Update(s.ids[n], floor)}
	s.nodes[n] = r
	s.logf("node %d writes the bytes of c%d -> %s", n, c, show(r))
}

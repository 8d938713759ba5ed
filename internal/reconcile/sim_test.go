package reconcile

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"reflect"
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
// heard of the path). A step is a local change on a node, the delivery of
// one node's record to another, or a node receiving every other node's
// record at once; the receiver handles them exactly as a node does: it
// calls Decide (or Choose, repeatedly, for several records) and stores
// the decision's result. The
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
	t     fataler
	clock bool // use a clock floor in Update, as the real node does
	now   uint64
	ids   []uint64
	nodes []*record.Record
	// origins[n] is the version of the local change (write, chmod, delete,
	// mkdir) that made the content and metadata node n holds: a resolution
	// adopts the winner's record, so it carries the winner's origin. It is
	// the model's own bookkeeping; the nodes never see it.
	origins  []version.Vector
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
	c.origins = slices.Clone(s.origins)
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
		fmt.Fprintf(&b, "  node %d: %s (made by the change at %v)\n", i, show(r), s.origins[i])
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
	return fmt.Sprintf("%s dot=%x:%d v=%v mtime=%d mode=%o", what, r.ModifiedBy>>32, r.Dot, r.Version, r.MTime, r.Mode)
}

// stamp is the floor a node passes to Update for a new version: 0 without
// a clock, otherwise a clock that ticks between any two new versions
// (local changes and resolutions alike).
func (s *sim) stamp() uint64 {
	if !s.clock {
		return 0
	}
	s.now++
	return s.now
}

// change applies a local change on node n: the new record is built on top
// of the node's current one, as a scan would.
func (s *sim) change(n int, kind string, mtime int64, mode uint32) {
	prev := s.nodes[n]
	var pv version.Vector
	if prev != nil {
		pv = prev.Version
	}
	r := &record.Record{Path: "p", MTime: mtime, Mode: mode}
	*r = r.NewEvent(pv, s.ids[n], s.stamp())
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
	// As the scan records a change: it replaced the live version before
	// it (Prev, Earlier; a chmod restates its content, Merged).
	if prev != nil && !prev.Deleted {
		*r = r.Replacing(prev)
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
	s.origins[n] = r.Version
	s.logf("node %d %s -> %s", n, kind, show(r))
}

// deliver sends node from's record to node to, which handles it as a node
// would. It reports whether the receiver changed.
func (s *sim) deliver(from, to int) bool {
	if s.nodes[from] == nil {
		return false
	}
	return s.apply(to, *s.nodes[from], s.origins[from], fmt.Sprintf("node %d", from))
}

// apply makes node to handle remote (whose origin is origin, sent by
// whom) exactly as a node does, checking each decision on the way. It
// reports whether the node changed.
func (s *sim) apply(to int, remote record.Record, origin version.Vector, whom string) bool {
	local := s.nodes[to]
	var lv version.Vector
	if local != nil {
		lv = local.Version
	}
	d := Decide(local, &remote)
	if d.Action == Nothing {
		if !lv.Dominates(remote.Version) && !Wins(local, &remote) {
			s.fail("node %d: Nothing for %s, whose context %v has events unknown here (%v), and which it does not beat", to, show(&remote), remote.Version, lv)
		}
		s.checkKept(to, local, &remote)
		return false
	}
	// Every action stores the join of both contexts: a node never forgets
	// an event it was told of.
	if d.Result.Version.Compare(lv.Merge(remote.Version)) != version.Equal {
		s.fail("node %d: %v result %s is not the join of %v and %v", to, d.Action, show(&d.Result), lv, remote.Version)
	}
	keeps := local
	switch d.Action {
	case Take, Merge, ConflictTake:
		keeps = &remote
	}
	if d.Result.Dot == 0 && remote.Dot != 0 && (local == nil || local.Dot != 0) {
		// Neither survives: both must have seen the other's event.
		if d.Action != Take || !d.Result.Deleted || d.Result.ModifiedBy != 0 || local == nil || !Saw(&remote, local) || !Saw(local, &remote) {
			s.fail("node %d: %v to an empty tombstone %s from %s and %s", to, d.Action, show(&d.Result), show(local), show(&remote))
		}
		keeps = &d.Result
	}
	if keeps == nil || d.Result.ModifiedBy != keeps.ModifiedBy || d.Result.Dot != keeps.Dot ||
		!record.SameContent(keeps, &d.Result) || !record.SameMeta(keeps, &d.Result, true) {
		s.fail("node %d: %v result %s is not the record it keeps, %s", to, d.Action, show(&d.Result), show(keeps))
	}
	switch d.Action {
	case Take:
		// Promise 1, step by step: live content is only replaced without a
		// conflict copy by a version that saw it.
		if local != nil && !local.Deleted && !Saw(&remote, local) {
			s.fail("node %d: Take of %s replaces live %s it did not see", to, show(&remote), show(local))
		}
	case Merge:
		if local == nil || !record.SameContent(local, &d.Result) {
			s.fail("node %d: Merge of different contents %s / %s", to, show(local), show(&remote))
		}
	case ConflictTake:
		if local == nil || local.Deleted || local.Type == record.Dir {
			s.fail("node %d: ConflictTake with nothing to keep: local %s", to, show(local))
		}
		c, _ := contentOf(local)
		s.copies = append(s.copies, c)
	case Absorb:
		s.checkKept(to, local, &remote)
	}
	res := d.Result
	s.nodes[to] = &res
	switch keeps {
	case &remote:
		s.origins[to] = origin
	case &d.Result:
		s.origins[to] = nil
	}
	s.logf("node %d <- %s: %v -> %s", to, whom, d.Action, show(&res))
	return true
}

// checkKept checks a decision that keeps the local content over remote's:
// a live remote content is only dropped for one that saw it, for a
// concurrent live one that beats it (its own node keeps it as a conflict
// copy), or when a later event of the node that made it saw it.
func (s *sim) checkKept(to int, local, remote *record.Record) {
	if remote.Deleted || local.ModifiedBy == remote.ModifiedBy && local.Dot == remote.Dot {
		return
	}
	if local.Deleted && !Saw(local, remote) {
		s.fail("node %d: keeps its delete %s over live %s it did not see", to, show(local), show(remote))
	}
}

// receive hands node to the records every node in from holds, all at once,
// as a node pulling from several peers does: it acts on what Choose picks
// and asks again with its new record until Choose has nothing left. It
// reports whether the node changed.
func (s *sim) receive(to int, from []int) bool {
	var remotes []record.Record
	var origins []version.Vector
	var whom []int
	for _, f := range from {
		if f != to && s.nodes[f] != nil {
			remotes = append(remotes, *s.nodes[f])
			origins = append(origins, s.origins[f])
			whom = append(whom, f)
		}
	}
	changed := false
	for step := 0; ; step++ {
		local := s.nodes[to]
		i, d, ok := Choose(local, remotes)
		if !ok {
			for j := range remotes {
				if Decide(local, &remotes[j]).Action != Nothing {
					s.fail("node %d: Choose says done, but node %d's %s is still actionable", to, whom[j], show(&remotes[j]))
				}
			}
			return changed
		}
		// Every step retires the chosen record for good (the node ends
		// with it or with a version that saw it), so Choose must be done
		// after one step per record.
		if step == len(remotes) {
			s.fail("(iv) node %d: Choose still acting after %d steps on %d records", to, step, len(remotes))
		}
		if want := Decide(local, &remotes[i]); !reflect.DeepEqual(want, d) {
			s.fail("node %d: Choose's decision %+v differs from Decide's %+v", to, d, want)
		}
		// Choose's promise: if one actionable version saw the events of
		// all the other actionable ones, and none of them saw its event,
		// it is the one picked.
		sameDot := func(a, b *record.Record) bool { return a.ModifiedBy == b.ModifiedBy && a.Dot == b.Dot }
		for j := range remotes {
			if Decide(local, &remotes[j]).Action == Nothing || sameDot(&remotes[j], &remotes[i]) {
				continue
			}
			top := true
			for k := range remotes {
				if Decide(local, &remotes[k]).Action != Nothing && !sameDot(&remotes[j], &remotes[k]) &&
					(!Saw(&remotes[j], &remotes[k]) || Saw(&remotes[k], &remotes[j])) {
					top = false
				}
			}
			if top {
				s.fail("node %d: Choose picked %s although node %d's %s saw every actionable version", to, show(&remotes[i]), whom[j], show(&remotes[j]))
			}
		}
		s.apply(to, remotes[i], origins[i], fmt.Sprintf("node %d (chosen among %v)", whom[i], whom))
		changed = true
	}
}

// maxRounds bounds gossip: every round in which something changes either
// spreads the newest version one hop further or resolves a concurrency
// for good, and a handful of nodes needs far fewer rounds than this.
const maxRounds = 20

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

// gossipChoose is gossip where each node, in the order given for each
// round, receives all the other nodes' records at once and uses Choose.
func (s *sim) gossipChoose(order func(round int, nodes []int) []int) {
	all := make([]int, len(s.nodes))
	for i := range all {
		all[i] = i
	}
	for round := range maxRounds {
		changed := false
		for _, n := range order(round, all) {
			if s.receive(n, all) {
				changed = true
			}
		}
		if !changed {
			return
		}
	}
	s.fail("(iv) gossip with Choose did not settle within %d rounds", maxRounds)
}

func (s *sim) check() {
	// (i) Convergence. Equal versions must also come from the same change:
	// a version is made once, by one node, unless a counter is reused.
	first := s.nodes[0]
	for i, r := range s.nodes[1:] {
		if (first == nil) != (r == nil) {
			s.fail("(i) nodes 0 and %d differ: %s / %s", i+1, show(first), show(r))
		}
		if r == nil {
			continue
		}
		if first.Version.Compare(r.Version) != version.Equal || !record.SameContent(first, r) ||
			!record.SameMeta(first, r, true) || first.ModifiedBy != r.ModifiedBy || first.Dot != r.Dot {
			s.fail("(i) nodes 0 and %d differ: %s / %s", i+1, show(first), show(r))
		}
		if s.origins[0].Compare(s.origins[i+1]) != version.Equal {
			s.fail("(i) nodes 0 and %d hold version %v made from different changes (%v / %v)", i+1, first.Version, s.origins[0], s.origins[i+1])
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

	// (iii) No resurrection: a live record at the end was not seen by any
	// delete. Resolutions merge contexts, so the final context says too
	// little; what counts is the change that made the content and
	// metadata at the name: its dot, and (the model's own bookkeeping)
	// the context it was made with, its origin. A delete that saw that
	// change saw this very content, which a later change (a rewrite, a
	// chmod) would have replaced with a new one.
	if !first.Deleted {
		for _, dv := range s.deletes {
			if dv.Get(first.ModifiedBy) >= first.Dot {
				s.fail("(iii) final %s is live although delete %v saw its event", show(first), dv)
			}
			if dv.Dominates(s.origins[0]) {
				s.fail("(iii) final %s, made by the change at %v, is live although delete %v saw that change", show(first), s.origins[0], dv)
			}
		}
	}
}

// simulate runs one random history; clock selects the version counter
// floor: false is Update(id, 0) (a node whose clock does not help),
// true a clock that ticks between new versions (the real node's
// Update(id, now) on a well-behaved clock).
func simulate(t *rapid.T, clock bool) {
	n := rapid.SampledFrom([]int{3, 4, 2}).Draw(t, "nodes")
	s := &sim{t: t, clock: clock, ids: simIDs[:n], nodes: make([]*record.Record, n),
		origins: make([]version.Vector, n), contents: map[uint64]*written{}}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	steps := rapid.IntRange(50, 150).Draw(t, "steps")
	for range steps {
		switch step := rapid.IntRange(0, 9).Draw(t, "step"); {
		case step < 4:
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
		case step < 8:
			from := rapid.IntRange(0, n-1).Draw(t, "from")
			to := rapid.IntRange(0, n-2).Draw(t, "to")
			if to >= from {
				to++
			}
			s.deliver(from, to)
		default:
			// A node pulls from all its peers at once.
			to := rapid.IntRange(0, n-1).Draw(t, "receiver")
			s.receive(to, rapid.Permutation(all).Draw(t, "senders"))
		}
	}
	// The promises hold whatever the delivery order, so the same state is
	// settled several times, each with its own drawn order: twice one
	// record at a time, once with Choose over all peers' records.
	for k := range 3 {
		g := s.clone()
		g.logf("-- gossip %d --", k)
		if k < 2 {
			g.gossip(func(round int, pairs [][2]int) [][2]int {
				return rapid.Permutation(pairs).Draw(t, fmt.Sprintf("gossip%d.%d", k, round))
			})
		} else {
			g.gossipChoose(func(round int, nodes []int) []int {
				return rapid.Permutation(nodes).Draw(t, fmt.Sprintf("gossip%d.%d", k, round))
			})
		}
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
// replayed step by step. Nodes 0, 1, 2 stand for A, B, C. Each runs with
// both counter floors; the vectors in the comments are those of
// Update(id, 0).

// inOrder delivers in the fixed order (0→1, 0→2, 1→0, …).
func inOrder(_ int, pairs [][2]int) [][2]int { return pairs }

func newSim(t *testing.T, nodes int, clock bool) *sim {
	return &sim{t: t, clock: clock, ids: simIDs[:nodes], nodes: make([]*record.Record, nodes),
		origins: make([]version.Vector, nodes), contents: map[uint64]*written{}}
}

// replay runs history on a fresh model of n nodes with each counter
// floor, then gossips in order and checks the promises.
func replay(t *testing.T, n int, history func(s *sim)) {
	for _, clock := range []bool{false, true} {
		t.Run(fmt.Sprintf("clock=%v", clock), func(t *testing.T) {
			s := newSim(t, n, clock)
			history(s)
			s.gossip(inOrder)
			s.check()
		})
	}
}

// The histories below are counterexamples that earlier designs failed
// (the models found them), replayed step by step. Vectors in comments are
// contexts; a record's dot is written "dot A:1".

// A deletes x; the delete loses to C's concurrent edit y. Had A taken y
// and forgotten its delete, B's copy of the old x would beat y on mtime
// and come back. A holds y (dot C:1) with {A:2 C:1}: it saw x's event
// A:1, so B's x loses.
func TestNoResurrectionAfterEditBeatsDelete(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(0, "file", 2, 0o644) // A writes x {A:1}
		s.deliver(0, 1)               // B has x
		s.change(0, "delete", 2, 0)   // A deletes x {A:2}
		s.change(2, "file", 1, 0o644) // C writes y {C:1}, concurrently, older mtime
		s.deliver(2, 0)               // A: edit beats delete: takes y {A:2 C:1}
		s.deliver(1, 0)               // A: x (dot A:1) was seen: nothing
	})
}

// The same through a conflict: A deletes x and recreates z; z loses to
// C's concurrent y, which A takes with {A:3 C:1}; the old x that B still
// holds was seen.
func TestNoResurrectionAfterConflict(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(0, "file", 3, 0o644) // A writes x {A:1}
		s.deliver(0, 1)               // B has x
		s.change(0, "delete", 3, 0)   // A deletes x {A:2}
		s.change(0, "file", 1, 0o644) // A writes z {A:3}
		s.change(2, "file", 2, 0o644) // C writes y {C:1}, concurrently
		s.deliver(2, 0)               // A: y is newer than z: conflict-take y {A:3 C:1}
		s.deliver(1, 0)               // A: x (dot A:1) was seen: nothing
	})
}

// A node that took a concurrent version must not reuse a counter value:
// C keeps its own C:2 in the merged context, so its next write w is dot
// C:3, which no delete saw: w ends at the name.
func TestNoLostWriteAfterCounterReuse(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(2, "file", 1, 0o644) // C writes c1 {C:1}
		s.deliver(2, 1)               // B has c1
		s.change(2, "delete", 1, 0)   // C deletes {C:2}
		s.change(0, "file", 1, 0o644) // A writes a {A:1}
		s.deliver(0, 2)               // C: edit beats delete: takes a {A:1 C:2}
		s.change(2, "file", 1, 0o644) // C writes w {A:1 C:3}
		s.change(0, "delete", 1, 0)   // A deletes a {A:2}
		s.change(1, "delete", 1, 0)   // B deletes c1 {B:1 C:1}
		s.deliver(0, 1)               // B: concurrent deletes: merge to the winner
		s.deliver(1, 2)               // C: w beats a delete that did not see it
	})
}

// Merges of the same bytes with different metadata: only the loser
// merges, adopting the winner's event, so all three end with one
// metadata.
func TestMergeConverges(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(0, "file", 10, 0o644) // A writes c1, mtime 10 {A:1}
		s.deliver(0, 2)                // C has it
		s.sameBytes(1, 1, 7, 0o644)    // B writes the same bytes, mtime 7 {B:1}
		s.change(0, "chmod", 5, 0o644) // A sets the mtime back to 5 {A:2}
		s.deliver(1, 2)                // C: its mtime 10 wins: nothing
		s.deliver(0, 2)                // C: takes A's mtime 5 {A:2}
	})
}

// A resolution must not look like a new edit: if it did, the winner's own
// node, having meanwhile deleted the winner, would see its delete
// concurrent with the resolution, and the live version would come back.
// The loser adopts the winner's dot instead, so the delete saw it. Three
// ways to adopt, on two nodes:
//
//   - take: B's delete of y loses to A's x: B takes x (dot A:1); A
//     deletes x {A:2}, which saw A:1: B deletes x.
//   - conflict: B's y loses to A's newer x: B keeps y as a copy and takes
//     x (dot A:1); A deletes x.
//   - merge: B wrote the same bytes as x; B's metadata loses: B merges to
//     x's (dot A:1); A deletes x.
func TestNoResurrectionOfAdoptedVersion(t *testing.T) {
	t.Run("take", func(t *testing.T) {
		replay(t, 2, func(s *sim) {
			s.change(0, "file", 1, 0o644) // A writes x {A:1}
			s.change(1, "file", 1, 0o644) // B writes y {B:1}
			s.change(1, "delete", 1, 0)   // B deletes y {B:2}
			s.deliver(0, 1)               // B: x beats the delete: take x {A:1 B:2}
			s.change(0, "delete", 1, 0)   // A deletes x {A:2}
		})
	})
	t.Run("conflict", func(t *testing.T) {
		replay(t, 2, func(s *sim) {
			s.change(0, "file", 2, 0o644) // A writes x {A:1}, mtime 2
			s.change(1, "file", 1, 0o644) // B writes y {B:1}, mtime 1
			s.deliver(0, 1)               // B: x is newer: conflict-take x {A:1 B:1}
			s.change(0, "delete", 1, 0)   // A deletes x {A:2}
		})
	})
	t.Run("merge", func(t *testing.T) {
		replay(t, 2, func(s *sim) {
			s.change(0, "file", 2, 0o644) // A writes x {A:1}, mtime 2
			s.sameBytes(1, 1, 1, 0o644)   // B writes the same bytes {B:1}, mtime 1
			s.deliver(0, 1)               // B: A's metadata wins: merge to x {A:1 B:1}
			s.change(0, "delete", 1, 0)   // A deletes x {A:2}
		})
	})
}

// Two resolutions cross: C deletes x and the delete loses to A's
// concurrent y (C holds y, dot A:1, {A:1 C:2}); meanwhile A's y loses to
// x, which B still holds (A keeps y as a copy and holds x, dot C:1,
// {A:1 C:1}). Each saw the other's event. x must not come back: C's
// delete saw it; y is kept as A's copy. Neither stays at the name.
func TestNoResurrectionAfterCrossedResolutions(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(2, "file", 1, 0o644) // C writes x {C:1}
		s.deliver(2, 1)               // B has x
		s.change(0, "file", 1, 0o644) // A writes y {A:1}
		s.change(2, "delete", 1, 0)   // C deletes x {C:2}
		s.deliver(0, 2)               // C: y beats the delete: take y {A:1 C:2}
		s.deliver(1, 0)               // A: x beats y (same mtime, higher node): conflict-take x {A:1 C:1}
	})
}

// A winner must not take in the loser's context: B's c40 beats A's
// concurrent c41 on mtime; had B merged A's context into c40's record,
// that record would claim to have seen c41, and A would then take c40
// without keeping c41 as a conflict copy. (Found by the model.)
func TestNoLostWriteWhenWinnerAbsorbs(t *testing.T) {
	replay(t, 2, func(s *sim) {
		s.change(1, "file", 3, 0o644) // B writes c1 {B:1}, newer
		s.change(0, "file", 1, 0o644) // A writes c2 {A:1}
		s.deliver(0, 1)               // B: c1 wins: nothing (and no context taken in)
		s.deliver(1, 0)               // A: keeps c2 as a copy, takes c1 {A:1 B:1}
	})
}

// Two records each made obsolete by a later event of the other's node:
// C's dir d (dot C:1) was deleted by C:2, and A's symlink s (dot A:1) was
// replaced by A's file f (A:2), which lost to d and is a conflict copy on
// A. Each record saw the other's event; picking either would resurrect
// it. (Found by the model.)
func TestNoResurrectionWhenBothObsolete(t *testing.T) {
	replay(t, 3, func(s *sim) {
		s.change(0, "symlink", 1, 0o644) // A: s {A:1}
		s.change(2, "mkdir", 1, 0o755)   // C: d {C:1}
		s.deliver(2, 1)                  // B has d
		s.change(2, "delete", 1, 0)      // C deletes d {C:2}
		s.deliver(0, 2)                  // C: s beats the delete: takes s {A:1 C:2}
		s.change(0, "file", 1, 0o644)    // A: f over s {A:2}
		s.deliver(1, 0)                  // A: d beats f: conflict-take d {A:2 C:1}
	})
}

// sameBytes makes node n write a file holding the bytes of an earlier
// content c (as when two nodes copy in the same file independently).
func (s *sim) sameBytes(n int, c uint64, mtime int64, mode uint32) {
	prev := s.nodes[n]
	var pv version.Vector
	if prev != nil {
		pv = prev.Version
	}
	var b record.Block
	binary.BigEndian.PutUint64(b.Hash[:], c)
	b.Size = uint32(c)
	r := &record.Record{Path: "p", Type: record.File, Blocks: []record.Block{b}, Size: int64(b.Size),
		MTime: mtime, Mode: mode}
	*r = r.NewEvent(pv, s.ids[n], s.stamp())
	s.nodes[n] = r
	s.origins[n] = r.Version
	s.logf("node %d writes the bytes of c%d -> %s", n, c, show(r))
}

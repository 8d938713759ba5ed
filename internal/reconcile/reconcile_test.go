package reconcile

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"tandem/internal/record"
	"tandem/internal/version"
)

// Short node IDs shaped like real ones (identity.ID.Short64: the first 8
// bytes of a hash), so that their high 32 bits differ.
const (
	idA uint64 = 0x1a2b3c4d00000001
	idB uint64 = 0x5e6f708100000002
	idC uint64 = 0x9abcdef000000003
)

// vec builds a vector from (id, value) pairs given in any order.
func vec(pairs ...uint64) version.Vector {
	var v version.Vector
	for i := 0; i < len(pairs); i += 2 {
		for range pairs[i+1] {
			v = v.Update(pairs[i], 0)
		}
	}
	return v
}

func blocksOf(content uint64) []record.Block {
	var b record.Block
	binary.BigEndian.PutUint64(b.Hash[:], content)
	b.Size = uint32(content%1000) + 1
	return []record.Block{b}
}

// The constructors below make a record whose dot is (by, v[by]): the
// event of node by that v ends with. Records that adopted another dot
// are made with at.

// file is a live regular file whose bytes are identified by content.
func file(content uint64, mtime int64, by uint64, v version.Vector) *record.Record {
	bl := blocksOf(content)
	return &record.Record{
		Path: "p", Type: record.File, Size: int64(bl[0].Size), Mode: 0o644,
		MTime: mtime, Blocks: bl, Version: v, ModifiedBy: by, Dot: v.Get(by),
	}
}

func dir(mode uint32, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: record.Dir, Mode: mode, MTime: mtime, Version: v, ModifiedBy: by, Dot: v.Get(by)}
}

func symlink(target string, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: record.Symlink, Target: target, MTime: mtime, Version: v, ModifiedBy: by, Dot: v.Get(by)}
}

func deleted(t record.Type, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: t, Deleted: true, MTime: mtime, Version: v, ModifiedBy: by, Dot: v.Get(by)}
}

// with returns a copy of r changed by f.
func with(r *record.Record, f func(*record.Record)) *record.Record {
	c := *r
	f(&c)
	return &c
}

// at returns r with its context replaced by v, its dot kept: r as held by
// a node that has seen more than r's event.
func at(r *record.Record, v version.Vector) *record.Record {
	return with(r, func(c *record.Record) { c.Version = v })
}

// folding returns r with the dot (by, dot) in its Merged: r as adopted by
// the node of that version of the same content.
func folding(r *record.Record, by, dot uint64) *record.Record {
	return with(r, func(c *record.Record) { c.Merged = append(c.Merged, record.Dot{By: by, Dot: dot}) })
}

func TestDecide(t *testing.T) {
	// vA and vB are concurrent; vAB saw both.
	vA, vB, vAB := vec(idA, 1), vec(idB, 1), vec(idA, 1, idB, 1)
	vA2 := vec(idA, 2)

	cases := []struct {
		name          string
		local, remote *record.Record
		want          Decision
	}{
		// Never known here.
		{
			name:   "nil local, remote file",
			remote: file(1, 10, idB, vB),
			want:   Decision{Action: Take, Result: *file(1, 10, idB, vB)},
		},
		{
			name:   "nil local, remote delete",
			remote: deleted(record.File, 10, idB, vB),
			want:   Decision{Action: Take, Result: *deleted(record.File, 10, idB, vB)},
		},
		{
			name:   "nil local, remote dir",
			remote: dir(0o755, 10, idB, vB),
			want:   Decision{Action: Take, Result: *dir(0o755, 10, idB, vB)},
		},

		// The same event.
		{
			name:   "same dot, same context",
			local:  file(1, 10, idA, vA),
			remote: file(1, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "same delete",
			local:  deleted(record.File, 10, idA, vA),
			remote: deleted(record.File, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "same dot, other metadata: the same event, kept",
			local:  file(1, 10, idA, vA),
			remote: with(file(1, 10, idA, vA), func(r *record.Record) { r.Mode = 0o600; r.UID = 7 }),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "same dot, remote saw more: absorb its context",
			local:  file(1, 10, idA, vA),
			remote: at(file(1, 10, idA, vA), vec(idA, 1, idC, 4)),
			want:   Decision{Action: Absorb, Result: *at(file(1, 10, idA, vA), vec(idA, 1, idC, 4))},
		},
		{
			name:   "same dot, local saw more",
			local:  at(file(1, 10, idA, vA), vec(idA, 1, idC, 4)),
			remote: file(1, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},

		// The local record saw the remote one's event.
		{
			name:   "older own version",
			local:  file(2, 10, idA, vA2),
			remote: file(1, 20, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "remote file, deleted here after it",
			local:  deleted(record.File, 10, idA, vec(idA, 2, idB, 1)),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "remote delete, recreated here after it",
			local:  file(2, 10, idA, vec(idA, 2, idB, 1)),
			remote: deleted(record.File, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "remote dir, replaced here by a file after it",
			local:  file(2, 1, idA, vec(idA, 2, idB, 1)),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "older remote content with a context unknown here: absorb",
			local:  file(2, 10, idA, vA2),
			remote: at(file(1, 20, idA, vA), vec(idA, 1, idC, 3)),
			want:   Decision{Action: Absorb, Result: *at(file(2, 10, idA, vA2), vec(idA, 2, idC, 3))},
		},

		// The remote record saw the local one's event.
		{
			name:   "newer content",
			local:  file(1, 10, idA, vA),
			remote: file(2, 5, idB, vAB), // an older mtime does not matter
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "newer metadata-only change",
			local:  file(1, 10, idA, vA),
			remote: with(file(1, 10, idB, vAB), func(r *record.Record) { r.Mode = 0o600 }),
			want:   Decision{Action: Take, Result: *with(file(1, 10, idB, vAB), func(r *record.Record) { r.Mode = 0o600 })},
		},
		{
			name:   "delete that saw the file",
			local:  file(1, 10, idA, vA),
			remote: deleted(record.File, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *deleted(record.File, 5, idB, vAB)},
		},
		{
			name:   "delete that saw the dir",
			local:  dir(0o755, 10, idA, vA),
			remote: deleted(record.Dir, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *deleted(record.Dir, 5, idB, vAB)},
		},
		{
			name:   "recreate after delete",
			local:  deleted(record.File, 10, idA, vA),
			remote: file(2, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "file to dir",
			local:  file(1, 10, idA, vA),
			remote: dir(0o700, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *dir(0o700, 5, idB, vAB)},
		},
		{
			name:   "dir to file",
			local:  dir(0o700, 10, idA, vA),
			remote: file(2, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "file to symlink",
			local:  file(1, 10, idA, vA),
			remote: symlink("t", 5, idB, vAB),
			want:   Decision{Action: Take, Result: *symlink("t", 5, idB, vAB)},
		},
		{
			name:   "newer own version",
			local:  file(1, 10, idA, vA),
			remote: file(2, 1, idA, vA2),
			want:   Decision{Action: Take, Result: *file(2, 1, idA, vA2)},
		},
		{
			name:   "newer content, local context has more: merged",
			local:  at(file(1, 10, idA, vA), vec(idA, 1, idC, 2)),
			remote: file(2, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *at(file(2, 5, idB, vAB), vec(idA, 1, idB, 1, idC, 2))},
		},
		{
			// What only dots can tell: the remote adopted B's version
			// (dot B:1) after a conflict it resolved, so its context saw A's
			// file; a vector comparison alone would call them concurrent
			// only if B's context were compared, not the content's event.
			name:   "remote adopted a version that saw the local one",
			local:  file(1, 10, idA, vA),
			remote: at(file(2, 5, idB, vAB), vec(idA, 1, idB, 1, idC, 1)),
			want:   Decision{Action: Take, Result: *at(file(2, 5, idB, vAB), vec(idA, 1, idB, 1, idC, 1))},
		},

		// Each saw the other's event: two nodes resolved a conflict
		// differently, then one of them changed the path again. Here C
		// wrote x (C:1); A's concurrent y (A:1) lost to x, so A keeps y as a
		// conflict copy and holds x with {A:1 C:1}; meanwhile C deleted x
		// (C:2), and the delete lost to y, so C holds y with {A:1 C:2}.
		// x was deleted by an event that saw it, y is kept as a copy on A:
		// neither stays at the name, and no new event is made.
		{
			name:   "each saw the other: an empty tombstone",
			local:  at(file(1, 10, idC, vec(idC, 1)), vec(idA, 1, idC, 1)),
			remote: at(file(2, 20, idA, vA), vec(idA, 1, idC, 2)),
			want: Decision{Action: Take, Result: record.Record{Path: "p", Type: record.File, Deleted: true,
				MTime: 20, Version: vec(idA, 1, idC, 2)}},
		},
		{
			name:   "each saw the other, mirrored",
			local:  at(file(2, 20, idA, vA), vec(idA, 1, idC, 2)),
			remote: at(file(1, 10, idC, vec(idC, 1)), vec(idA, 1, idC, 1)),
			want: Decision{Action: Take, Result: record.Record{Path: "p", Type: record.File, Deleted: true,
				MTime: 20, Version: vec(idA, 1, idC, 2)}},
		},
		{
			name:   "an empty tombstone meets an event it saw",
			local:  &record.Record{Path: "p", Deleted: true, Version: vec(idA, 1, idC, 2)},
			remote: file(2, 20, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "an empty tombstone meets an event it did not see",
			local:  &record.Record{Path: "p", Deleted: true, Version: vec(idA, 1, idC, 2)},
			remote: file(3, 5, idB, vec(idA, 1, idB, 1)),
			want:   Decision{Action: Take, Result: *at(file(3, 5, idB, vec(idA, 1, idB, 1)), vec(idA, 1, idB, 1, idC, 2))},
		},
		{
			name:   "a record meets an empty tombstone that saw it",
			local:  file(2, 20, idA, vA),
			remote: &record.Record{Path: "p", Deleted: true, Version: vec(idA, 1, idC, 2)},
			want:   Decision{Action: Take, Result: record.Record{Path: "p", Deleted: true, Version: vec(idA, 1, idC, 2)}},
		},
		{
			name:   "a record meets an empty tombstone that did not see it",
			local:  file(3, 5, idB, vec(idA, 1, idB, 1)),
			remote: &record.Record{Path: "p", Deleted: true, Version: vec(idA, 1, idC, 2)},
			want:   Decision{Action: Absorb, Result: *at(file(3, 5, idB, vec(idA, 1, idB, 1)), vec(idA, 1, idB, 1, idC, 2))},
		},

		// Concurrent, same content: the loser adopts the winner's event
		// (Merge); the winner does nothing until that comes back.
		{
			name:   "concurrent same file, remote newer metadata wins",
			local:  with(file(1, 10, idA, vA), func(r *record.Record) { r.Mode = 0o600 }),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *folding(at(file(1, 20, idB, vB), vAB), idA, 1)},
		},
		{
			name:   "concurrent same file, local newer metadata wins",
			local:  with(file(1, 30, idA, vA), func(r *record.Record) { r.Mode = 0o600 }),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent same symlink",
			local:  symlink("t", 10, idA, vA),
			remote: symlink("t", 20, idB, vB),
			want:   Decision{Action: Merge, Result: *folding(at(symlink("t", 20, idB, vB), vAB), idA, 1)},
		},
		{
			name:   "concurrent deletes",
			local:  deleted(record.File, 10, idA, vA),
			remote: deleted(record.File, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *at(deleted(record.File, 20, idB, vB), vAB)},
		},
		{
			name:   "concurrent deletes of different former types, remote newer",
			local:  deleted(record.Dir, 20, idB, vB),
			remote: deleted(record.File, 30, idA, vA),
			want:   Decision{Action: Merge, Result: *at(deleted(record.File, 30, idA, vA), vAB)},
		},
		{
			name:   "concurrent dirs, different modes, remote newer",
			local:  dir(0o700, 10, idA, vA),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *folding(at(dir(0o755, 20, idB, vB), vAB), idA, 1)},
		},
		{
			name:   "concurrent dirs, same mtime, higher node wins (remote)",
			local:  dir(0o700, 10, idA, vA),
			remote: dir(0o755, 10, idB, vB),
			want:   Decision{Action: Merge, Result: *folding(at(dir(0o755, 10, idB, vB), vAB), idA, 1)},
		},
		{
			name:   "concurrent dirs, same mtime, higher node wins (local)",
			local:  dir(0o700, 10, idB, vB),
			remote: dir(0o755, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},

		// Concurrent delete and edit: the edit wins, whatever the mtimes.
		{
			name:   "concurrent local delete, remote edit",
			local:  deleted(record.File, 30, idA, vA2),
			remote: file(2, 20, idB, vAB),
			want:   Decision{Action: Take, Result: *at(file(2, 20, idB, vAB), vec(idA, 2, idB, 1))},
		},
		{
			name:   "concurrent local edit, remote delete",
			local:  file(2, 20, idB, vAB),
			remote: deleted(record.File, 30, idA, vA2),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent local delete, remote dir",
			local:  deleted(record.File, 30, idA, vA),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Take, Result: *at(dir(0o755, 20, idB, vB), vAB)},
		},
		{
			name:   "concurrent local delete, remote symlink",
			local:  deleted(record.Symlink, 30, idA, vA),
			remote: symlink("t", 20, idB, vB),
			want:   Decision{Action: Take, Result: *at(symlink("t", 20, idB, vB), vAB)},
		},

		// Concurrent contents: newer mtime, then higher node. The loser
		// keeps its content as a conflict copy.
		{
			name:   "concurrent modify, remote newer",
			local:  file(1, 10, idB, vB),
			remote: file(2, 20, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *at(file(2, 20, idA, vA), vAB)},
		},
		{
			name:   "concurrent modify, local newer",
			local:  file(1, 20, idA, vA),
			remote: file(2, 10, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent modify, same mtime, remote higher node",
			local:  file(1, 10, idA, vA),
			remote: file(2, 10, idB, vB),
			want:   Decision{Action: ConflictTake, Result: *at(file(2, 10, idB, vB), vAB)},
		},
		{
			name:   "concurrent modify after a common base",
			local:  file(2, 10, idA, vec(idA, 2, idC, 1)),
			remote: file(3, 11, idB, vec(idA, 1, idB, 1, idC, 1)),
			want:   Decision{Action: ConflictTake, Result: *at(file(3, 11, idB, vec(idB, 1)), vec(idA, 2, idB, 1, idC, 1))},
		},
		{
			name:   "concurrent local file, remote dir (older): the dir keeps the name",
			local:  file(1, 30, idB, vB),
			remote: dir(0o755, 10, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *at(dir(0o755, 10, idA, vA), vAB)},
		},
		{
			name:   "concurrent local dir, remote file (newer)",
			local:  dir(0o755, 10, idA, vA),
			remote: file(1, 30, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent local symlink, remote dir",
			local:  symlink("t", 30, idB, vB),
			remote: dir(0o755, 10, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *at(dir(0o755, 10, idA, vA), vAB)},
		},
		{
			name:   "concurrent symlinks, different targets",
			local:  symlink("t1", 10, idA, vA),
			remote: symlink("t2", 10, idB, vB),
			want:   Decision{Action: ConflictTake, Result: *at(symlink("t2", 10, idB, vB), vAB)},
		},

		// A reused dot (a node that lost its index): different contents
		// under one dot are treated as concurrent, decided by content.
		{
			name:   "reused dot, different contents",
			local:  file(1, 10, idA, vA),
			remote: file(2, 10, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *file(2, 10, idA, vA)},
		},
		{
			name:   "reused dot, different contents, mirrored",
			local:  file(2, 10, idA, vA),
			remote: file(1, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var local *record.Record
			if tc.local != nil {
				c := *tc.local
				local = &c
			}
			remote := *tc.remote
			got := Decide(local, &remote)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			// Decide is pure: it must not change its arguments.
			if tc.local != nil {
				if diff := cmp.Diff(*tc.local, *local); diff != "" {
					t.Errorf("Decide changed local (-before +after):\n%s", diff)
				}
			}
			if diff := cmp.Diff(*tc.remote, remote); diff != "" {
				t.Errorf("Decide changed remote (-before +after):\n%s", diff)
			}
			// Records with one dot and other metadata are the same event,
			// seen through different filesystems: each node keeps its own.
			sameEvent := tc.local != nil && tc.local.ModifiedBy == tc.remote.ModifiedBy && tc.local.Dot == tc.remote.Dot &&
				record.SameContent(tc.local, tc.remote)
			if tc.local != nil && !sameEvent {
				checkExchange(t, tc.local, tc.remote)
			}
		})
	}
}

// after returns the record a node holding local ends with once it has
// handled remote.
func after(local, remote *record.Record) *record.Record {
	d := Decide(local, remote)
	if d.Action == Nothing {
		return local
	}
	return &d.Result
}

// exchange lets two nodes holding a and b send each other their records
// until neither changes (at most a few rounds).
func exchange(a, b *record.Record) (*record.Record, *record.Record) {
	for range 4 {
		a2, b2 := after(a, b), after(b, a)
		if cmp.Equal(a2, a) && cmp.Equal(b2, b) {
			break
		}
		a, b = a2, b2
	}
	return a, b
}

// checkExchange checks a pair from both nodes' points of view: once they
// have exchanged records until quiet, both hold the same record (same
// event, content, metadata and context), and handling either original
// record again changes nothing.
func checkExchange(t *testing.T, a, b *record.Record) {
	t.Helper()
	ab, ba := exchange(a, b)
	if diff := cmp.Diff(ab, ba, cmpopts.IgnoreFields(record.Record{}, "Type", "MTime")); diff != "" ||
		!record.SameContent(ab, ba) || !record.SameMeta(ab, ba, true) {
		t.Fatalf("the two sides end differently (-a +b):\n%s", diff)
	}
	if !ab.Version.Dominates(a.Version) || !ab.Version.Dominates(b.Version) {
		t.Errorf("result context %v lost events of %v or %v", ab.Version, a.Version, b.Version)
	}
	for _, d := range []Decision{Decide(ab, a), Decide(ab, b)} {
		if d.Action != Nothing {
			t.Errorf("handling an old record again: %v, want nothing", d.Action)
		}
	}
}

// TestDecideTies covers the last tie breaks: same mtime and same node, by
// event counter, then by content for a reused dot. Exactly one side must
// win, or the two nodes would swap contents forever or both keep theirs.
func TestDecideTies(t *testing.T) {
	pairs := []struct {
		name string
		a, b *record.Record
	}{
		{"same node, different counters", file(1, 10, idA, vec(idA, 2, idC, 1)), at(file(2, 10, idA, vec(idA, 1)), vec(idA, 1, idB, 1))},
		{"same content, different metadata", file(1, 10, idA, vec(idA, 2, idC, 1)), at(with(file(1, 10, idA, vec(idA, 1)), func(r *record.Record) { r.Mode = 0o600 }), vec(idA, 1, idB, 1))},
		{"dirs", dir(0o700, 10, idA, vec(idA, 2, idC, 1)), at(dir(0o755, 10, idA, vec(idA, 1)), vec(idA, 1, idB, 1))},
		{"deletes of different types", deleted(record.File, 10, idA, vec(idA, 2, idC, 1)), at(deleted(record.Dir, 10, idA, vec(idA, 1)), vec(idA, 1, idB, 1))},
		{"reused dot, files", file(1, 10, idA, vec(idA, 1)), at(file(2, 10, idA, vec(idA, 1)), vec(idA, 1, idB, 1))},
		{"reused dot, file and symlink", file(1, 10, idA, vec(idA, 1)), symlink("t", 10, idA, vec(idA, 1))},
		{"reused dot, symlinks", symlink("u", 10, idA, vec(idA, 1)), symlink("t", 10, idA, vec(idA, 1))},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if wab, wba := Wins(p.a, p.b), Wins(p.b, p.a); wab == wba {
				t.Fatalf("want exactly one winner, Wins(a, b) = Wins(b, a) = %v", wab)
			}
			checkExchange(t, p.a, p.b)
		})
	}

	// Wins is a strict order on distinct records: for any two exactly one
	// wins, whichever is local, and the exchange converges.
	rapid.Check(t, func(t *rapid.T) {
		ids := []uint64{idA, idB, idC}
		gen := func(label string) *record.Record {
			by := rapid.SampledFrom(ids).Draw(t, label+".by")
			dot := rapid.Uint64Range(1, 2).Draw(t, label+".dot")
			v := version.Vector{}
			for _, id := range ids {
				n := rapid.Uint64Range(0, 2).Draw(t, label+".count")
				if id == by {
					n = max(n, dot)
				}
				for range n {
					v = v.Update(id, 0)
				}
			}
			mt := rapid.Int64Range(1, 2).Draw(t, label+".mtime")
			var r *record.Record
			switch rapid.IntRange(0, 4).Draw(t, label+".kind") {
			case 0:
				r = file(rapid.Uint64Range(1, 2).Draw(t, label+".content"), mt, by, v)
			case 1:
				r = symlink(rapid.SampledFrom([]string{"t", "u"}).Draw(t, label+".target"), mt, by, v)
			case 2:
				r = dir(rapid.SampledFrom([]uint32{0o700, 0o755}).Draw(t, label+".mode"), mt, by, v)
			case 3:
				r = deleted(record.File, mt, by, v)
			default:
				r = deleted(record.Dir, mt, by, v)
			}
			r.Dot = dot
			return r
		}
		a, b := gen("a"), gen("b")
		if a.ModifiedBy != b.ModifiedBy || a.Dot != b.Dot || !record.SameContent(a, b) {
			if Wins(a, b) == Wins(b, a) {
				t.Fatalf("Wins(a, b) = Wins(b, a) = %v for %+v / %+v", Wins(a, b), *a, *b)
			}
		}
		ab, ba := exchange(a, b)
		if !record.SameContent(ab, ba) || ab.ModifiedBy != ba.ModifiedBy || ab.Dot != ba.Dot ||
			ab.Version.Compare(ba.Version) != version.Equal {
			t.Fatalf("the two sides end differently:\n%+v\n%+v\nfrom %+v / %+v", *ab, *ba, *a, *b)
		}
	})
}

// TestDecideSymmetric checks, for pairs of concurrent records, that both
// nodes end with the winner's record after each handled the other's: the
// pairwise form of convergence, independent of who receives first.
func TestDecideSymmetric(t *testing.T) {
	vA, vB := vec(idA, 1), vec(idB, 1)
	mk := []func(v version.Vector, by uint64, mt int64) *record.Record{
		func(v version.Vector, by uint64, mt int64) *record.Record { return file(1, mt, by, v) },
		func(v version.Vector, by uint64, mt int64) *record.Record { return file(2, mt, by, v) },
		func(v version.Vector, by uint64, mt int64) *record.Record { return symlink("t", mt, by, v) },
		func(v version.Vector, by uint64, mt int64) *record.Record { return dir(0o700, mt, by, v) },
		func(v version.Vector, by uint64, mt int64) *record.Record { return dir(0o755, mt, by, v) },
		func(v version.Vector, by uint64, mt int64) *record.Record {
			return deleted(record.File, mt, by, v)
		},
		func(v version.Vector, by uint64, mt int64) *record.Record {
			return deleted(record.Dir, mt, by, v)
		},
	}
	for i, fa := range mk {
		for j, fb := range mk {
			for _, mts := range [][2]int64{{10, 10}, {10, 20}, {20, 10}} {
				a, b := fa(vA, idA, mts[0]), fb(vB, idB, mts[1])
				n1, n2 := exchange(a, b)
				w := a
				if Wins(b, a) {
					w = b
				}
				want := *w
				want.Version = vA.Merge(vB)
				if !a.Deleted && !b.Deleted && record.SameContent(a, b) {
					// The loser's version lives on in the winner's record.
					l := a
					if w == a {
						l = b
					}
					want.Merged = []record.Dot{{By: l.ModifiedBy, Dot: l.Dot}}
				}
				if diff := cmp.Diff(&want, n1); diff != "" {
					t.Errorf("kinds %d/%d mtimes %v: node 1 does not hold the winner (-want +got):\n%s", i, j, mts, diff)
				}
				if diff := cmp.Diff(&want, n2); diff != "" {
					t.Errorf("kinds %d/%d mtimes %v: node 2 does not hold the winner (-want +got):\n%s", i, j, mts, diff)
				}
				// A live record beats a delete it did not see.
				if a.Deleted != b.Deleted && want.Deleted {
					t.Errorf("kinds %d/%d: a delete beat a concurrent live record", i, j)
				}
			}
		}
	}
}

// Nodes b and c both resolved one conflict and each kept the loser (c's
// version 5 of f) as a copy under the same name: two events, one content.
// A change of c's copy saw the content of b's too, so b takes the change
// (and c keeps it when b's copy arrives) instead of keeping b's copy as a
// conflict copy of a content c's user already replaced.
func TestChangeOfOneCopyCoversTheOther(t *testing.T) {
	const name = "f.conflict-20260101-000000-C"
	copyOf := func(by uint64, dot uint64) record.Record {
		return record.Record{Path: name, Type: record.File, Size: 7, Blocks: blocksOf(5), MTime: 10,
			Version: vec(by, dot), ModifiedBy: by, Dot: dot, CopyOf: "f", CopyBy: idC, CopyDot: 5}
	}
	bCopy, cCopy := copyOf(idB, 1), copyOf(idC, 1)
	edit := record.Record{Path: name, Type: record.File, Size: 8, Blocks: blocksOf(6), MTime: 5,
		Version: vec(idC, 2), ModifiedBy: idC, Dot: 2}.Replacing(&cCopy)
	edit.Version, edit.ModifiedBy, edit.Dot = vec(idC, 2), idC, 2
	if d := Decide(&bCopy, &edit); d.Action != Take || d.Result.Dot != 2 || !d.Result.Version.Dominates(bCopy.Version) {
		t.Fatalf("b with its copy, c's edit arrives: %v %+v", d.Action, d.Result)
	}
	if d := Decide(&edit, &bCopy); d.Action != Absorb || d.Result.Dot != 2 {
		t.Fatalf("c with its edit, b's copy arrives: %v %+v", d.Action, d.Result)
	}
	// A copy of another version, or one changed by its node, stays a
	// conflict.
	other := bCopy
	other.CopyDot = 4
	if d := Decide(&other, &edit); d.Action != ConflictTake && d.Action != Nothing {
		t.Fatalf("copy of another version: %v", d.Action)
	}
	changed := bCopy
	changed.CopyOf, changed.CopyBy, changed.CopyDot = "", 0, 0
	if d := Decide(&changed, &edit); d.Action == Take {
		t.Fatalf("a changed copy was replaced by a change that never saw it")
	}
}

// A delete that saw b's version loses the name to c's concurrent version:
// the version it deleted must stay deleted. The record the deleting node
// adopts carries the deleted dot on, a conflict copy of it (made by b
// before it heard of the delete) learns from it that a change saw it, and
// the winner's node, holding the same event without it, absorbs it once.
func TestLosingDeleteKeepsWhatItDeleted(t *testing.T) {
	bVer := file(1, 10, idB, vec(idB, 1)) // b's version, which a saw
	aDel := record.Record{Path: "p", Type: record.File, Deleted: true, MTime: 20}.
		Replacing(bVer).NewEvent(bVer.Version, idA, 0)
	cOld := file(2, 5, idC, vec(idC, 1))
	cNew := record.Record{Path: "p", Type: record.File, Size: 9, Blocks: blocksOf(3), MTime: 30}.
		Replacing(cOld).NewEvent(cOld.Version, idC, 0) // concurrent with both
	d := Decide(&aDel, &cNew)
	if d.Action != Take || d.Result.Dot != cNew.Dot || d.Result.ModifiedBy != idC {
		t.Fatalf("a's delete against c's concurrent version: %v %+v", d.Action, d.Result)
	}
	taken := d.Result
	cp := record.Record{Path: "p.conflict-x", Type: record.File, CopyOf: "p", CopyBy: idB, CopyDot: bVer.Dot}
	if !cp.CopyReplacedBy(&taken) {
		t.Errorf("a copy of the version a deleted does not learn of it from a's adopted record %+v", taken)
	}
	// c holds its own record without what a learnt: it absorbs it, once.
	d = Decide(&cNew, &taken)
	if d.Action != Absorb || !record.SameDots(d.Result.Earlier, taken.Earlier) {
		t.Fatalf("c, a's adopted record arrives: %v %+v", d.Action, d.Result)
	}
	if again := Decide(&d.Result, &taken); again.Action != Nothing {
		t.Errorf("c absorbs the same record again: %v", again.Action)
	}
	if back := Decide(&taken, &d.Result); back.Action != Nothing {
		t.Errorf("a, c's absorbed record arrives: %v", back.Action)
	}
	// The same when c's version replaced nothing (a new file, no Prev):
	// its Earlier alone tells.
	fresh := file(4, 30, idC, vec(idC, 1))
	if d := Decide(&aDel, fresh); d.Action != Take || !cp.CopyReplacedBy(&d.Result) {
		t.Errorf("against a new file of c: %v, and the copy does not learn of the delete from %+v", d.Action, d.Result)
	}
	// A copy of a version nobody deleted stays.
	other := cp
	other.CopyDot = bVer.Dot + 7
	if other.CopyReplacedBy(&taken) {
		t.Errorf("a copy of another version counts as deleted")
	}
}

// A conflict lost on two nodes with two versions of the same bytes: b's
// version, then b's chmod of it (which replaced it). c, which had the
// first, keeps it as a copy; b keeps the second under the same name. The
// two copy records meet: the same content, so they merge into one that
// names one of the versions. Neither node may then take the merged copy
// for replaced by the chmod: it is the only place the chmod's version is
// kept (a fault run lost it so: c deleted "its" copy, and the delete, whose
// context held the merged record's dot, deleted b's too).
func TestMergedCopiesOfAVersionAndItsChmod(t *testing.T) {
	v1 := file(1, 10, idB, vec(idB, 141))
	chmod := record.Record{Path: "p", Type: record.File, Size: v1.Size, Blocks: v1.Blocks, Mode: 0o640, MTime: 10}.
		Replacing(v1).NewEvent(v1.Version, idB, 161)
	copyOf := func(kept *record.Record, by, dot uint64) *record.Record {
		return &record.Record{Path: "p.conflict-x", Type: record.File, Size: kept.Size, Blocks: kept.Blocks, Mode: kept.Mode, MTime: kept.MTime,
			Version: vec(by, dot), ModifiedBy: by, Dot: dot,
			CopyOf: "p", CopyBy: kept.ModifiedBy, CopyDot: kept.Dot, CopyPrevBy: kept.PrevBy, CopyPrevDot: kept.PrevDot, CopyEarlier: kept.Earlier}
	}
	onC, onB := copyOf(v1, idC, 201), copyOf(&chmod, idB, 216)
	for _, c := range []struct {
		name          string
		local, remote *record.Record
	}{{"b hears of c's copy", onB, onC}, {"c hears of b's copy", onC, onB}} {
		d := Decide(c.local, c.remote)
		res := *c.local
		switch d.Action {
		case Merge, Absorb:
			res = d.Result
		case Nothing:
		default:
			t.Fatalf("%s: %v, want the copies merged", c.name, d.Action)
		}
		if res.CopyReplacedBy(&chmod) {
			t.Errorf("%s: the merged copy %+v counts as replaced by the chmod, whose version it keeps", c.name, res)
		}
		// An edit of the content after the chmod replaces both versions.
		edit := record.Record{Path: "p", Type: record.File, Size: 9, Blocks: blocksOf(2), MTime: 30}.
			Replacing(&chmod).NewEvent(chmod.Version, idB, 300)
		if !res.CopyReplacedBy(&edit) {
			t.Errorf("%s: the merged copy %+v does not count as replaced by an edit after the chmod", c.name, res)
		}
	}
}

// Two nodes fold the same content's metadata changes into each other in
// opposite orders (a history the simulation found): c holds A's chmod
// and loses to B's concurrent one (same mtime, higher node), then takes
// B's second chmod, which never saw A's; B, holding its second chmod,
// loses to A's (newer mtime). Each record's context now holds the other's
// event, which once made the path a tombstone everywhere, though the
// content was never replaced: every node lost it. Each learnt of the
// other only by folding in the same content, so the content stays.
func TestMetadataChangesFoldedBothWaysKeepTheContent(t *testing.T) {
	chmod := func(mode uint32, mt int64, by uint64, v version.Vector) *record.Record {
		return with(file(1, mt, by, v), func(r *record.Record) { r.Mode = mode })
	}
	a1 := chmod(0o644, 2, idA, vec(idC, 1, idA, 1))
	b1 := chmod(0o755, 2, idB, vec(idC, 1, idB, 1))
	scanned := chmod(0o700, 1, idB, vec(idC, 1, idB, 2)).Replacing(b1) // as the scan records it
	b2 := &scanned
	if !Wins(b1, a1) || !Wins(a1, b2) {
		t.Fatal("the history needs B's first chmod to beat A's and A's to beat B's second")
	}
	c1 := after(a1, b1)
	c2 := after(c1, b2)
	b3 := after(b2, a1)
	if !Saw(c2, b3) || !Saw(b3, c2) {
		t.Fatalf("each record should hold the other's event: %+v / %+v", *c2, *b3)
	}
	x, y := exchange(c2, b3)
	for _, r := range []*record.Record{x, y} {
		if r.Deleted || !record.SameContent(r, a1) {
			t.Fatalf("the content was lost: %+v", *r)
		}
	}
	if x.ModifiedBy != y.ModifiedBy || x.Dot != y.Dot || x.Mode != y.Mode || x.Version.Compare(y.Version) != version.Equal {
		t.Fatalf("the nodes differ: %+v / %+v", *x, *y)
	}
	if x.ModifiedBy != idA || x.Mode != 0o644 {
		t.Fatalf("A's chmod (the newest mtime) should be kept, got %+v", *x)
	}
	// B's first chmod, folded into a node that already folded in B's
	// second (which replaced it), does not come back over A's.
	if d := Decide(b3, c1); d.Action != Nothing && d.Action != Absorb {
		t.Fatalf("B's replaced first chmod taken over the record that folded in its successor: %v %+v", d.Action, d.Result)
	}
}

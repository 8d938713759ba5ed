package reconcile

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
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

// file is a live regular file whose bytes are identified by content.
func file(content uint64, mtime int64, by uint64, v version.Vector) *record.Record {
	bl := blocksOf(content)
	return &record.Record{
		Path: "p", Type: record.File, Size: int64(bl[0].Size), Mode: 0o644,
		MTime: mtime, Blocks: bl, Version: v, ModifiedBy: by,
	}
}

func dir(mode uint32, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: record.Dir, Mode: mode, MTime: mtime, Version: v, ModifiedBy: by}
}

func symlink(target string, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: record.Symlink, Target: target, MTime: mtime, Version: v, ModifiedBy: by}
}

func deleted(t record.Type, mtime int64, by uint64, v version.Vector) *record.Record {
	return &record.Record{Path: "p", Type: t, Deleted: true, MTime: mtime, Version: v, ModifiedBy: by}
}

// with returns a copy of r changed by f.
func with(r *record.Record, f func(*record.Record)) *record.Record {
	c := *r
	f(&c)
	return &c
}

func withVersion(r *record.Record, v version.Vector) *record.Record {
	return with(r, func(c *record.Record) { c.Version = v })
}

func TestDecide(t *testing.T) {
	// Shared vectors: vA and vB are concurrent; vAB saw both.
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

		// Equal.
		{
			name:   "equal file",
			local:  file(1, 10, idA, vA),
			remote: file(1, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "equal delete",
			local:  deleted(record.File, 10, idA, vA),
			remote: deleted(record.File, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "equal version with other metadata stays",
			local:  file(1, 10, idA, vA),
			remote: with(file(1, 10, idA, vA), func(r *record.Record) { r.Mode = 0o600 }),
			want:   Decision{Action: Nothing},
		},

		// Lesser: the local version saw the remote one.
		{
			name:   "lesser file",
			local:  file(2, 10, idA, vA2),
			remote: file(1, 20, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "lesser remote file, local deleted after it",
			local:  deleted(record.File, 10, idA, vAB),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "lesser remote delete, local recreated after it",
			local:  file(2, 10, idA, vAB),
			remote: deleted(record.File, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "lesser remote dir, local file made after",
			local:  file(2, 1, idA, vAB),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},

		// Greater: the remote version saw the local one.
		{
			name:   "greater content change",
			local:  file(1, 10, idA, vA),
			remote: file(2, 5, idB, vAB), // an older mtime does not matter
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "greater metadata-only change",
			local:  file(1, 10, idA, vA),
			remote: with(file(1, 10, idB, vAB), func(r *record.Record) { r.Mode = 0o600 }),
			want:   Decision{Action: Take, Result: *with(file(1, 10, idB, vAB), func(r *record.Record) { r.Mode = 0o600 })},
		},
		{
			name:   "greater delete",
			local:  file(1, 10, idA, vA),
			remote: deleted(record.File, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *deleted(record.File, 5, idB, vAB)},
		},
		{
			name:   "greater delete of a dir",
			local:  dir(0o755, 10, idA, vA),
			remote: deleted(record.Dir, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *deleted(record.Dir, 5, idB, vAB)},
		},
		{
			name:   "greater recreate after delete",
			local:  deleted(record.File, 10, idA, vA),
			remote: file(2, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "greater file to dir",
			local:  file(1, 10, idA, vA),
			remote: dir(0o700, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *dir(0o700, 5, idB, vAB)},
		},
		{
			name:   "greater dir to file",
			local:  dir(0o700, 10, idA, vA),
			remote: file(2, 5, idB, vAB),
			want:   Decision{Action: Take, Result: *file(2, 5, idB, vAB)},
		},
		{
			name:   "greater file to symlink",
			local:  file(1, 10, idA, vA),
			remote: symlink("t", 5, idB, vAB),
			want:   Decision{Action: Take, Result: *symlink("t", 5, idB, vAB)},
		},
		{
			name:   "greater by own counter",
			local:  file(1, 10, idA, vA),
			remote: file(2, 1, idA, vA2),
			want:   Decision{Action: Take, Result: *file(2, 1, idA, vA2)},
		},

		// Concurrent, same content: only the loser acts. It adopts the
		// winner's metadata with the joined vector, which it bumps (Merge);
		// the winner does nothing.
		{
			name:   "concurrent same file, remote newer metadata wins",
			local:  with(file(1, 10, idA, vA), func(r *record.Record) { r.Mode = 0o600 }),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *file(1, 20, idB, vAB), Bump: true},
		},
		{
			// The remote node merges to the local metadata (checked below).
			name:   "concurrent same file, local newer metadata wins",
			local:  with(file(1, 30, idA, vA), func(r *record.Record) { r.Mode = 0o600 }),
			remote: file(1, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent same symlink",
			local:  symlink("t", 10, idA, vA),
			remote: symlink("t", 20, idB, vB),
			want:   Decision{Action: Merge, Result: *symlink("t", 20, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent both deleted",
			local:  deleted(record.File, 10, idA, vA),
			remote: deleted(record.File, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *deleted(record.File, 20, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent both deleted, local newer",
			local:  deleted(record.File, 30, idA, vA),
			remote: deleted(record.File, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			// Two deletes are the same content whatever the former types;
			// the newer one wins, so the dir delete merges to the file one.
			name:   "concurrent both deleted, different former types",
			local:  deleted(record.File, 30, idA, vA),
			remote: deleted(record.Dir, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent both deleted, different former types, remote newer",
			local:  deleted(record.Dir, 20, idB, vB),
			remote: deleted(record.File, 30, idA, vA),
			want:   Decision{Action: Merge, Result: *deleted(record.File, 30, idA, vAB), Bump: true},
		},
		{
			name:   "concurrent dirs, different modes, remote newer",
			local:  dir(0o700, 10, idA, vA),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Merge, Result: *dir(0o755, 20, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent dirs, different modes, local newer",
			local:  dir(0o700, 30, idA, vA),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent dirs, same mtime, higher modifier wins (remote)",
			local:  dir(0o700, 10, idA, vA),
			remote: dir(0o755, 10, idB, vB),
			want:   Decision{Action: Merge, Result: *dir(0o755, 10, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent dirs, same mtime, higher modifier wins (local)",
			local:  dir(0o700, 10, idB, vB),
			remote: dir(0o755, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},

		// Concurrent delete vs edit: the edit wins, whatever the mtimes; the
		// deleting side takes it as a new version of its own.
		{
			name:   "concurrent local delete, remote edit",
			local:  deleted(record.File, 30, idA, vA2),
			remote: file(2, 20, idB, vec(idA, 1, idB, 1)),
			want:   Decision{Action: Take, Result: *file(2, 20, idB, vec(idA, 2, idB, 1)), Bump: true},
		},
		{
			name:   "concurrent local edit, remote delete",
			local:  file(2, 20, idB, vec(idA, 1, idB, 1)),
			remote: deleted(record.File, 30, idA, vA2),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent local delete, remote dir",
			local:  deleted(record.File, 30, idA, vA),
			remote: dir(0o755, 20, idB, vB),
			want:   Decision{Action: Take, Result: *dir(0o755, 20, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent local dir, remote delete",
			local:  dir(0o755, 20, idB, vB),
			remote: deleted(record.Dir, 30, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent local delete, remote symlink",
			local:  deleted(record.Symlink, 30, idA, vA),
			remote: symlink("t", 20, idB, vB),
			want:   Decision{Action: Take, Result: *symlink("t", 20, idB, vAB), Bump: true},
		},

		// Concurrent modify/modify: newer mtime, then higher modifier. The
		// loser keeps its content as a conflict copy.
		{
			name:   "concurrent modify, remote newer",
			local:  file(1, 10, idB, vB),
			remote: file(2, 20, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *file(2, 20, idA, vAB), Bump: true},
		},
		{
			name:   "concurrent modify, local newer",
			local:  file(1, 20, idA, vA),
			remote: file(2, 10, idB, vB),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent modify, same mtime, remote higher modifier",
			local:  file(1, 10, idA, vA),
			remote: file(2, 10, idB, vB),
			want:   Decision{Action: ConflictTake, Result: *file(2, 10, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent modify, same mtime, local higher modifier",
			local:  file(1, 10, idB, vB),
			remote: file(2, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent modify after a common base",
			local:  file(2, 10, idA, vec(idA, 2, idC, 1)),
			remote: file(3, 11, idB, vec(idA, 1, idB, 1, idC, 1)),
			want:   Decision{Action: ConflictTake, Result: *file(3, 11, idB, vec(idA, 2, idB, 1, idC, 1)), Bump: true},
		},

		// File vs directory: the directory keeps the name.
		{
			name:   "concurrent local file, remote dir (older)",
			local:  file(1, 30, idB, vB),
			remote: dir(0o755, 10, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *dir(0o755, 10, idA, vAB), Bump: true},
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
			want:   Decision{Action: ConflictTake, Result: *dir(0o755, 10, idA, vAB), Bump: true},
		},

		// Symlink vs file and symlink vs symlink: ordinary conflicts.
		{
			name:   "concurrent local file, remote symlink newer",
			local:  file(1, 10, idA, vA),
			remote: symlink("t", 20, idB, vB),
			want:   Decision{Action: ConflictTake, Result: *symlink("t", 20, idB, vAB), Bump: true},
		},
		{
			name:   "concurrent local symlink newer, remote file",
			local:  symlink("t", 20, idB, vB),
			remote: file(1, 10, idA, vA),
			want:   Decision{Action: Nothing},
		},
		{
			name:   "concurrent local symlink, remote file newer",
			local:  symlink("t", 10, idB, vB),
			remote: file(1, 20, idA, vA),
			want:   Decision{Action: ConflictTake, Result: *file(1, 20, idA, vAB), Bump: true},
		},
		{
			name:   "concurrent symlinks, different targets",
			local:  symlink("t1", 10, idA, vA),
			remote: symlink("t2", 10, idB, vB),
			want:   Decision{Action: ConflictTake, Result: *symlink("t2", 10, idB, vAB), Bump: true},
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
			if tc.local != nil && tc.local.Version.Compare(tc.remote.Version) == version.Concurrent {
				checkOneSideActs(t, tc.local, tc.remote)
			}
		})
	}
}

// checkOneSideActs checks a concurrent pair from both nodes' points of
// view: exactly one of them, the loser by Wins, acts, and it adopts the
// winner's record with the joined vector, to be bumped.
func checkOneSideActs(t *testing.T, a, b *record.Record) {
	t.Helper()
	ab, ba := Decide(a, b), Decide(b, a)
	if (ab.Action == Nothing) == (ba.Action == Nothing) {
		t.Fatalf("want exactly one side to act, got %v and %v", ab.Action, ba.Action)
	}
	if Wins(a, b) == Wins(b, a) {
		t.Fatalf("Wins is not antisymmetric: both %v", Wins(a, b))
	}
	winner, loser, d := a, b, ba
	if ba.Action == Nothing {
		winner, loser, d = b, a, ab
	}
	if !Wins(winner, loser) {
		t.Errorf("the side that acts is not the loser by Wins")
	}
	want := *winner
	want.Version = a.Version.Merge(b.Version)
	if diff := cmp.Diff(want, d.Result); diff != "" || !d.Bump {
		t.Errorf("the loser must adopt the winner with the joined vector and bump it (bump %v, -want +got):\n%s", d.Bump, diff)
	}
}

// TestDecideTieOnSameModifier covers the last-resort tie break: two
// concurrent versions with the same mtime and the same last modifier (a
// node that lost its index). Wins falls back to version.Order, so exactly
// one side wins, or the two nodes would swap contents forever (or both
// resolve, each with its own bump, and never agree).
func TestDecideTieOnSameModifier(t *testing.T) {
	// IDs that differ only in their low half: Vector.String shows the high
	// half, so {x:1 y:1} and {x:1 z:1} print alike.
	const x, y, z uint64 = 0x1111111100000001, 0x1111111100000002, 0x1111111100000003
	pairs := []struct {
		name string
		a, b *record.Record
	}{
		{"distinct vectors", file(1, 10, idA, vec(idA, 2, idC, 1)), file(2, 10, idA, vec(idA, 1, idB, 1))},
		{"vectors that print alike", file(1, 10, x, vec(x, 1, y, 1)), file(2, 10, x, vec(x, 1, z, 1))},
		{"same content", file(1, 10, idA, vec(idA, 2, idC, 1)), with(file(1, 10, idA, vec(idA, 1, idB, 1)), func(r *record.Record) { r.Mode = 0o600 })},
		{"dirs that print alike", dir(0o700, 10, x, vec(x, 1, y, 1)), dir(0o755, 10, x, vec(x, 1, z, 1))},
		{"deletes of different types", deleted(record.File, 10, idA, vec(idA, 2, idC, 1)), deleted(record.Dir, 10, idA, vec(idA, 1, idB, 1))},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			if p.a.Version.Compare(p.b.Version) != version.Concurrent {
				t.Fatalf("test bug: %v and %v are not concurrent", p.a.Version, p.b.Version)
			}
			wab, wba := Wins(p.a, p.b), Wins(p.b, p.a)
			if wab == wba {
				t.Fatalf("want exactly one winner, Wins(a, b) = Wins(b, a) = %v", wab)
			}
			// The tie is broken by the vector order, whichever is greater.
			if want := version.Order(p.a.Version, p.b.Version) > 0; wab != want {
				t.Errorf("Wins(a, b) = %v, want %v (version.Order)", wab, want)
			}
			ab, ba := Decide(p.a, p.b), Decide(p.b, p.a)
			acting := Merge
			if !record.SameContent(p.a, p.b) {
				acting = ConflictTake
			}
			acts := map[Action]int{ab.Action: 1}
			acts[ba.Action]++
			if acts[Nothing] != 1 || acts[acting] != 1 {
				t.Fatalf("want one Nothing and one %v, got %v and %v", acting, ab.Action, ba.Action)
			}
			checkOneSideActs(t, p.a, p.b)
		})
	}

	// Wins is a strict order on concurrent versions: for any two distinct
	// ones exactly one wins, and it does not depend on which is local.
	rapid.Check(t, func(t *rapid.T) {
		ids := []uint64{idA, idB, idC}
		// Each vector gets a counter of its own (own), so the two are
		// concurrent.
		gen := func(label string, own uint64) *record.Record {
			v := version.Vector{}.Update(own, 0)
			for _, id := range ids {
				for range rapid.IntRange(0, 2).Draw(t, label+".count") {
					v = v.Update(id, 0)
				}
			}
			by := rapid.SampledFrom(ids).Draw(t, label+".by")
			mt := rapid.Int64Range(1, 2).Draw(t, label+".mtime")
			switch rapid.IntRange(0, 4).Draw(t, label+".kind") {
			case 0:
				return file(rapid.Uint64Range(1, 2).Draw(t, label+".content"), mt, by, v)
			case 1:
				return symlink("t", mt, by, v)
			case 2:
				return dir(0o755, mt, by, v)
			case 3:
				return deleted(record.File, mt, by, v)
			}
			return deleted(record.Dir, mt, by, v)
		}
		a, b := gen("a", 0xd000000000000004), gen("b", 0xe000000000000005)
		if Wins(a, b) == Wins(b, a) {
			t.Fatalf("Wins(a, b) = Wins(b, a) = %v for %+v / %+v", Wins(a, b), *a, *b)
		}
		ab, ba := Decide(a, b), Decide(b, a)
		if (ab.Action == Nothing) == (ba.Action == Nothing) {
			t.Fatalf("want exactly one side to act, got %v and %v for %+v / %+v", ab.Action, ba.Action, *a, *b)
		}
	})
}

// TestDecideSymmetric checks, for pairs of concurrent versions, that the two
// nodes reach the same record after each applies the other's: the pairwise
// form of convergence, independent of who receives first.
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
	// apply handles remote on node me as a node does, bumping its own
	// counter when it resolves a concurrency.
	apply := func(me uint64, local, remote *record.Record) *record.Record {
		d := Decide(local, remote)
		if d.Action == Nothing {
			return local
		}
		if d.Bump {
			d.Result.Version = d.Result.Version.Update(me, 0)
		}
		return &d.Result
	}
	for i, fa := range mk {
		for j, fb := range mk {
			for _, mts := range [][2]int64{{10, 10}, {10, 20}, {20, 10}} {
				a, b := fa(vA, idA, mts[0]), fb(vB, idB, mts[1])
				// Node 1 holds a, node 2 holds b; they exchange until quiet.
				n1, n2 := a, b
				for range 4 {
					n1, n2 = apply(idA, n1, n2), apply(idB, n2, n1)
				}
				// Both end with the winner's record.
				w := a
				if Wins(b, a) {
					w = b
				}
				if !record.SameContent(n1, w) || !record.SameMeta(n1, w, true) || n1.ModifiedBy != w.ModifiedBy {
					t.Errorf("kinds %d/%d mtimes %v: result is not the winner:\n%+v\n%+v", i, j, mts, *n1, *w)
				}
				if n1.Version.Compare(n2.Version) != version.Equal || !record.SameContent(n1, n2) ||
					!record.SameMeta(n1, n2, true) || n1.ModifiedBy != n2.ModifiedBy {
					t.Errorf("kinds %d/%d mtimes %v: nodes differ:\n%+v\n%+v", i, j, mts, *n1, *n2)
				}
			}
		}
	}
}

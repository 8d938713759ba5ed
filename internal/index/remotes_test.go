package index

import (
	"bytes"
	"slices"
	"testing"

	"tandem/internal/record"
)

// TestRemotesFollowPeerChangesInOneTx: Remotes keeps the peers' buckets
// for the rest of its transaction, so a peer added after the first call,
// and a peer whose new index ID drops its records, must show in the next
// call of the same transaction, as they do in a later one.
func TestRemotesFollowPeerChangesInOneTx(t *testing.T) {
	db, f := openFolder(t, t.TempDir()+"/index.db")
	defer db.Close()
	p0, p1, p2, p3 := [32]byte{0, 9}, [32]byte{1}, [32]byte{2}, [32]byte{3}
	rec := func(n uint64) record.Record {
		return record.Record{Path: "a/b", Type: record.File, Size: int64(n), Dot: n}
	}
	check := func(tx *Tx, when string, want map[[32]byte]uint64) {
		t.Helper()
		peers, recs, err := tx.Remotes("a/b")
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != len(want) || len(recs) != len(want) {
			t.Fatalf("%s: %d peers and %d records, want %d", when, len(peers), len(recs), len(want))
		}
		for id, dot := range want {
			i := slices.Index(peers, id)
			if i < 0 || recs[i].Dot != dot {
				t.Fatalf("%s: peer %x at %d of %x, want dot %d", when, id[0], i, peers, dot)
			}
		}
		// In the order of the peers' IDs (the planner's order of sources
		// and of concurrent records).
		for i := 1; i < len(peers); i++ {
			if bytes.Compare(peers[i-1][:], peers[i][:]) >= 0 {
				t.Fatalf("%s: peers not in the order of their IDs: %x before %x", when, peers[i-1][0], peers[i][0])
			}
		}
		if _, other, err := tx.Remotes("a/c"); err != nil || len(other) != 0 {
			t.Fatalf("%s: another path has %d records (%v)", when, len(other), err)
		}
	}
	err := f.Update(func(tx *Tx) error {
		check(tx, "no peers", nil)
		for _, p := range [][32]byte{p1, p2} {
			if err := tx.SetPeerState(p, 7, 1); err != nil {
				return err
			}
		}
		if err := tx.PutRemote(p1, rec(1)); err != nil {
			return err
		}
		if err := tx.PutRemote(p2, rec(2)); err != nil {
			return err
		}
		check(tx, "two peers", map[[32]byte]uint64{p1: 1, p2: 2})
		if err := tx.PutRemote(p3, rec(3)); err != nil {
			return err
		}
		check(tx, "a third peer", map[[32]byte]uint64{p1: 1, p2: 2, p3: 3})
		// A new index ID for p2 drops what p2 announced before.
		if err := tx.SetPeerState(p2, 8, 0); err != nil {
			return err
		}
		check(tx, "p2's new index", map[[32]byte]uint64{p1: 1, p3: 3})
		if err := tx.PutRemote(p2, rec(4)); err != nil {
			return err
		}
		check(tx, "p2 announces again", map[[32]byte]uint64{p1: 1, p2: 4, p3: 3})
		if err := tx.PutRemote(p0, rec(5)); err != nil {
			return err
		}
		check(tx, "a peer with a lower ID", map[[32]byte]uint64{p0: 5, p1: 1, p2: 4, p3: 3})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.View(func(tx *Tx) error {
		check(tx, "a later transaction", map[[32]byte]uint64{p0: 5, p1: 1, p2: 4, p3: 3})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

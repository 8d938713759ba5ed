package version

import (
	"testing"

	"pgregory.net/rapid"
)

func genVector(t *rapid.T, label string) Vector {
	m := rapid.MapOfN(rapid.Uint64Range(1, 4), rapid.Uint64Range(1, 5), 0, 4).Draw(t, label)
	var v Vector
	for id, val := range m {
		for range val {
			v = v.Update(id, 0)
		}
	}
	return v
}

func TestTable(t *testing.T) {
	a := Vector{}.Update(1, 0)
	b := a.Update(2, 0)
	c := a.Update(3, 0)
	cases := []struct {
		x, y Vector
		want Ordering
	}{
		{nil, nil, Equal},
		{a, nil, Greater},
		{nil, a, Lesser},
		{b, a, Greater},
		{a, b, Lesser},
		{b, c, Concurrent},
		{b.Merge(c), c, Greater},
		{b.Merge(c), c.Merge(b), Equal},
	}
	for i, tc := range cases {
		if got := tc.x.Compare(tc.y); got != tc.want {
			t.Errorf("case %d: %v vs %v = %v, want %v", i, tc.x, tc.y, got, tc.want)
		}
	}
	if v := (Vector{}).Update(7, 1000).Update(7, 5); v.Get(7) != 1001 {
		t.Errorf("clock floor: got %d", v.Get(7))
	}
}

func TestLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genVector(t, "a"), genVector(t, "b"), genVector(t, "c")
		for _, v := range []Vector{a, b, c} {
			if !v.Valid() {
				t.Fatalf("invalid vector %v", v)
			}
			if v.Compare(v) != Equal {
				t.Fatalf("not reflexive: %v", v)
			}
		}
		// Antisymmetry.
		want := map[Ordering]Ordering{Equal: Equal, Greater: Lesser, Lesser: Greater, Concurrent: Concurrent}
		if a.Compare(b) != want[b.Compare(a)] {
			t.Fatalf("asymmetric: %v %v", a, b)
		}
		// Transitivity of domination.
		if a.Dominates(b) && b.Dominates(c) && !a.Dominates(c) {
			t.Fatalf("not transitive: %v %v %v", a, b, c)
		}
		// Merge is an upper bound, commutative and associative.
		m := a.Merge(b)
		if !m.Dominates(a) || !m.Dominates(b) || m.Compare(b.Merge(a)) != Equal {
			t.Fatalf("merge %v %v = %v", a, b, m)
		}
		if a.Merge(b).Merge(c).Compare(a.Merge(b.Merge(c))) != Equal {
			t.Fatal("merge not associative")
		}
		// Update strictly advances and dominates.
		id := rapid.Uint64Range(1, 5).Draw(t, "id")
		u := a.Update(id, rapid.Uint64Range(0, 10).Draw(t, "now"))
		if u.Compare(a) != Greater || !u.Valid() {
			t.Fatalf("update %v -> %v", a, u)
		}
		// Two independent updates of a common base are concurrent.
		id2 := rapid.Uint64Range(1, 5).Filter(func(x uint64) bool { return x != id }).Draw(t, "id2")
		if a.Update(id, 0).Compare(a.Update(id2, 0)) != Concurrent {
			t.Fatal("independent updates not concurrent")
		}
	})
}

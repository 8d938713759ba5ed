package reconcile

import (
	"tandem/internal/record"
	"tandem/internal/version"
)

// Choose picks, among the versions several peers announced for one path,
// the one to act on now, and what to do with it. It prefers a version
// whose holder saw the others' contents, then the conflict winner. ok is
// false when no remote version needs anything. Acting on the chosen
// version and calling Choose again with the new local record converges:
// every action merges a context into the local one, and contexts only
// grow.
func Choose(local *record.Record, remotes []record.Record) (i int, d Decision, ok bool) {
	var act []int
	var decs []Decision
	for j := range remotes {
		if dj := Decide(local, &remotes[j]); dj.Action != Nothing {
			act = append(act, j)
			decs = append(decs, dj)
		}
	}
	if len(act) == 0 {
		return 0, Decision{}, false
	}
	// The first candidate that no other one should precede. "Precedes"
	// need not be transitive over more than two records, so the
	// candidates are compared all with all; without such a candidate
	// (a cycle) the first is taken: any order converges.
	for x, j := range act {
		top := true
		for _, k := range act {
			if k != j && better(&remotes[k], &remotes[j]) {
				top = false
				break
			}
		}
		if top {
			return j, decs[x], true
		}
	}
	return act[0], decs[0], true
}

// better reports whether a should be acted on before b: a saw b's event
// and b did not see a's; for the same event, a's context saw more; else
// the conflict winner.
func better(a, b *record.Record) bool {
	if a.ModifiedBy == b.ModifiedBy && a.Dot == b.Dot && record.SameContent(a, b) {
		return a.Version.Compare(b.Version) == version.Greater
	}
	aSawB, bSawA := Covers(a, b), Covers(b, a)
	switch {
	case aSawB && !bSawA:
		return true
	case bSawA && !aSawB:
		return false
	}
	return Wins(a, b)
}

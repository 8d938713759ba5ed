package reconcile

import "tandem/internal/record"

// Choose picks, among the versions several peers announced for one path,
// the one to act on now, and what to do with it. It prefers a version
// whose holder saw the others' contents, then the conflict winner. ok is
// false when no remote version needs anything. Acting on the chosen
// version and calling Choose again with the new local record converges:
// every action merges a context into the local one, and contexts only
// grow.
func Choose(local *record.Record, remotes []record.Record) (i int, d Decision, ok bool) {
	best := -1
	var bestD Decision
	for j := range remotes {
		dj := Decide(local, &remotes[j])
		if dj.Action == Nothing {
			continue
		}
		if best < 0 || better(&remotes[j], &remotes[best]) {
			best, bestD = j, dj
		}
	}
	if best < 0 {
		return 0, Decision{}, false
	}
	return best, bestD, true
}

// better reports whether a should be acted on before b.
func better(a, b *record.Record) bool {
	aSawB, bSawA := Saw(a, b), Saw(b, a)
	switch {
	case aSawB && !bSawA:
		return true
	case bSawA && !aSawB:
		return false
	}
	return Wins(a, b)
}

package reconcile

import (
	"tandem/internal/record"
	"tandem/internal/version"
)

// Choose picks, among the versions several peers announced for one path,
// the one to act on now, and what to do with it. It prefers a version
// that saw every other actionable one; among concurrent ones it takes the
// conflict winner. ok is false when no remote version needs anything.
// Acting on the chosen version and calling Choose again with the new
// local record converges: each step makes the local version newer or
// resolves a conflict for good.
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
	ab := a.Version.Compare(b.Version)
	switch {
	case ab == version.Greater:
		return true
	case ab == version.Lesser || ab == version.Equal:
		return false
	}
	// Concurrent: a live version before a delete, then the conflict winner.
	return Wins(a, b)
}

// Package reconcile decides what a node does when a peer announces a
// version of a path: nothing, take it, merge versions, or keep both as a
// conflict. It is pure: no I/O, no clock, so it can be tested exhaustively.
//
// The rules, in order:
//   - the remote version was seen by the local one (equal or lesser): nothing;
//   - the remote version saw the local one (greater): take it, whether it is
//     new content or a delete;
//   - concurrent with the same content (both deleted, both the same bytes,
//     two directories): merge the vectors, keep the winner's metadata;
//   - concurrent, one side deleted: the edit wins, a delete never beats an
//     edit it did not see;
//   - concurrent, different content: a directory beats a file or symlink,
//     otherwise the newer mtime wins, then the higher node ID. If the remote
//     wins, the local content is kept as a conflict copy before the remote
//     is taken. If the local wins, nothing happens here: the peer runs the
//     same rules and keeps its own copy.
package reconcile

import (
	"tandem/internal/record"
	"tandem/internal/version"
)

// Action is what to do with a remote version.
type Action int

const (
	// Nothing: the local version stays.
	Nothing Action = iota
	// Take: make the local path equal to the remote version.
	Take
	// Merge: same content; store Result (merged vector, the winner's
	// metadata) and apply its metadata.
	Merge
	// ConflictTake: move the local content to a conflict copy, then take
	// the remote version.
	ConflictTake
)

func (a Action) String() string {
	return [...]string{"nothing", "take", "merge", "conflict-take"}[a]
}

// Decision is the outcome for one path.
type Decision struct {
	Action Action
	// Result is the record the local index holds once the action is done
	// (for ConflictTake, the record at the original name).
	Result record.Record
}

// Decide compares the local record (nil if the path was never known here)
// with a remote one for the same path.
func Decide(local, remote *record.Record) Decision {
	var lv version.Vector
	if local != nil {
		lv = local.Version
	}
	switch remote.Version.Compare(lv) {
	case version.Equal, version.Lesser:
		return Decision{Action: Nothing}
	case version.Greater:
		return Decision{Action: Take, Result: *remote}
	}
	// Concurrent; local is non-nil here because a nil vector is dominated.
	if record.SameContent(local, remote) {
		res := *remote
		if Wins(local, remote) {
			res = *local
		}
		res.Version = local.Version.Merge(remote.Version)
		return Decision{Action: Merge, Result: res}
	}
	switch {
	case local.Deleted:
		return Decision{Action: Take, Result: *remote}
	case remote.Deleted:
		return Decision{Action: Nothing}
	}
	if Wins(local, remote) {
		return Decision{Action: Nothing}
	}
	return Decision{Action: ConflictTake, Result: *remote}
}

// Wins reports whether a beats b in a conflict between two live versions:
// a directory beats anything else, then the newer mtime, then the higher
// node ID of the last modifier, then the larger vector as a last resort so
// that every node picks the same winner.
func Wins(a, b *record.Record) bool {
	if (a.Type == record.Dir) != (b.Type == record.Dir) {
		return a.Type == record.Dir
	}
	if a.Deleted != b.Deleted {
		return !a.Deleted
	}
	if a.MTime != b.MTime {
		return a.MTime > b.MTime
	}
	if a.ModifiedBy != b.ModifiedBy {
		return a.ModifiedBy > b.ModifiedBy
	}
	return a.Version.String() > b.Version.String()
}

// Package reconcile decides what a node does when a peer announces a
// version of a path: nothing, take it, adopt it as the resolution of a
// concurrency, or keep both as a conflict. It is pure: no I/O, no clock,
// so it can be tested exhaustively.
//
// The rules, in order:
//   - the remote version was seen by the local one (equal or lesser): nothing;
//   - the remote version saw the local one (greater): take it as it is,
//     whether it is new content or a delete;
//   - concurrent: exactly one of the two nodes acts, the one whose version
//     loses. It adopts the winner and makes the result a new version of its
//     own (Bump): the merge of both vectors plus its own counter, so the
//     result dominates both and every node that saw either accepts it. The
//     loser is chosen the same way on every node:
//   - same content (both deleted, same bytes, two directories): the winner
//     by Wins; the loser adopts its metadata (Merge);
//   - one side deleted: the edit wins, a delete never beats an edit it did
//     not see (Take);
//   - different content: a directory beats a file or symlink, otherwise the
//     newer mtime, then the higher node ID. The loser keeps its content as
//     a conflict copy before it adopts the winner (ConflictTake).
//
// Because a resolution dominates both versions, a node never forgets a
// delete or an edit it saw (no resurrection, no lost writes), and because
// only the losing side acts, two nodes never resolve the same pair twice.
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
	// Take: make the local path equal to Result.
	Take
	// Merge: the content is already the same; store Result and apply its
	// metadata.
	Merge
	// ConflictTake: move the local content to a conflict copy, then take
	// Result.
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
	// Bump: Result resolves a concurrency, so it is a new version made
	// here: the caller must advance its own counter in Result.Version
	// (version.Vector.Update) before storing it.
	Bump bool
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
	resolved := func(a Action) Decision {
		res := *remote
		res.Version = local.Version.Merge(remote.Version)
		return Decision{Action: a, Result: res, Bump: true}
	}
	switch {
	case Wins(local, remote):
		return Decision{Action: Nothing}
	case record.SameContent(local, remote):
		return resolved(Merge)
	case local.Deleted:
		return resolved(Take)
	default:
		return resolved(ConflictTake)
	}
}

// Wins reports whether a beats b when they are concurrent: a directory
// beats anything else, a live version beats a delete, then the newer
// mtime, then the higher node ID of the last modifier, then the vector
// order as a last resort, so that every node picks the same winner.
func Wins(a, b *record.Record) bool {
	if a.Deleted != b.Deleted {
		return !a.Deleted
	}
	if !a.Deleted && (a.Type == record.Dir) != (b.Type == record.Dir) {
		return a.Type == record.Dir
	}
	if a.MTime != b.MTime {
		return a.MTime > b.MTime
	}
	if a.ModifiedBy != b.ModifiedBy {
		return a.ModifiedBy > b.ModifiedBy
	}
	return version.Order(a.Version, b.Version) > 0
}

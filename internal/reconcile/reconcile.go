// Package reconcile decides what a node does when a peer announces a
// version of a path. It is pure: no I/O, no clock, so it can be tested
// exhaustively.
//
// Every record carries a dot and a context. The dot (ModifiedBy, Dot) names
// the event that created its content: a local edit, delete, chmod, on one
// node. The context (Version) is everything the holder has seen at this
// path, the dot included. A record's content is superseded by another
// record whose context contains its dot. Resolving a conflict creates no
// event: the loser adopts the winner's dot and both contexts are merged.
// So "a delete that saw this content" stays true however often the
// content was adopted, and a node never forgets an event it saw.
//
// The rules for a local record L and a remote record R:
//   - same dot: same content; merge the contexts (Absorb) if R saw more;
//   - R saw L's dot and L did not see R's: take R (content or delete);
//   - L saw R's dot and R did not see L's: keep L, absorb R's context;
//   - each saw the other's dot (two nodes resolved a conflict differently):
//     a content whose node later made another event at this path is
//     obsolete and loses; otherwise as concurrent;
//   - concurrent (neither saw the other): the winner is chosen the same way
//     on every node (a live version beats a delete, a directory beats a
//     file or symlink, then newer mtime, then node ID, then dot counter).
//     The winner absorbs; the loser adopts the winner: with the same
//     content it takes the winner's metadata (Merge), over a delete it
//     takes the edit (Take: a delete never beats an edit it did not see),
//     otherwise it keeps its content as a conflict copy first
//     (ConflictTake).
package reconcile

import (
	"tandem/internal/record"
	"tandem/internal/version"
)

// Action is what to do with a remote version.
type Action int

const (
	// Nothing: the local record stays as it is.
	Nothing Action = iota
	// Take: make the local path equal to Result.
	Take
	// Merge: the content is already the same; store Result and apply its
	// metadata.
	Merge
	// ConflictTake: move the local content to a conflict copy, then take
	// Result.
	ConflictTake
	// Absorb: the local content stays; store Result (the local record
	// with the merged context). No filesystem change.
	Absorb
)

func (a Action) String() string {
	return [...]string{"nothing", "take", "merge", "conflict-take", "absorb"}[a]
}

// Decision is the outcome for one path.
type Decision struct {
	Action Action
	// Result is the record the local index holds once the action is done
	// (for ConflictTake, the record at the original name).
	Result record.Record
}

// Saw reports whether a's context contains b's dot: a's holder saw the
// event that made b's content.
func Saw(a, b *record.Record) bool {
	return a.Version.Get(b.ModifiedBy) >= b.Dot
}

// obsolete reports whether ctx shows a later event, at this path, of the
// node that made r's content: that event saw r, so r is superseded.
func obsolete(r *record.Record, ctx version.Vector) bool {
	return ctx.Get(r.ModifiedBy) > r.Dot
}

// Decide compares the local record (nil if the path was never known here)
// with a remote one for the same path.
func Decide(local, remote *record.Record) Decision {
	if local == nil {
		return Decision{Action: Take, Result: *remote}
	}
	merged := local.Version.Merge(remote.Version)
	keep := func() Decision {
		if local.Version.Dominates(remote.Version) {
			return Decision{Action: Nothing}
		}
		res := *local
		res.Version = merged
		return Decision{Action: Absorb, Result: res}
	}
	adopt := func(a Action) Decision {
		res := *remote
		res.Version = merged
		return Decision{Action: a, Result: res}
	}
	if local.ModifiedBy == remote.ModifiedBy && local.Dot == remote.Dot {
		return keep()
	}
	rSawL, lSawR := Saw(remote, local), Saw(local, remote)
	switch {
	case rSawL && !lSawR:
		return adopt(Take)
	case lSawR && !rSawL:
		return keep()
	case rSawL && lSawR:
		lObs, rObs := obsolete(local, remote.Version), obsolete(remote, local.Version)
		switch {
		case lObs && !rObs:
			return adopt(Take)
		case rObs && !lObs:
			return keep()
		}
	}
	// Concurrent contents.
	if Wins(local, remote) {
		return keep()
	}
	switch {
	case record.SameContent(local, remote):
		return adopt(Merge)
	case local.Deleted:
		return adopt(Take)
	default:
		return adopt(ConflictTake)
	}
}

// Wins reports whether a beats b when their contents are concurrent: a
// live version beats a delete, a directory beats a file or symlink, then
// the newer mtime, then the higher node ID of the event, then the higher
// event counter, so that every node picks the same winner.
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
	return a.Dot > b.Dot
}

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
//   - same dot: same event, same content; merge the contexts (Absorb) if R
//     saw more;
//   - R saw L's dot and L did not see R's: take R (content or delete);
//   - L saw R's dot and R did not see L's: keep L, absorb R's context;
//   - each saw the other's dot: neither content survives; the result is
//     a tombstone with no dot and the merged context (see below), unless
//     both hold one live content and each lists the other's version in
//     Merged (folded in as the same content, or restated by a chmod):
//     then nothing replaced the content and it stays;
//   - concurrent (neither saw the other): the winner is chosen the same way
//     on every node (a live version beats a delete, a directory beats a
//     file or symlink, then newer mtime, then node ID, then dot counter).
//     The winner's node does nothing; the loser's adopts the winner: with
//     the same content it takes the winner's metadata (Merge), over a
//     delete it takes the edit (Take: a delete never beats an edit it did
//     not see), otherwise it keeps its content as a conflict copy first
//     (ConflictTake). Its result, the winner's dot with both contexts,
//     then travels back and the winner's node absorbs it.
//
// The invariant that makes this safe: a context holds an event other than
// the record's own dot only if that event's content is kept (at the name
// or as a conflict copy) or was replaced by a later event that saw it. So
// a record whose context holds the local dot may replace the local
// content outright, and when each record's context holds the other's dot
// both contents are accounted for. A tombstone without a dot (Dot 0) is
// seen by every record (Saw is trivially true); it only says "nothing
// here that this context does not cover", as an empty set of siblings
// does for dotted version vectors.
package reconcile

import (
	"bytes"
	"encoding/binary"
	"slices"

	"tandem/internal/record"
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

// Covers reports whether a's holder saw b's content: a's context holds
// b's dot, or b is an unchanged conflict copy and a's event replaced
// another node's copy of the same version under the same name (the copies
// are separate events with the same content).
func Covers(a, b *record.Record) bool {
	return Saw(a, b) || a.ReplacedCopy(b)
}

// Decide compares the local record (nil if the path was never known here)
// with a remote one for the same path.
func Decide(local, remote *record.Record) Decision {
	if local == nil {
		return Decision{Action: Take, Result: *remote}
	}
	merged := local.Version.Merge(remote.Version)
	sameDot := local.ModifiedBy == remote.ModifiedBy && local.Dot == remote.Dot
	sameContent := record.SameContent(local, remote)
	liveSame := sameContent && !local.Deleted // one live content (SameContent needs both deleted or both live)
	// keep keeps the local record and takes in the remote's context. For
	// one event as two nodes hold it, what either learnt it replaced (see
	// the concurrent delete below) and the versions either folded in are
	// merged too; withFolded merges the latter for two events of one
	// content.
	keep := func(withFolded bool) Decision {
		earlier, folded := local.Earlier, local.Merged
		if sameDot {
			earlier = record.MergeEarlier(local.Earlier, remote.Earlier)
		}
		if sameDot || withFolded {
			folded = record.MergeEarlier(local.Merged, remote.Merged)
		}
		if local.Version.Dominates(remote.Version) && record.SameDots(earlier, local.Earlier) && record.SameDots(folded, local.Merged) {
			return Decision{Action: Nothing}
		}
		res := *local
		res.Version = merged
		res.Earlier = earlier
		res.Merged = folded
		return Decision{Action: Absorb, Result: res}
	}
	adopt := func(a Action) Decision {
		res := *remote
		res.Version = merged
		if liveSame {
			// The local version's content lives on in the adopted record
			// (and the local version itself, when it was not seen).
			add := local.Merged
			if a == Merge {
				add = local.LivesOn()
			}
			res.Merged = record.MergeEarlier(remote.Merged, add)
		}
		return Decision{Action: a, Result: res}
	}
	if sameDot && sameContent {
		return keep(false)
	}
	// A dot names one event, so two records with the same dot and
	// different contents only exist when a node reused a counter (it lost
	// its index and its clock went back). They are treated as concurrent,
	// so that both are kept and the nodes still agree. (Differences of
	// metadata alone under one dot are the same event seen through
	// filesystems that keep different precision or owners: kept as is.)
	rSawL, lSawR := Covers(remote, local), Covers(local, remote)
	switch {
	case sameDot:
	case rSawL && !lSawR:
		return adopt(Take)
	case lSawR && !rSawL:
		return keep(false)
	case rSawL && lSawR:
		// Each saw the other's event (two nodes resolved a conflict
		// differently, then changed the path again): by the invariant
		// below, both contents were replaced by later events or are kept
		// elsewhere, so neither survives. The path holds nothing until an
		// event neither saw arrives: a tombstone with no event of its own
		// (dot zero), whose context is everything both saw.
		if local.Dot == 0 {
			return keep(false)
		}
		if remote.Dot == 0 {
			return adopt(Take)
		}
		if liveSame && foldedIn(local, remote) && foldedIn(remote, local) {
			// Each lists the other's version as one whose content lives
			// on in it (folded in, or restated by a chmod): nothing
			// replaced that content, it is at the name on both. Keep the
			// record that knows a version of it the other does not (the
			// other may be one that a change it never saw restated, and a
			// delete saw), else the winner.
			lNewer, rNewer := foldedUnseen(local, remote), foldedUnseen(remote, local)
			if lNewer && !rNewer || lNewer == rNewer && Wins(local, remote) {
				return keep(true)
			}
			return adopt(Merge)
		}
		return Decision{Action: Take, Result: record.Record{
			Path: local.Path, Type: local.Type, Deleted: true,
			MTime: max(local.MTime, remote.MTime), Version: merged,
		}}
	}
	// Concurrent contents. The winner keeps its record as it is: taking
	// the loser's context would claim its event was seen, and the node
	// that holds the loser would then take the winner without keeping its
	// own content. The loser's node keeps its content (as a conflict copy
	// unless it is the same or a delete), adopts the winner's event and
	// merges the contexts; the winner's node absorbs that record when it
	// comes back.
	if Wins(local, remote) {
		return Decision{Action: Nothing}
	}
	switch {
	case sameContent:
		return adopt(Merge)
	case local.Deleted:
		// The delete loses the name, but what it deleted stays deleted:
		// the versions it replaced go on in the adopted record's Earlier,
		// so that a conflict copy of one of them, made by a node that had
		// not heard of the delete, still learns that a change saw it.
		d := adopt(Take)
		d.Result.Earlier = record.MergeEarlier(remote.Earlier, local.ReplacedDots())
		return d
	default:
		return adopt(ConflictTake)
	}
}

// Wins reports whether a beats b when their contents are concurrent: a
// live version beats a delete, a directory beats a file or symlink, then
// the newer mtime, then the higher node ID of the event, then the higher
// event counter, then (for a reused dot) the content and metadata
// themselves, so that every node picks the same winner.
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
	if a.Dot != b.Dot {
		return a.Dot > b.Dot
	}
	return bytes.Compare(key(a), key(b)) > 0
}

// key is a canonical encoding of what a record holds, used only to order
// two records that carry the same dot.
func key(r *record.Record) []byte {
	b := make([]byte, 0, 64+len(r.Target)+33*len(r.Blocks))
	del := byte(0)
	if r.Deleted {
		del = 1
	}
	b = append(b, del, byte(r.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Size))
	b = binary.BigEndian.AppendUint32(b, r.Mode)
	b = binary.BigEndian.AppendUint32(b, r.UID)
	b = binary.BigEndian.AppendUint32(b, r.GID)
	b = append(b, r.Target...)
	b = append(b, 0)
	for _, bl := range r.Blocks {
		b = append(b, bl.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, bl.Size)
	}
	return b
}

// foldedIn reports whether b's version lives on in a: its dot is in a's
// Merged (folded in or restated, never replaced by other bytes).
func foldedIn(a, b *record.Record) bool { return record.HasDot(a.Merged, b.ModifiedBy, b.Dot) }

// foldedUnseen reports whether a lists a version of the content that b's
// context does not hold: a knows of a later restatement or fold than b
// (b's own version may be one that a change b never saw restated).
func foldedUnseen(a, b *record.Record) bool {
	return slices.ContainsFunc(a.Merged, func(d record.Dot) bool { return b.Version.Get(d.By) < d.Dot })
}

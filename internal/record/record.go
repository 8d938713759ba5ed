// Package record defines what tandem knows about one path: its type,
// content (block hashes), metadata and version. It also validates names
// received from peers. It is pure and free of I/O.
package record

import (
	"cmp"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"tandem/internal/version"
)

// Type is the kind of filesystem object.
type Type uint8

const (
	File Type = iota
	Dir
	Symlink
)

func (t Type) String() string {
	switch t {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", t)
}

// Block is one content-defined chunk of a file, identified by its SHA-256.
// Blocks are stored in file order; a block's offset is the sum of the sizes
// before it.
type Block struct {
	_    struct{} `cbor:",toarray"`
	Hash [32]byte
	Size uint32
	// Check is the block's XXH3-64 (never 0), taken from the same bytes
	// as Hash, or 0 where it is not known (records of releases before
	// it). Data fetched or copied for the block is checked against it,
	// some thirty times cheaper than SHA-256; Hash alone identifies the
	// block (SameBlocks ignores Check).
	Check uint64
}

// blockFields is Block without its UnmarshalCBOR: the form written since
// blocks have a check.
type blockFields Block

// UnmarshalCBOR reads a block as written since blocks had a check (hash,
// size, check) and as written before (hash, size): records of earlier
// releases may still be stored in CBOR.
func (b *Block) UnmarshalCBOR(data []byte) error {
	var v blockFields
	if err := cbor.Unmarshal(data, &v); err == nil {
		*b = Block(v)
		return nil
	}
	var old struct {
		_    struct{} `cbor:",toarray"`
		Hash [32]byte
		Size uint32
	}
	if err := cbor.Unmarshal(data, &old); err != nil {
		return err
	}
	*b = Block{Hash: old.Hash, Size: old.Size}
	return nil
}

// Record is the state of one path as one node knows it.
type Record struct {
	Path    string         `cbor:"1,keyasint"` // slash-separated, relative, clean
	Type    Type           `cbor:"2,keyasint"`
	Deleted bool           `cbor:"3,keyasint,omitempty"`
	Size    int64          `cbor:"4,keyasint,omitempty"`
	Mode    uint32         `cbor:"5,keyasint,omitempty"` // permission bits (07777)
	MTime   int64          `cbor:"6,keyasint,omitempty"` // unix nanoseconds
	UID     uint32         `cbor:"7,keyasint,omitempty"`
	GID     uint32         `cbor:"8,keyasint,omitempty"`
	Target  string         `cbor:"9,keyasint,omitempty"` // symlink target
	Blocks  []Block        `cbor:"10,keyasint,omitempty"`
	Version version.Vector `cbor:"11,keyasint"`
	// The dot: the event that made this content, (ModifiedBy, Dot). Version
	// is the context: every event at this path the holder has seen, the
	// dot included. See package reconcile.
	ModifiedBy uint64 `cbor:"12,keyasint,omitempty"` // short ID of the node of the event
	Dot        uint64 `cbor:"14,keyasint,omitempty"` // that node's counter for the event
	Seq        uint64 `cbor:"13,keyasint,omitempty"` // the holder's local sequence number
	// The dot of the live content this record's event replaced (zero if
	// none). A conflict copy of that content uses it to learn that the
	// content was deleted or replaced by a change that saw it.
	PrevBy  uint64 `cbor:"18,keyasint,omitempty"`
	PrevDot uint64 `cbor:"19,keyasint,omitempty"`
	// The dots the replaced content had itself replaced, newest first, at
	// most MaxEarlier: a version can be replaced twice on one node before
	// any peer hears of the middle one, and a copy of the first must still
	// learn that a change saw it.
	Earlier []Dot `cbor:"24,keyasint,omitempty"`
	// The dots of versions with this very content (same bytes, other
	// metadata) that live on in this record, newest first, at most
	// MaxEarlier: folded in when two of them met as concurrent changes
	// (the loser adopts the winner's dot), or restated by this record's
	// event (a chmod, a touch) or one it took over without a change of
	// bytes. Their content was not replaced.
	Merged []Dot `cbor:"26,keyasint,omitempty"`
	// For a conflict copy made by tandem, as long as nobody changed it:
	// the path and the dot of the version whose content it keeps.
	CopyOf  string `cbor:"15,keyasint,omitempty"`
	CopyBy  uint64 `cbor:"16,keyasint,omitempty"`
	CopyDot uint64 `cbor:"17,keyasint,omitempty"`
	// The Prev of the version the copy keeps: a copy of an older version
	// of the same path that this version replaced has nothing left to keep.
	CopyPrevBy  uint64 `cbor:"22,keyasint,omitempty"`
	CopyPrevDot uint64 `cbor:"23,keyasint,omitempty"`
	CopyEarlier []Dot  `cbor:"25,keyasint,omitempty"` // the kept version's Earlier

	// Local stat cache: lets a scan skip unchanged files without rehashing.
	// Never sent to peers.
	Inode uint64 `cbor:"20,keyasint,omitempty"`
	CTime int64  `cbor:"21,keyasint,omitempty"`
}

// Dot names one event: a node's short ID and its counter.
type Dot struct {
	_   struct{} `cbor:",toarray"`
	By  uint64
	Dot uint64
}

// MaxEarlier bounds Record.Earlier and Record.Merged.
const MaxEarlier = 4

// Replacing returns r as the event that replaced old's live content: r's
// Prev is old's dot, and Earlier carries old's own history on.
//
// If old is an unchanged conflict copy, Earlier starts with the dot of the
// version it kept: another node's copy of that version at the same name
// is a separate event, yet the same content, and this change saw it too.
func (r Record) Replacing(old *Record) Record {
	r.PrevBy, r.PrevDot, r.Earlier = old.ModifiedBy, old.Dot, nil
	if old.CopyOf != "" && old.CopyDot != 0 {
		r.Earlier = append(r.Earlier, Dot{By: old.CopyBy, Dot: old.CopyDot})
	}
	if old.PrevDot != 0 {
		r.Earlier = append(r.Earlier, Dot{By: old.PrevBy, Dot: old.PrevDot})
	}
	for _, d := range old.Earlier {
		if !HasDot(r.Earlier, d.By, d.Dot) {
			r.Earlier = append(r.Earlier, d)
		}
	}
	if len(r.Earlier) > MaxEarlier {
		r.Earlier = r.Earlier[:MaxEarlier]
	}
	// A change that kept the bytes (a chmod, a touch) restates old's
	// content: old and what old restated live on in r.
	r.Merged = nil
	if !r.Deleted && !old.Deleted && SameContent(&r, old) {
		r.Merged = old.LivesOn()
	}
	if len(r.Earlier) == 0 {
		r.Earlier = nil
	}
	return r
}

// ReplacedDots returns the dots of the contents r's event replaced: its
// Prev and its Earlier.
func (r *Record) ReplacedDots() []Dot {
	var ds []Dot
	if r.PrevDot != 0 {
		ds = append(ds, Dot{By: r.PrevBy, Dot: r.PrevDot})
	}
	return append(ds, r.Earlier...)
}

// HasDot reports whether ds holds the dot (by, dot).
func HasDot(ds []Dot, by, dot uint64) bool {
	return slices.ContainsFunc(ds, func(e Dot) bool { return e.By == by && e.Dot == dot })
}

// LivesOn returns the versions whose content lives on in a record that
// keeps r's bytes under another event: r's own and those r lists in
// Merged.
func (r *Record) LivesOn() []Dot {
	return MergeEarlier(r.Merged, []Dot{{By: r.ModifiedBy, Dot: r.Dot}})
}

// MergeEarlier returns the union of the Earlier lists a and b, newest
// (highest counter) first and at most MaxEarlier long. It depends only on
// the set of dots, not on the order of its arguments, so that nodes that
// merge the same lists agree and stop exchanging them.
func MergeEarlier(a, b []Dot) []Dot {
	var out []Dot
	for _, d := range append(append([]Dot(nil), a...), b...) {
		if d.Dot != 0 && !HasDot(out, d.By, d.Dot) {
			out = append(out, Dot{By: d.By, Dot: d.Dot})
		}
	}
	slices.SortFunc(out, func(x, y Dot) int {
		if c := cmp.Compare(y.Dot, x.Dot); c != 0 {
			return c
		}
		return cmp.Compare(y.By, x.By)
	})
	if len(out) > MaxEarlier {
		out = out[:MaxEarlier]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// SameDots reports whether a and b hold the same dots, in any order.
func SameDots(a, b []Dot) bool {
	if len(a) != len(b) {
		return false
	}
	for _, d := range a {
		if !HasDot(b, d.By, d.Dot) {
			return false
		}
	}
	return true
}

// ReplacedCopy reports whether r's event replaced a conflict copy of the
// version that cp, an unchanged conflict copy at the same path, keeps:
// two nodes that resolved one conflict each made a copy of the loser
// under the same name, as separate events; a change to one of them saw
// the content of both.
func (r *Record) ReplacedCopy(cp *Record) bool {
	return cp.CopyOf != "" && !cp.Deleted && cp.CopyDot != 0 && r.Path == cp.Path &&
		replaced(r.PrevBy, r.PrevDot, r.Earlier, cp.CopyBy, cp.CopyDot)
}

// replaced reports whether the event with prev and earlier replaced,
// directly or through the versions it lists, the version with dot
// (by, dot).
func replaced(prevBy, prevDot uint64, earlier []Dot, by, dot uint64) bool {
	if dot == 0 {
		return false
	}
	return prevDot != 0 && prevBy == by && prevDot == dot || HasDot(earlier, by, dot)
}

// SameContent reports whether a and b hold the same data: same existence,
// type, bytes or link target. Metadata (mode, mtime, owner) is not compared.
func SameContent(a, b *Record) bool {
	if a.Deleted != b.Deleted {
		return false
	}
	if a.Deleted {
		return true
	}
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case File:
		return a.Size == b.Size && SameBlocks(a.Blocks, b.Blocks)
	case Symlink:
		return a.Target == b.Target
	}
	return true
}

// SameMeta reports whether a and b have the same synced metadata. Owner is
// compared only when withOwner is set (the node runs as root). Directory
// mtimes are not synced: they change whenever a child does.
func SameMeta(a, b *Record, withOwner bool) bool {
	if a.Deleted || b.Deleted {
		return a.Deleted == b.Deleted
	}
	if a.Type != Symlink && a.Mode != b.Mode {
		return false
	}
	if a.Type != Dir && a.MTime != b.MTime {
		return false
	}
	if withOwner && (a.UID != b.UID || a.GID != b.GID) {
		return false
	}
	return true
}

// NewEvent returns r as a new local event of node me: its context advanced
// from prev (the record it replaces, possibly empty) and its dot set.
func (r Record) NewEvent(prev version.Vector, me, now uint64) Record {
	r.Version = prev.Update(me, now)
	r.ModifiedBy = me
	r.Dot = r.Version.Get(me)
	return r
}

// CopyReplacedBy reports whether cp, an unchanged conflict copy, keeps the
// content that r's event replaced (deleted, overwrote): that event saw the
// content, so the copy has nothing left to keep. An event that kept the
// same bytes (a chmod, a touch) does not count: the copy may be where
// that event's own version is kept. Two nodes that lost one conflict
// with the two versions (the one before the chmod and the one after) each
// keep theirs as a copy under the same name, and the two copy records
// merge, the same content, into one that names the older version; a
// delete of it as replaced by the chmod would take the only copy of the
// newer one with it. A later change of content still replaces both (its
// Earlier lists the older version).
func (cp *Record) CopyReplacedBy(r *Record) bool {
	return cp.CopyOf != "" && !cp.Deleted && r.Path == cp.CopyOf &&
		replaced(r.PrevBy, r.PrevDot, r.Earlier, cp.CopyBy, cp.CopyDot) &&
		!SameContent(r, cp)
}

// CopySupersededBy reports whether cp, an unchanged conflict copy, keeps a
// version that the version kept by sib, another unchanged copy of the same
// path, replaced: the replacing version lost a conflict later, so no record
// of the original path tells any more that it saw cp's version.
func (cp *Record) CopySupersededBy(sib *Record) bool {
	return cp.CopyOf != "" && !cp.Deleted && sib.Path != cp.Path && sib.CopyOf == cp.CopyOf && !sib.Deleted &&
		replaced(sib.CopyPrevBy, sib.CopyPrevDot, sib.CopyEarlier, cp.CopyBy, cp.CopyDot)
}

// Wire returns a copy without the local-only fields, for sending.
func (r Record) Wire() Record {
	r.Inode, r.CTime = 0, 0
	return r
}

// Validate checks a record received from a peer: a safe name and
// consistent fields. It never trusts the peer.
func (r *Record) Validate() error {
	if err := ValidName(r.Path); err != nil {
		return err
	}
	if r.Type > Symlink {
		return fmt.Errorf("%q: unknown type %d", r.Path, r.Type)
	}
	if !r.Version.Valid() || len(r.Version) == 0 {
		return fmt.Errorf("%q: invalid version vector %v", r.Path, r.Version)
	}
	if r.Dot == 0 && (!r.Deleted || r.ModifiedBy != 0) {
		return fmt.Errorf("%q: a version without an event must be a tombstone", r.Path)
	}
	if r.Version.Get(r.ModifiedBy) < r.Dot {
		return fmt.Errorf("%q: the version's event (%x, %d) is not in its context %v", r.Path, r.ModifiedBy, r.Dot, r.Version)
	}
	if r.CopyOf != "" {
		if err := ValidName(r.CopyOf); err != nil {
			return fmt.Errorf("%q: copy of: %w", r.Path, err)
		}
	}
	if len(r.Earlier) > MaxEarlier || len(r.CopyEarlier) > MaxEarlier || len(r.Merged) > MaxEarlier {
		return fmt.Errorf("%q: more than %d earlier versions", r.Path, MaxEarlier)
	}
	if r.Deleted {
		return nil
	}
	if r.Mode&^0o7777 != 0 {
		return fmt.Errorf("%q: invalid mode %o", r.Path, r.Mode)
	}
	switch r.Type {
	case File:
		var sum int64
		for _, b := range r.Blocks {
			if b.Size == 0 {
				return fmt.Errorf("%q: empty block", r.Path)
			}
			sum += int64(b.Size)
		}
		if sum != r.Size || r.Size < 0 {
			return fmt.Errorf("%q: blocks add up to %d bytes, size says %d", r.Path, sum, r.Size)
		}
	case Symlink:
		if r.Target == "" || strings.IndexByte(r.Target, 0) >= 0 || len(r.Target) > 4096 {
			return fmt.Errorf("%q: invalid symlink target", r.Path)
		}
	}
	return nil
}

// MarkerDir is the name of tandem's own directory inside every folder.
const MarkerDir = ".tandem"

// ValidName checks that name is a clean relative slash path that stays
// inside the folder and does not enter tandem's own directory.
func ValidName(name string) error {
	switch {
	case name == "" || name == ".":
		return errors.New("empty name")
	case len(name) > 4096:
		return fmt.Errorf("name too long (%d bytes)", len(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("%q: name is not valid UTF-8", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%q: name contains NUL", name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%q: absolute name", name)
	case strings.Contains(name, "\\"):
		return fmt.Errorf("%q: name contains a backslash", name)
	case path.Clean(name) != name:
		return fmt.Errorf("%q: name is not clean", name)
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." || part == "." {
			return fmt.Errorf("%q: name escapes the folder", name)
		}
	}
	first, _, _ := strings.Cut(name, "/")
	if first == MarkerDir {
		return fmt.Errorf("%q: name is inside tandem's own %s directory", name, MarkerDir)
	}
	return nil
}

// Parent returns the parent path of name, or "" for a top-level name.
func Parent(name string) string {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ""
	}
	return name[:i]
}

// Depth is the number of path components of name.
func Depth(name string) int { return strings.Count(name, "/") + 1 }

// SameBlocks reports whether two block lists are equal.
func SameBlocks(a, b []Block) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Hash != b[i].Hash || a[i].Size != b[i].Size {
			return false
		}
	}
	return true
}

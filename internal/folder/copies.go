package folder

import (
	"strings"

	"tandem/internal/index"
	"tandem/internal/record"
)

// A conflict copy keeps a version that lost a conflict. If that version is
// later deleted or overwritten, on any node, by a change that saw it (its
// record's Prev names the version's dot), the copy has nothing left to
// keep: it is deleted like the original was, unless someone changed the
// copy meanwhile (a change clears its CopyOf). Otherwise a delete of the
// original that raced the conflict would come back as a copy.

// copyPrefix is the start of every conflict copy name of path.
func copyPrefix(path string) string {
	n := ConflictName(path, "", "")
	return n[:strings.LastIndex(n, ".conflict-")+len(".conflict-")]
}

// flagCopies puts on the work list the unchanged conflict copies of r.Path
// that keep the content r's event replaced, and, if r is itself a copy,
// the copies of the same path whose version r's version replaced.
func flagCopies(tx *index.Tx, r *record.Record) (int, error) {
	var hits []string
	if r.PrevDot != 0 {
		if err := tx.Prefix(copyPrefix(r.Path), func(c record.Record) {
			if c.CopyReplacedBy(r) {
				hits = append(hits, c.Path)
			}
		}); err != nil {
			return 0, err
		}
	}
	// A copy whose version replaced the version kept by a sibling copy.
	if r.CopyOf != "" && r.CopyPrevDot != 0 {
		if err := tx.Prefix(copyPrefix(r.CopyOf), func(c record.Record) {
			if c.CopySupersededBy(r) {
				hits = append(hits, c.Path)
			}
		}); err != nil {
			return 0, err
		}
	}
	for _, p := range hits {
		if err := tx.SetNeed(p); err != nil {
			return 0, err
		}
	}
	return len(hits), nil
}

// copyObsolete reports whether cp is an unchanged conflict copy whose
// version was replaced by a change that saw it, as far as this node's
// records of the original path (its own and its peers') tell.
func copyObsolete(tx *index.Tx, cp *record.Record) (bool, error) {
	if cp.CopyOf == "" || cp.Deleted {
		return false, nil
	}
	if r, ok, err := tx.Get(cp.CopyOf); err != nil {
		return false, err
	} else if ok && cp.CopyReplacedBy(&r) {
		return true, nil
	}
	rm, err := tx.Remotes(cp.CopyOf)
	if err != nil {
		return false, err
	}
	for _, r := range rm {
		if cp.CopyReplacedBy(&r) {
			return true, nil
		}
	}
	// Or another copy of the same path keeps a version that replaced it.
	superseded := false
	if err := tx.Prefix(copyPrefix(cp.CopyOf), func(s record.Record) {
		superseded = superseded || cp.CopySupersededBy(&s)
	}); err != nil {
		return false, err
	}
	return superseded, nil
}

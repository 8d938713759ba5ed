package folder

import (
	"tandem/internal/index"
	"tandem/internal/reconcile"
	"tandem/internal/record"
)

// clearNeedIfDone removes path from the work list unless a peer's record
// still calls for an action against local (the record the index now
// holds, nil if none). It runs in the transaction that stores local, so
// a peer's record that arrived while the path was being applied is never
// dropped from the work list.
func clearNeedIfDone(tx *index.Tx, path string, local *record.Record) error {
	_, recs, err := tx.Remotes(path)
	if err != nil {
		return err
	}
	if _, _, ok := reconcile.Choose(local, recs); ok {
		return nil
	}
	return tx.ClearNeed(path)
}

// clearNeedsIfDone is clearNeedIfDone for paths whose local record is
// read from the index.
func clearNeedsIfDone(tx *index.Tx, paths []string) error {
	for _, p := range paths {
		local, ok, err := tx.Get(p)
		if err != nil {
			return err
		}
		var lp *record.Record
		if ok {
			lp = &local
		}
		if err := clearNeedIfDone(tx, p, lp); err != nil {
			return err
		}
	}
	return nil
}

// needIfPeersNew puts path on the work list if a peer's record of it
// holds events the local record r (just stored by a local change) has not
// seen. A local change can turn a peer's record that lost before into
// one that now wins: a file deleted here after its concurrent edit
// elsewhere lost to a local write must come back.
func needIfPeersNew(tx *index.Tx, r *record.Record) (bool, error) {
	_, rm, err := tx.Remotes(r.Path)
	if err != nil {
		return false, err
	}
	for i := range rm {
		o := &rm[i]
		if !r.Version.Dominates(o.Version) || reconcile.Decide(r, o).Action != reconcile.Nothing {
			return true, tx.SetNeed(r.Path)
		}
	}
	return false, nil
}

package folder

import (
	"fmt"

	"tandem/internal/crashpoint"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/reconcile"
	"tandem/internal/record"
	"tandem/internal/version"
)

// PeerPosition returns how far this node holds peer's index: the peer's
// index ID and highest sequence number stored here.
func (f *Folder) PeerPosition(peer identity.ID) (indexID, seq uint64) {
	_ = f.idx.View(func(tx *index.Tx) error {
		indexID, seq = tx.PeerState(peer)
		return nil
	})
	return
}

// HandleIndex stores records announced by peer and marks the paths whose
// remote version this node has not seen. Records are validated first; one
// bad record rejects the message (the peer is misbehaving).
func (f *Folder) HandleIndex(peer identity.ID, m *protocol.Index) error {
	for i := range m.Records {
		if err := m.Records[i].Validate(); err != nil {
			return fmt.Errorf("folder %q: invalid record from peer %s: %w", f.cfg.ID, peer.Short(), err)
		}
	}
	crashpoint.Hit(crashpoint.IndexAfterReceive)
	needed := 0
	err := f.idx.Update(func(tx *index.Tx) error {
		oldID, _ := tx.PeerState(peer)
		if err := tx.SetPeerState(peer, m.IndexID, m.Last); err != nil {
			return err
		}
		if oldID != m.IndexID && oldID != 0 {
			f.log.Info("peer's index was reset; taking its index anew", "peer", peer.Short())
		}
		for _, r := range m.Records {
			r.Seq = 0
			if err := tx.PutRemote(peer, r); err != nil {
				return err
			}
			local, ok, err := tx.Get(r.Path)
			if err != nil {
				return err
			}
			var lv version.Vector
			var lp *record.Record
			if ok {
				lv, lp = local.Version, &local
			}
			// Work is needed if the peer's context holds events not seen
			// here, or if the decision acts for another reason: a tombstone
			// without a dot can carry exactly the local context.
			if !lv.Dominates(r.Version) || reconcile.Decide(lp, &r).Action != reconcile.Nothing {
				if err := tx.SetNeed(r.Path); err != nil {
					return err
				}
				needed++
			}
			n, err := flagCopies(tx, &r)
			if err != nil {
				return err
			}
			needed += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("folder %q: store index from %s: %w", f.cfg.ID, peer.Short(), err)
	}
	f.log.Debug("index from peer", "peer", peer.Short(), "records", len(m.Records), "last", m.Last, "needed", needed)
	if needed > 0 {
		f.Wake()
	}
	return nil
}

// Since calls fn with batches of local records with sequence numbers above
// seq, for sending to a peer. It returns the highest sequence sent.
func (f *Folder) Since(seq uint64, batch int, fn func([]record.Record, uint64) error) (uint64, uint64, error) {
	var recs []record.Record
	var last, indexID uint64
	err := f.idx.View(func(tx *index.Tx) error {
		indexID = tx.IndexID()
		return tx.Since(seq, func(r record.Record) bool {
			recs = append(recs, r.Wire())
			last = r.Seq
			return len(recs) < batch
		})
	})
	if err != nil || len(recs) == 0 {
		return seq, indexID, err
	}
	return last, indexID, fn(recs, last)
}

// LocalIndexID returns this node's index incarnation for the folder.
func (f *Folder) LocalIndexID() (id, maxSeq uint64) {
	_ = f.idx.View(func(tx *index.Tx) error {
		id, maxSeq = tx.IndexID(), tx.MaxSeq()
		return nil
	})
	return
}

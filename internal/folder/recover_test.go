package folder

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"tandem/internal/config"
	"tandem/internal/identity"
	"tandem/internal/index"
)

// TestRecoveryTellsPeers: a remote version that a crash left pending,
// its content already at its name, is committed at start-up, and the
// node is told that the index changed, so that a connection already
// streaming the index sends the new record. (The fault suite found a
// node that never sent such a record to a peer that had connected while
// it recovered: nothing else changed afterwards to wake the sender.)
func TestRecoveryTellsPeers(t *testing.T) {
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	r := remoteFile(newFakePeers(), "x", "content", 0o644, by, 1)
	before := func(fi *index.Folder, root string) {
		if err := os.WriteFile(filepath.Join(root, "x"), []byte("content"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := fi.Update(func(tx *index.Tx) error { return tx.SetPending(r) }); err != nil {
			t.Fatal(err)
		}
	}
	var changed atomic.Int32
	f, _ := startFolderHooked(t, newFakePeers(), config.Folder{}, before, func() { changed.Add(1) })
	waitFor(t, "the pending version recorded", func() bool {
		got, had, err := f.get("x")
		return err == nil && had && got.ModifiedBy == by && got.Dot == 1
	})
	waitFor(t, "the node told that the index changed", func() bool { return changed.Load() > 0 })
}

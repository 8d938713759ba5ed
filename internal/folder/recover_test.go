package folder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"tandem/internal/config"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
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

// TestRecoveryFindsTemporaryFiles: a remote version that a crash left
// pending before it reached its name still has its temporary file, in
// its shard of .tandem/tmp or, left by a release before the shards,
// in .tandem/tmp itself. Either way recovery must see that it was not
// placed: it is fetched again and ends up at its name. (Taking it for
// placed would record it and then, the name being empty, a deletion
// that saw it, which peers would carry out.) The temporary file is
// removed.
func TestRecoveryFindsTemporaryFiles(t *testing.T) {
	for _, shard := range []bool{true, false} {
		t.Run(fmt.Sprintf("shard=%v", shard), func(t *testing.T) {
			peers := newFakePeers()
			peer := identity.ID{9, 9, 9}
			by := peer.Short64()
			r := remoteFile(peers, "x", "content", 0o644, by, 1)
			var tmp string
			before := func(fi *index.Folder, root string) {
				dir := filepath.Join(root, record.MarkerDir, "tmp")
				base := tmpBaseFor(&r)
				tmp = filepath.Join(dir, base)
				if shard {
					tmp = filepath.Join(dir, base[2:3], base)
				}
				if err := os.MkdirAll(filepath.Dir(tmp), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(tmp, []byte("cont"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := fi.Update(func(tx *index.Tx) error { return tx.SetPending(r) }); err != nil {
					t.Fatal(err)
				}
			}
			f, root := startFolderHooked(t, peers, config.Folder{}, before, nil)
			if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{r}, Last: 1}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the version fetched again and placed", func() bool {
				d, err := os.ReadFile(filepath.Join(root, "x"))
				got, had, gerr := f.get("x")
				return err == nil && string(d) == "content" && gerr == nil && had && !got.Deleted && got.Dot == 1 && got.ModifiedBy == by
			})
			if _, err := os.Lstat(tmp); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("temporary file %s left behind: %v", tmp, err)
			}
		})
	}
}

package folder

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"tandem/internal/config"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
	"tandem/internal/version"
)

// racingScene names the paths a racing user action works on: the folder,
// doc.txt in it, and a file outside it on the same filesystem.
type racingScene struct {
	root, p, outside string
}

func writeThenDelete(t *testing.T, s racingScene) {
	fh, err := os.OpenFile(s.p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Error(err)
		return
	}
	fh.WriteString("late write\n")
	fh.Close()
	if err := os.Remove(s.p); err != nil {
		t.Error(err)
	}
}

func replaceByRename(t *testing.T, s racingScene) {
	if err := os.WriteFile(s.outside, []byte("user's file\n"), 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := os.Rename(s.outside, s.p); err != nil {
		t.Error(err)
	}
}

// sendOver delivers a peer's change of the local file rec that saw it:
// new content "remote\n", or its delete. It returns the peer's record.
func sendOver(t *testing.T, f *Folder, peers *fakePeers, rec record.Record, del bool) record.Record {
	t.Helper()
	peer := identity.ID{9, 9, 9}
	by := peer.Short64()
	remote := remoteFile(peers, rec.Path, "remote\n", 0o644, by, 1)
	if del {
		remote = record.Record{Path: rec.Path, Type: record.File, Deleted: true, ModifiedBy: by, Dot: 1}
	}
	remote.Version = rec.Version.Merge(version.Vector{}.Update(by, 0))
	if err := f.HandleIndex(peer, &protocol.Index{Folder: "f", IndexID: 7, Records: []record.Record{remote}, Last: 1}); err != nil {
		t.Fatal(err)
	}
	return remote
}

// TestUserChangeRacingRemoteChange deletes or replaces (by rename, as an
// editor saves) a local file just after the last check before a remote
// version replaces or deletes it, with the trash off and on. Whatever the
// user did in that moment must stand: a file the user deleted (with a
// write made just before) is not brought back, and a file the user put
// there, which never saw the remote change, is not lost.
func TestUserChangeRacingRemoteChange(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete bool // the remote change
		user   func(*testing.T, racingScene)
		want   map[string]string // content -> "name" (at doc.txt) or "copy"
	}{
		{"replace, user writes then deletes", false, writeThenDelete, map[string]string{"remote\n": "name"}},
		{"replace, user replaces by rename", false, replaceByRename, map[string]string{"remote\n": "name", "user's file\n": "copy"}},
		{"delete, user writes then deletes", true, writeThenDelete, map[string]string{}},
		{"delete, user replaces by rename", true, replaceByRename, map[string]string{"user's file\n": "name"}},
	} {
		for _, trash := range []int{0, 7} {
			t.Run(fmt.Sprintf("%s, trash_days %d", tc.name, trash), func(t *testing.T) {
				userChangeRacing(t, trash, tc.delete, tc.user, tc.want)
			})
		}
	}
}

func userChangeRacing(t *testing.T, trash int, del bool, user func(*testing.T, racingScene), want map[string]string) {
	peers := newFakePeers()
	f, root := startFolderWith(t, peers, config.Folder{TrashDays: trash})
	s := racingScene{root: root, p: filepath.Join(root, "doc.txt"), outside: filepath.Join(filepath.Dir(root), "outside.tmp")}
	local := recordedFile(t, f, root, "doc.txt", "original\n")
	var once sync.Once
	hook := func(path string) {
		if path == "doc.txt" {
			once.Do(func() { user(t, s) })
		}
	}
	testHookChecked.Store(&hook)
	t.Cleanup(func() { testHookChecked.Store(nil) })
	remote := sendOver(t, f, peers, local, del)
	// The tree as content -> where; a copy is made before the index
	// records the remote change, and a file put back at its name is
	// recorded by the scan.
	tree := func() (map[string]string, []string) {
		got := map[string]string{}
		var names []string
		es, _ := os.ReadDir(root)
		for _, e := range es {
			if e.Name() == record.MarkerDir {
				continue
			}
			names = append(names, e.Name())
			b, err := os.ReadFile(filepath.Join(root, e.Name()))
			if err != nil {
				continue
			}
			where := "copy"
			if e.Name() == "doc.txt" {
				where = "name"
			}
			got[string(b)] = where
		}
		sort.Strings(names)
		return got, names
	}
	// Settled: the remote change was taken into account (the index
	// records it, or a local version that supersedes it: the user's new
	// file, concurrent with a delete that never saw it), the work list is
	// empty and the tree holds what is wanted.
	live := false
	for _, where := range want {
		live = live || where == "name"
	}
	waitFor(t, "the remote change to be settled", func() bool {
		var r record.Record
		var ok bool
		_ = f.idx.View(func(tx *index.Tx) error { r, ok, _ = tx.Get("doc.txt"); return nil })
		superseded := r.Version.Dominates(remote.Version) || r.Deleted != live
		if !ok || !superseded || f.Status().Needed != 0 {
			return false
		}
		got, _ := tree()
		return len(got) == len(want)
	})
	got, names := tree()
	if len(got) != len(want) || len(names) != len(want) {
		t.Fatalf("tree holds %v (%v), want %v", got, names, want)
	}
	for content, where := range want {
		if got[content] != where {
			t.Fatalf("tree holds %v (%v), want %q at %s", got, names, content, where)
		}
	}
	if trash > 0 && !del {
		// The replaced version is in the trash unless the user deleted it.
		entries, err := ListTrash(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if b, _ := os.ReadFile(e.File); string(b) == "remote\n" {
				t.Fatalf("the new version is in the trash: %+v", e)
			}
		}
	}
}

// TestReplaceWithoutExchange replaces a local file with a remote version
// where the filesystem cannot exchange names (RENAME_EXCHANGE refused
// with EINVAL): the plain rename it falls back to places the version, and
// nothing else is left in the folder.
func TestReplaceWithoutExchange(t *testing.T) {
	tried := make(chan struct{}, 1)
	renameat2 = func(olddirfd int, oldpath string, newdirfd int, newpath string, flags uint) error {
		if flags&unix.RENAME_EXCHANGE != 0 {
			select {
			case tried <- struct{}{}:
			default:
			}
			return unix.EINVAL
		}
		return unix.Renameat2(olddirfd, oldpath, newdirfd, newpath, flags)
	}
	t.Cleanup(func() { renameat2 = unix.Renameat2 })
	peers := newFakePeers()
	f, root := startFolder(t, peers)
	local := recordedFile(t, f, root, "doc.txt", "original\n")
	remote := sendOver(t, f, peers, local, false)
	waitFor(t, "the remote version to be recorded", func() bool {
		var r record.Record
		_ = f.idx.View(func(tx *index.Tx) error { r, _, _ = tx.Get("doc.txt"); return nil })
		return r.Version.Dominates(remote.Version)
	})
	select {
	case <-tried:
	default:
		t.Fatal("the exchange was never tried")
	}
	if b, err := os.ReadFile(filepath.Join(root, "doc.txt")); err != nil || string(b) != "remote\n" {
		t.Fatalf("doc.txt = %q, %v; want the remote version", b, err)
	}
	es, _ := os.ReadDir(root)
	if len(es) != 2 { // doc.txt and .tandem
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Fatalf("folder holds %v, want only doc.txt", names)
	}
}

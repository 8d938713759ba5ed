package folder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"tandem/internal/record"
)

// The trash keeps every file that tandem deletes or overwrites because of
// a remote change, under <folder>/.tandem/trash/<YYYYMMDD-HHMMSS>/<path>,
// for trash_days days. Moving a file there is a rename (or, for an
// overwrite, a hard link made just before the new version is renamed over
// the name, so the name never goes missing).

func (f *Folder) trashRoot() string { return filepath.Join(f.markerPath(), "trash") }

func (f *Folder) trashOn() bool { return f.cfg.TrashDays > 0 }

// trashTarget returns a free path in the trash for rel.
func (f *Folder) trashTarget(rel string) (string, error) {
	dir := filepath.Join(f.trashRoot(), f.opt.Now().UTC().Format(stampLayout))
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("trash: %w", err)
	}
	cand := p
	for i := 1; ; i++ {
		if _, err := os.Lstat(cand); errors.Is(err, fs.ErrNotExist) {
			return cand, nil
		}
		cand = fmt.Sprintf("%s.%d", p, i)
	}
}

// discard removes rel (a file or symlink) from the tree: into the trash if
// it is on, else deleted.
func (f *Folder) discard(rel string) error {
	if !f.trashOn() {
		if err := f.root.OS().Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", f.root.Abs(rel), err)
		}
		return nil
	}
	dst, err := f.trashTarget(rel)
	if err != nil {
		return err
	}
	if err := os.Rename(f.root.Abs(rel), dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move %s to the trash: %w", f.root.Abs(rel), err)
	}
	return nil
}

// keepBeforeOverwrite hard-links the current file at rel into the trash
// before a new version replaces it.
func (f *Folder) keepBeforeOverwrite(rel string) error {
	if !f.trashOn() {
		return nil
	}
	st, ok, err := f.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && (!ok || st.Type == record.Dir)) {
		return nil
	}
	if err != nil {
		return err
	}
	dst, err := f.trashTarget(rel)
	if err != nil {
		return err
	}
	if err := os.Link(f.root.Abs(rel), dst); err != nil {
		return fmt.Errorf("keep the replaced version of %s in the trash: %w", f.root.Abs(rel), err)
	}
	return nil
}

// TrashEntry is one file in a folder's trash.
type TrashEntry struct {
	Time time.Time `json:"time"`
	Path string    `json:"path"` // the path it had in the folder
	Size int64     `json:"size"`
	File string    `json:"file"` // where it is now
}

// ListTrash lists the trash of the folder rooted at root, oldest first.
func ListTrash(root string) ([]TrashEntry, error) {
	troot := filepath.Join(root, record.MarkerDir, "trash")
	stamps, err := os.ReadDir(troot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []TrashEntry
	for _, s := range stamps {
		t, err := time.Parse(stampLayout, s.Name())
		if err != nil || !s.IsDir() {
			continue
		}
		base := filepath.Join(troot, s.Name())
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			rel, _ := filepath.Rel(base, p)
			e := TrashEntry{Time: t, Path: filepath.ToSlash(rel), File: p}
			if fi, err := d.Info(); err == nil {
				e.Size = fi.Size()
			}
			out = append(out, e)
			return nil
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// cleanTrash removes trash batches older than trash_days.
func (f *Folder) cleanTrash() {
	stamps, err := os.ReadDir(f.trashRoot())
	if err != nil {
		return
	}
	limit := f.opt.Now().Add(-time.Duration(f.cfg.TrashDays) * 24 * time.Hour)
	for _, s := range stamps {
		t, err := time.Parse(stampLayout, s.Name())
		if err != nil || !t.Before(limit) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(f.trashRoot(), s.Name())); err != nil {
			f.log.Warn("cleaning the trash", "err", err)
		} else {
			f.log.Info("removed expired trash", "batch", s.Name())
		}
	}
}

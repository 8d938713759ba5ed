package fault

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"tandem/internal/cluster"
)

// The namespace is small so that operations on different nodes collide.
var (
	dirNames  = []string{"d0", "d1", "d2", "d3"}
	fileNames = []string{"f0", "f1", "f2", "f3.txt", "f4.txt", "f5.txt"}
	modes     = []os.FileMode{0o600, 0o640, 0o644, 0o755}
)

// The operations. Each is race-free with respect to the daemon, which
// may replace a file at any moment by renaming a new version into place:
// it decides from what it actually did (inode checks, the content of what
// it moved) which tokens it wrote, touched and superseded.
var opTable = []struct {
	name   string
	weight int
	fn     func(*world, *cluster.Node) (string, bool)
}{
	{"create", 16, (*world).opCreate},
	{"overwrite", 15, func(w *world, nd *cluster.Node) (string, bool) { return w.opRewrite(nd, false) }},
	{"append", 10, func(w *world, nd *cluster.Node) (string, bool) { return w.opRewrite(nd, true) }},
	{"delete", 10, func(w *world, nd *cluster.Node) (string, bool) { return w.opDelete(nd, false) }},
	{"deltree", 4, func(w *world, nd *cluster.Node) (string, bool) { return w.opDelete(nd, true) }},
	{"rename", 8, func(w *world, nd *cluster.Node) (string, bool) { return w.opRename(nd, false) }},
	{"renamedir", 4, func(w *world, nd *cluster.Node) (string, bool) { return w.opRename(nd, true) }},
	{"mkdir", 8, (*world).opMkdir},
	{"rmdir", 4, (*world).opRmdir},
	{"chmod", 8, (*world).opChmod},
	{"symlink", 6, (*world).opSymlink},
}

// operate runs one random operation on nd and logs it.
func (w *world) operate(nd *cluster.Node) {
	total := 0
	for _, o := range opTable {
		total += o.weight
	}
	r := w.rng.IntN(total)
	for _, o := range opTable {
		if r -= o.weight; r < 0 {
			w.tried[o.name]++
			desc, done := o.fn(w, nd)
			if done {
				w.ops[o.name]++
			}
			w.note("%s %s %s", nd.Name, o.name, desc)
			return
		}
	}
}

// entry is one path of a node's tree: 'f' file, 'd' dir, 'l' symlink.
type entry struct {
	rel string
	typ byte
}

// listTree lists dir without .tandem, tolerating entries that vanish.
func listTree(dir string) []entry {
	var out []entry
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // the daemon changed something under us
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if rel == ".tandem" {
			return filepath.SkipDir
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type().IsRegular():
			out = append(out, entry{rel, 'f'})
		case d.IsDir():
			out = append(out, entry{rel, 'd'})
		case d.Type()&fs.ModeSymlink != 0:
			out = append(out, entry{rel, 'l'})
		}
		return nil
	})
	return out
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

func depth(rel string) int {
	if rel == "" {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

// parent picks a directory for a new entry, at most maxDepth deep: an
// existing one of nd, or one of the namespace (which may not exist).
func (w *world) parent(nd *cluster.Node, maxDepth int) string {
	if w.rng.IntN(2) == 0 {
		dirs := []string{""}
		for _, e := range listTree(nd.Dir) {
			if e.typ == 'd' && depth(e.rel) <= maxDepth {
				dirs = append(dirs, e.rel)
			}
		}
		return dirs[w.rng.IntN(len(dirs))]
	}
	p := ""
	for d := 0; d < maxDepth && w.rng.IntN(5) < 3; d++ {
		p = join(p, dirNames[w.rng.IntN(len(dirNames))])
	}
	return p
}

func (w *world) fileName() string { return fileNames[w.rng.IntN(len(fileNames))] }
func (w *world) dirName() string  { return dirNames[w.rng.IntN(len(dirNames))] }

// target picks the path an operation acts on: mostly an existing entry of
// one of types, sometimes a namespace path that may not exist.
func (w *world) target(nd *cluster.Node, types string) string {
	var cand []string
	for _, e := range listTree(nd.Dir) {
		if strings.IndexByte(types, e.typ) >= 0 {
			cand = append(cand, e.rel)
		}
	}
	if len(cand) > 0 && w.rng.IntN(100) < 85 {
		return cand[w.rng.IntN(len(cand))]
	}
	if types == "d" {
		return join(w.parent(nd, 1), w.dirName())
	}
	return join(w.parent(nd, 2), w.fileName())
}

// tokensAt returns the tokens in everything at p (a file, a symlink or a
// whole tree), not following symlinks.
func tokensAt(p string) []string {
	var out []string
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		switch {
		case d.Type().IsRegular():
			f, err := os.OpenFile(q, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return nil
			}
			b, _ := io.ReadAll(f)
			f.Close()
			out = append(out, tokenRe.FindAllString(string(b), -1)...)
		case d.Type()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(q)
			out = append(out, tokenRe.FindAllString(t, -1)...)
		}
		return nil
	})
	return out
}

// minus returns the tokens of a that are not in b.
func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, t := range b {
		in[t] = true
	}
	var out []string
	for _, t := range a {
		if !in[t] {
			in[t] = true
			out = append(out, t)
		}
	}
	return out
}

func dedup(a []string) []string { return minus(a, nil) }

func sameFile(a, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// locate finds where the file fi (an open file of ours) now is in nd's
// tree: at rel, or elsewhere if the daemon moved it (a conflict copy).
// "" means it is no longer in the tree (replaced and moved to the trash):
// what was done to it did not happen as far as the tree is concerned.
func locate(nd *cluster.Node, rel string, fi fs.FileInfo) string {
	if cur, err := os.Lstat(nd.Path(rel)); err == nil && sameFile(cur, fi) {
		return rel
	}
	for _, e := range listTree(nd.Dir) {
		if e.typ != 'f' {
			continue
		}
		if cur, err := os.Lstat(nd.Path(e.rel)); err == nil && sameFile(cur, fi) {
			return e.rel
		}
	}
	return ""
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return err.Error()
}

func skip(rel string, err error) (string, bool) {
	return fmt.Sprintf("%s: skipped (%s)", rel, errText(err)), false
}

// newFilePath picks a namespace path for a new file or symlink.
func (w *world) newFilePath(nd *cluster.Node) string {
	return join(w.parent(nd, 2), w.fileName())
}

// opCreate writes a new file with a new token if the path is free,
// creating missing parents.
func (w *world) opCreate(nd *cluster.Node) (string, bool) {
	rel := w.newFilePath(nd)
	p := nd.Path(rel)
	mk := ""
	if _, err := os.Lstat(filepath.Dir(p)); err != nil {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return skip(rel+" (making parents)", err)
		}
		mk = " (made parents)"
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return skip(rel+mk, err)
	}
	tk := w.newToken()
	_, werr := f.WriteString(tk + "\n")
	fi, serr := f.Stat()
	f.Close()
	at := ""
	if werr == nil && serr == nil {
		at = locate(nd, rel, fi)
	}
	what := "create " + rel
	desc := fmt.Sprintf("%s%s -> %s", rel, mk, short(tk))
	return w.landed(tk, nd, rel, at, what, desc, fmt.Sprintf("file replaced at once, write err %v", werr))
}

// opRewrite overwrites (or appends to) an existing file in place. It
// happened only if the file we wrote is still in the tree.
func (w *world) opRewrite(nd *cluster.Node, appendMode bool) (string, bool) {
	rel := w.target(nd, "f")
	f, err := os.OpenFile(nd.Path(rel), os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return skip(rel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return skip(rel, errors.New("not a regular file"))
	}
	old, err := io.ReadAll(f)
	if err != nil {
		return skip(rel, err)
	}
	oldToks := dedup(tokenRe.FindAllString(string(old), -1))
	tk := w.newToken()
	line := []byte(tk + "\n")
	var werr error
	if appendMode {
		_, werr = f.WriteAt(line, int64(len(old)))
	} else if werr = f.Truncate(0); werr == nil {
		_, werr = f.WriteAt(line, 0)
	}
	fi, serr := f.Stat()
	at := ""
	if serr == nil {
		at = locate(nd, rel, fi)
	}
	kind := "overwrite"
	if appendMode {
		kind = "append"
	}
	what := kind + " " + rel
	desc := fmt.Sprintf("%s %s -> %s", rel, shorts(oldToks), short(tk))
	if at != "" && at != rel {
		what += " (now at " + at + ")"
		desc += " (now at " + at + ")"
	}
	switch {
	case at == "":
		desc += " (replaced meanwhile: did not happen)"
		w.touched(oldToks, nd, what+" [did not happen]", false)
		w.tok(tk).hist = append(w.tok(tk).hist, fmt.Sprintf("%s %s %s: not written (file replaced meanwhile)", w.where(), nd.Name, what))
	case werr != nil:
		// Not expected; be conservative: the old content may be gone.
		desc += " (write error " + werr.Error() + ")"
		w.touched(oldToks, nd, what+" [write error]", !appendMode)
	default:
		w.touched(oldToks, nd, what, !appendMode)
		w.written(tk, nd, what)
	}
	return desc, true
}

func (w *world) graveName(nd *cluster.Node) string {
	w.nextID++
	for i, n := range w.c.Nodes {
		if n == nd {
			return filepath.Join(w.grave[i], fmt.Sprintf("g%d", w.nextID))
		}
	}
	panic("unknown node")
}

func typeName(p string) string {
	fi, err := os.Lstat(p)
	switch {
	case err != nil:
		return "?"
	case fi.IsDir():
		return "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		return "symlink"
	default:
		return "file"
	}
}

// opDelete moves a file or symlink (or a whole directory tree) to the
// graveyard: whatever it moved is deleted, and its tokens superseded.
func (w *world) opDelete(nd *cluster.Node, tree bool) (string, bool) {
	types := "fl"
	if tree {
		types = "d"
	}
	rel := w.target(nd, types)
	p := nd.Path(rel)
	pre := tokensAt(p)
	g := w.graveName(nd)
	if err := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, g, unix.RENAME_NOREPLACE); err != nil {
		return skip(rel, err)
	}
	moved := dedup(tokensAt(g))
	what := fmt.Sprintf("delete %s (%s)", rel, typeName(g))
	w.touched(moved, nd, what, true)
	seen := map[string]bool{}
	for _, tk := range moved {
		seen[tk] = true
	}
	w.moved = append(w.moved, movedTree{grave: g, nd: nd, what: what, seen: seen})
	w.touched(minus(pre, moved), nd, what+" [seen before the move only]", false)
	return fmt.Sprintf("%s (%s) %s", rel, typeName(g), shorts(moved)), true
}

// opRename renames a file or symlink (or a directory) to a fresh name.
func (w *world) opRename(nd *cluster.Node, dir bool) (string, bool) {
	types := "fl"
	if dir {
		types = "d"
	}
	rel := w.target(nd, types)
	var dest string
	for range 5 {
		if dir {
			dest = join(w.parent(nd, 1), w.dirName())
		} else {
			dest = join(w.parent(nd, 2), w.fileName())
		}
		if _, err := os.Lstat(nd.Path(dest)); err != nil && dest != rel {
			break
		}
		dest = ""
	}
	if dest == "" {
		return skip(rel, errors.New("no fresh name"))
	}
	pre := tokensAt(nd.Path(rel))
	if err := unix.Renameat2(unix.AT_FDCWD, nd.Path(rel), unix.AT_FDCWD, nd.Path(dest), unix.RENAME_NOREPLACE); err != nil {
		return skip(rel+" -> "+dest, err)
	}
	post := tokensAt(nd.Path(dest))
	toks := dedup(append(pre, post...))
	w.touched(toks, nd, fmt.Sprintf("rename %s -> %s", rel, dest), false)
	return fmt.Sprintf("%s -> %s %s", rel, dest, shorts(toks)), true
}

// opMkdir creates a directory, usually with a directory name, sometimes
// with a file name (a type conflict in the making).
func (w *world) opMkdir(nd *cluster.Node) (string, bool) {
	name := w.dirName()
	if w.rng.IntN(10) == 0 {
		name = w.fileName()
	}
	rel := join(w.parent(nd, 1), name)
	if err := unix.Mkdir(nd.Path(rel), 0o755); err != nil {
		return skip(rel, err)
	}
	return rel, true
}

// opRmdir removes a directory if it is empty.
func (w *world) opRmdir(nd *cluster.Node) (string, bool) {
	rel := w.target(nd, "d")
	if err := unix.Rmdir(nd.Path(rel)); err != nil {
		return skip(rel, err)
	}
	return rel, true
}

// opChmod changes the mode of a file or directory (never through a
// symlink). The tokens of a file are touched.
func (w *world) opChmod(nd *cluster.Node) (string, bool) {
	rel := w.target(nd, "fd")
	mode := modes[w.rng.IntN(len(modes))]
	f, err := os.OpenFile(nd.Path(rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return skip(rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return skip(rel, err)
	}
	var toks []string
	if fi.Mode().IsRegular() {
		b, _ := io.ReadAll(f)
		toks = dedup(tokenRe.FindAllString(string(b), -1))
	}
	if err := f.Chmod(mode); err != nil {
		return skip(rel, err)
	}
	w.touched(toks, nd, fmt.Sprintf("chmod %o %s", mode, rel), false)
	return fmt.Sprintf("%o %s %s", mode, rel, shorts(toks)), true
}

// opSymlink creates a symlink whose target is a new token.
func (w *world) opSymlink(nd *cluster.Node) (string, bool) {
	rel := w.newFilePath(nd)
	tk := w.newToken()
	if err := unix.Symlink(tk, nd.Path(rel)); err != nil {
		w.tok(tk).hist = append(w.tok(tk).hist, fmt.Sprintf("%s %s symlink %s: failed", w.where(), nd.Name, rel))
		return skip(rel, err)
	}
	at := ""
	for _, e := range listTree(nd.Dir) {
		if e.typ == 'l' {
			if t, _ := os.Readlink(nd.Path(e.rel)); t == tk {
				at = e.rel
				break
			}
		}
	}
	what := "symlink " + rel
	desc := fmt.Sprintf("%s -> %s", rel, short(tk))
	return w.landed(tk, nd, rel, at, what, desc, "replaced at once")
}

// landed records where a written token ended up: at (its path now, "" if
// it was replaced before the test could find it, why says how).
func (w *world) landed(tk string, nd *cluster.Node, rel, at, what, desc, why string) (string, bool) {
	if at == "" {
		w.tok(tk).hist = append(w.tok(tk).hist, fmt.Sprintf("%s %s %s: not written (%s)", w.where(), nd.Name, what, why))
		return desc + " (replaced meanwhile: not written)", true
	}
	if at != rel {
		what += " (now at " + at + ")"
		desc += " (now at " + at + ")"
	}
	w.written(tk, nd, what)
	return desc, true
}

package folder

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"tandem/internal/blocks"
	"tandem/internal/crashpoint"
	"tandem/internal/directio"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/protocol"
	"tandem/internal/record"
)

func (f *Folder) tmpDir() string { return f.tmpPath }

// tmpNameFor is the temporary name under which version r of a file or
// symlink is assembled. It is derived from the version, so that after a
// crash recover can tell whether r was renamed into place (its
// temporary file is gone) or not. It lies in one of tmpShards
// subdirectories of .tandem/tmp, chosen by the name: the kernel
// serialises creations in one directory, and fetch workers creating
// thousands of small files spent more time waiting for that directory's
// lock than creating (perf: rwsem_spin_on_owner).
func (f *Folder) tmpNameFor(r *record.Record) string { return f.inShard(tmpBaseFor(r)) }

// inShard is the path of temporary file base ("v-" and hexadecimal
// digits) in its shard: the one named by its first digit.
func (f *Folder) inShard(base string) string { return f.tmpDir() + "/" + base[2:3] + "/" + base }

// tmpNamesFor is every name under which r's temporary file may lie:
// tmpNameFor, and the name in .tandem/tmp itself that releases before
// the shards used (recover may find one after an upgrade).
func (f *Folder) tmpNamesFor(r *record.Record) []string {
	base := tmpBaseFor(r)
	return []string{f.inShard(base), f.tmpDir() + "/" + base}
}

// tmpShards names the subdirectories of .tandem/tmp that hold the
// temporary files of versions: one per hexadecimal digit.
const tmpShards = "0123456789abcdef"

// tmpBaseFor is the base name of r's temporary file: "v-" and 32
// hexadecimal digits.
func tmpBaseFor(r *record.Record) string {
	h := sha256.New()
	h.Write(tmpNameKey(r))
	for _, b := range r.Blocks {
		h.Write(b.Hash[:])
	}
	var sum [sha256.Size]byte
	return "v-" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// tmpNameKey is what names r's temporary file besides its blocks' hashes:
// the bytes of fmt's "%s\x00%d\x00%d\x00%d\x00%d\x00%s\x00" of path,
// type, modifier, dot, size and target (names stay those of earlier
// releases, which recover may find after an upgrade), without fmt's cost.
func tmpNameKey(r *record.Record) []byte {
	b := make([]byte, 0, len(r.Path)+len(r.Target)+64)
	b = append(append(b, r.Path...), 0)
	b = append(strconv.AppendUint(b, uint64(r.Type), 10), 0)
	b = append(strconv.AppendUint(b, r.ModifiedBy, 10), 0)
	b = append(strconv.AppendUint(b, r.Dot, 10), 0)
	b = append(strconv.AppendInt(b, r.Size, 10), 0)
	return append(append(b, r.Target...), 0)
}

// createTmp creates name exclusively, replacing a leftover of an earlier
// attempt at the same version; its directory is created if missing.
func createTmp(name string) (*os.File, error) { return createTmpMode(name, 0o600) }

// createTmpMode is createTmp with the given permission bits (subject to
// the umask).
func createTmpMode(name string, perm uint32) (out *os.File, err error) {
	err = inDir(name, func() (e error) {
		out, e = openExcl(name, perm)
		return e
	})
	if errors.Is(err, fs.ErrExist) {
		os.Remove(name)
		out, err = openExcl(name, perm)
	}
	return out, err
}

// openExcl creates name exclusively for reading and writing. It is
// os.OpenFile without the attempt to register a regular file with the
// network poller (which always fails, at two or three system calls per
// file).
func openExcl(name string, perm uint32) (*os.File, error) {
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (f *Folder) tmpName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(f.tmpDir(), "t-"+hex.EncodeToString(b[:]))
}

// window is how many block requests may be in flight for one file, and
// maxRequests how many for the whole folder: many small files are
// fetched at once (fetchWorkers), a few large ones keep a window each,
// and neither holds more than maxRequests blocks in memory.
const (
	window      = 32
	maxRequests = 128
)

// acquire takes a slot of sem, or reports false once ctx is done.
func acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// fetchFile assembles the content of r in a temporary file under
// .tandem/tmp: each block is copied from a local file that holds it (the
// old version, a renamed or copied file) or requested from a peer, and
// verified against its hash. Owner, mode and mtime are set on it; it is
// not fsynced here (placeBatch makes a whole batch durable at once).
func (f *Folder) fetchFile(ctx context.Context, r *record.Record, sources []identity.ID) (string, error) {
	name := f.tmpNameFor(r)
	var (
		out     *os.File
		err     error
		pf      *prefetch
		modeSet bool // created with r's mode: no chmod needed
	)
	if r.Size >= hintMin {
		pf = f.takePrefetch(r.Path) // only such files are hinted
	}
	if pf != nil {
		// Blocks fetched ahead (HandleHint): their file becomes this
		// version's temporary file.
		out = pf.file
		if err = inDir(name, func() error { return os.Rename(pf.name, name) }); err != nil {
			out.Close()
			os.Remove(pf.name)
			return "", fmt.Errorf("take over blocks fetched ahead: %w", err)
		}
	} else {
		var perm uint32
		perm, modeSet = f.createMode(r)
		out, err = createTmpMode(name, perm)
		if err != nil {
			return "", fmt.Errorf("create temporary file: %w", err)
		}
	}
	// Where local files hold the blocks.
	local := f.idx.FindBlocks(r.Blocks, 4)
	var localBytes int64
	for i, b := range r.Blocks {
		if len(local[i]) > 0 {
			localBytes += int64(b.Size)
		}
	}
	// A large file that comes over the network is written around the page
	// cache (package directio): it is written once and made durable before
	// it is placed. One made mostly of local blocks (a renamed, copied or
	// slightly changed file) is not: its writes would wait for the disk
	// one block at a time where the page cache takes them at once.
	var w *directio.File
	switch {
	case pf != nil:
		w = pf.w
	case r.Size >= directMin && 2*localBytes < r.Size:
		if w, err = directio.New(out); err != nil {
			out.Close()
			os.Remove(name)
			return "", fmt.Errorf("temporary file: %w", err)
		}
	}
	ok := false
	defer func() {
		if w != nil && !ok {
			w.Discard()
		}
		out.Close()
		if !ok {
			os.Remove(name)
		}
	}()
	writeAt := out.WriteAt
	truncate := out.Truncate
	if w != nil {
		writeAt, truncate = w.WriteAt, w.Truncate
	}
	if len(r.Blocks) > 1 {
		// Blocks are written in parallel, out of order.
		if err := truncate(r.Size); err != nil {
			return "", fmt.Errorf("size temporary file: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		written  atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, window)
		next     int
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	// send requests one run of blocks; false once ctx is done.
	send := func(sp span) bool {
		if !acquire(ctx, sem) {
			return false
		}
		if !acquire(ctx, f.requests) {
			<-sem
			return false
		}
		src := sources[next%len(sources)]
		next++
		fetch := func() {
			defer func() { <-f.requests; <-sem }()
			data, err := f.requestSpan(ctx, src, sources, r.Path, sp)
			if err != nil {
				fail(err)
				return
			}
			_, err = writeAt(data, sp.at)
			protocol.ReleaseBlock(data)
			if err != nil {
				fail(fmt.Errorf("write temporary file: %w", err))
				return
			}
			kickWriteback(w, out, &written, sp.size)
			f.stMu.Lock()
			f.stats.BytesFetched += uint64(sp.size)
			f.stMu.Unlock()
			crashpoint.Hit(crashpoint.FetchMidTransfer)
		}
		if len(r.Blocks) == 1 {
			fetch() // most files: no goroutine of its own
		} else {
			wg.Go(fetch)
		}
		return true
	}
	var (
		off  int64
		runs []span // blocks to request; all but the last are sent
		// missed are blocks the index placed in local files that no
		// longer hold them; they are requested once the copies are done.
		missMu sync.Mutex
		missed []located
	)
	// request adds block b, at offset at, to the runs to request; false
	// once nothing more can be sent.
	request := func(at int64, b record.Block) bool {
		if len(sources) == 0 {
			fail(fmt.Errorf("%s: no connected peer has this version", r.Path))
			return false
		}
		if runs = appendRun(runs, at, b); len(runs) == 2 {
			if !send(runs[0]) {
				runs = nil
				return false
			}
			runs = runs[1:]
		}
		return true
	}
	// copyLocal copies block b from a local file that holds it, in the
	// window of blocks in flight: with direct I/O a write waits for the
	// disk, and a renamed or copied file is thousands of blocks.
	copyLocal := func(at int64, b record.Block, locs []index.BlockLoc) bool {
		if !acquire(ctx, sem) {
			return false
		}
		copyBlock := func() {
			defer func() { <-sem }()
			data := f.readLocalBlock(b, locs)
			if data == nil {
				missMu.Lock()
				missed = append(missed, located{at, b})
				missMu.Unlock()
				return
			}
			_, err := writeAt(data, at)
			protocol.ReleaseBlock(data)
			if err != nil {
				fail(fmt.Errorf("write temporary file: %w", err))
				return
			}
			f.stMu.Lock()
			f.stats.BytesReused += uint64(b.Size)
			f.stMu.Unlock()
		}
		if len(r.Blocks) == 1 {
			copyBlock() // most files: no goroutine of its own, as in send
		} else {
			wg.Go(copyBlock)
		}
		return true
	}
	for i, b := range r.Blocks {
		at := off
		off += int64(b.Size)
		if pf != nil && pf.holds(at, b) {
			continue // fetched ahead, verified
		}
		var going bool
		if len(local[i]) > 0 {
			going = copyLocal(at, b, local[i])
		} else {
			going = request(at, b)
		}
		if !going {
			runs = nil
			break
		}
	}
	if len(runs) == 1 {
		send(runs[0])
		runs = nil
	}
	// The copies must be done before the blocks they missed are known.
	wg.Wait()
	if len(missed) > 0 {
		slices.SortFunc(missed, func(x, y located) int { return cmp.Compare(x.at, y.at) })
		for _, m := range missed {
			if ctx.Err() != nil || !request(m.at, m.b) {
				runs = nil
				break
			}
		}
		if len(runs) == 1 {
			send(runs[0])
		}
	}
	wg.Wait()
	if firstErr != nil {
		return "", firstErr
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if w != nil {
		if err := w.Flush(); err != nil {
			return "", fmt.Errorf("write temporary file: %w", err)
		}
	}
	// Owner, mode and mtime through the open file (no path lookups), by
	// the fetch workers in parallel rather than under the folder lock
	// while placing; the mtime after the last write.
	if err := setMetaFD(out, r, f.withOwner && !f.createdAs(r), !modeSet); err != nil {
		return "", err
	}
	// Not fsynced here: placeBatch makes a whole batch durable at once.
	ok = true
	return name, nil
}

// writebackEvery is how much of a large file is written before the kernel
// is asked to start writing it to disk.
const writebackEvery = 8 << 20

// directMin is the smallest file written with direct I/O.
const directMin = 1 << 20

// kickWriteback starts the writeback of out's dirty pages (without waiting)
// each time another writebackEvery bytes were written to it, so that the
// syncfs before the file is placed finds most of a large file already on
// disk instead of writing all of it then. Direct writes (w) leave no dirty
// pages.
func kickWriteback(w *directio.File, out *os.File, written *atomic.Int64, n int) {
	if w != nil && w.Direct() {
		return
	}
	after := written.Add(int64(n))
	if after/writebackEvery != (after-int64(n))/writebackEvery {
		_ = unix.SyncFileRange(int(out.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}

// located is a block of a file and its offset.
type located struct {
	at int64
	b  record.Block
}

// span is a run of consecutive blocks of one file that one request asks
// for: a peer serves up to blocks.MaxSize bytes at any offset, so a run of
// small blocks costs one request and one response instead of one each.
type span struct {
	at     int64
	size   int
	blocks []record.Block
}

// extends reports whether block b, at offset at, continues s and still
// fits in one request.
func (s *span) extends(at int64, b record.Block) bool {
	return len(s.blocks) > 0 && at == s.at+int64(s.size) && s.size+int(b.Size) <= blocks.MaxSize
}

func (s *span) add(b record.Block) {
	s.blocks = append(s.blocks, b)
	s.size += int(b.Size)
}

// appendRun adds block b, at offset at, to the last run of runs if it
// continues it, or as a run of its own.
func appendRun(runs []span, at int64, b record.Block) []span {
	if n := len(runs); n > 0 && runs[n-1].extends(at, b) {
		runs[n-1].add(b)
		return runs
	}
	sp := span{at: at}
	sp.add(b)
	return append(runs, sp)
}

// each calls fn for every block of s, in order, with its offset in the
// file and its bytes in data (nil where data ends before the block), until
// fn returns false.
func (s *span) each(data []byte, fn func(at int64, b record.Block, part []byte) bool) {
	off := 0
	for _, b := range s.blocks {
		end := off + int(b.Size)
		var part []byte
		if end <= len(data) {
			part = data[off:end]
		}
		if !fn(s.at+int64(off), b, part) {
			return
		}
		off = end
	}
}

// mismatch returns the offset of the first block of s whose bytes in data
// do not match its hash, or -1 if all do.
func (s *span) mismatch(data []byte) int64 {
	bad := int64(-1)
	s.each(data, func(at int64, b record.Block, part []byte) bool {
		if part == nil || !blocks.Verify(part, b) {
			bad = at
			return false
		}
		return true
	})
	return bad
}

// spanRequest is the request for the blocks of sp of path. A peer serves
// the bytes at the offset; the hash (the first block's) is for the record.
func (f *Folder) spanRequest(path string, sp span) *protocol.Request {
	return &protocol.Request{Folder: f.cfg.ID, Path: path, Offset: sp.at, Size: uint32(sp.size), Hash: sp.blocks[0].Hash}
}

// requestSpan asks src for the blocks of sp, falling back to the other
// sources; every block is verified against its hash. The data may be
// handed back with protocol.ReleaseBlock once written.
func (f *Folder) requestSpan(ctx context.Context, src identity.ID, sources []identity.ID, path string, sp span) ([]byte, error) {
	order := append([]identity.ID{src}, sources...)
	var lastErr error
	for i, p := range order {
		if i > 0 && p == src {
			continue
		}
		data, err := f.opt.Peers.Request(ctx, p, f.spanRequest(path, sp))
		if err == nil && len(data) != sp.size {
			protocol.ReleaseBlock(data)
			err = fmt.Errorf("%d bytes of %s at %d from %s, asked for %d", len(data), path, sp.at, p.Short(), sp.size)
		} else if err == nil {
			if at := sp.mismatch(data); at >= 0 {
				protocol.ReleaseBlock(data)
				err = fmt.Errorf("block of %s at %d from %s does not match its hash", path, at, p.Short())
			}
		}
		if err == nil {
			return data, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, lastErr
}

// readLocalBlock returns the block's bytes (in a buffer from
// protocol.BlockBuf) if one of the local files the index names still
// holds it.
func (f *Folder) readLocalBlock(b record.Block, locs []index.BlockLoc) []byte {
	for _, l := range locs {
		if l.Size != b.Size {
			continue
		}
		fh, err := f.root.OpenReader(l.Path)
		if err != nil {
			continue
		}
		buf := protocol.BlockBuf(int(l.Size))
		n, err := fh.ReadAt(buf, l.Offset)
		fh.Close()
		if err == nil && n == len(buf) && blocks.Verify(buf, b) {
			return buf
		}
		protocol.ReleaseBlock(buf)
	}
	return nil
}

// createdAs reports whether a file this process creates under .tandem/tmp
// already has r's owner and group, so no chown is needed.
func (f *Folder) createdAs(r *record.Record) bool {
	return !f.tmpSetgid && r.UID == euid && r.GID == egid
}

// The process's effective user and group, read once rather than with two
// system calls for every file fetched.
var euid, egid = uint32(os.Geteuid()), uint32(os.Getegid())

// createMode returns the permission bits to create r's temporary file
// with, and whether they give the file exactly r's mode: the mode has no
// setuid, setgid or sticky bit (a chown would clear the first two, and
// they are set with chmod), the owner may read and write, the process's
// umask clears none of its bits, and no default ACL on .tandem/tmp
// decides the mode instead. Otherwise the file is created 0600 and its
// mode set with chmod.
func (f *Folder) createMode(r *record.Record) (perm uint32, exact bool) {
	perm = r.Mode & 0o777
	if !umaskKnown || f.tmpACL || r.Mode&^0o777 != 0 || perm&^processUmask != perm || perm&0o600 != 0o600 {
		return 0o600, false
	}
	return perm, true
}

// processUmask is the process's umask, read once from /proc/self/status
// (reading it with umask(2) means changing it for a moment).
var processUmask, umaskKnown = readUmask()

func readUmask() (uint32, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
}

// hasDefaultACL reports whether dir has a default ACL, which decides the
// mode of files created in it instead of the umask; true where that
// cannot be told.
func hasDefaultACL(dir string) bool {
	_, err := unix.Getxattr(dir, "system.posix_acl_default", nil)
	return err == nil || (err != unix.ENODATA && err != unix.ENOTSUP && err != unix.EOPNOTSUPP)
}

// setMetaFD sets owner, mode (with chmod) and mtime on an open temporary
// file.
func setMetaFD(fh *os.File, r *record.Record, withOwner, chmod bool) error {
	fd := int(fh.Fd())
	if withOwner {
		if err := unix.Fchown(fd, int(r.UID), int(r.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if chmod {
		if err := fh.Chmod(os.FileMode(r.Mode&0o777) | modeBits(r.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	// futimens: utimensat on the descriptor itself (a NULL path).
	ts := [2]unix.Timespec{unix.NsecToTimespec(r.MTime), unix.NsecToTimespec(r.MTime)}
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return fmt.Errorf("set mtime: %w", e)
	}
	return nil
}

// setMetaAbs sets owner, mode and mtime on a prepared temporary file or
// link, before it is renamed into place.
func setMetaAbs(abs string, r *record.Record, withOwner bool) error {
	if withOwner {
		if err := os.Lchown(abs, int(r.UID), int(r.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if r.Type != record.Symlink {
		if err := os.Chmod(abs, os.FileMode(r.Mode&0o777)|modeBits(r.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(r.MTime), unix.NsecToTimespec(r.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, abs, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

func modeBits(m uint32) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// recover finishes what a crash interrupted: a remote version renamed into
// place but not yet committed is committed if the disk holds exactly it;
// leftover temporary files are removed.
func (f *Folder) recover() error {
	var pend []record.Record
	if err := f.idx.View(func(tx *index.Tx) error {
		var err error
		pend, err = tx.Pending()
		return err
	}); err != nil {
		return err
	}
	// Records committed here get new sequence numbers: the node is told,
	// as after any commit, so that a peer that connected meanwhile gets
	// them (its index stream waits for such a signal).
	committed := false
	defer func() {
		if committed {
			f.opt.Changed()
		}
	}()
	for _, r := range pend {
		st, ok, err := f.root.Lstat(r.Path)
		match, placed := false, false
		switch {
		case r.Deleted:
			match = errors.Is(err, os.ErrNotExist)
		case err != nil || !ok || st.Type != r.Type:
		case r.Type == record.Dir:
			match = true
		case r.Type == record.File && st.Size == r.Size:
			bl, size, herr := f.hashFile(r.Path, 0)
			cur := record.Record{Type: record.File, Size: size, Blocks: bl}
			match = herr == nil && record.SameContent(&cur, &r)
		case r.Type == record.Symlink:
			t, _ := f.root.OS().Readlink(r.Path)
			match = t == r.Target
		}
		if !match && !r.Deleted && r.Type != record.Dir {
			// The disk does not hold r. If r's temporary file is gone, r
			// was renamed into place (or was a metadata-only change of
			// the same content) and then changed or deleted here before
			// the commit: r is recorded, without a stat cache, so that
			// the scan records that change as one that saw r. Otherwise
			// r never reached its name and is fetched again.
			placed = true
			for _, name := range f.tmpNamesFor(&r) {
				if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
					placed = false
				}
			}
		}
		err = f.idx.Update(func(tx *index.Tx) error {
			if placed {
				f.log.Info("recording a change interrupted by a crash; the path was changed since", "path", r.Path)
				rec := r
				rec.Inode, rec.CTime = 0, 0
				if _, err := tx.Put(rec); err != nil {
					return err
				}
				if err := tx.ClearPending(r.Path); err != nil {
					return err
				}
				return clearNeedIfDone(tx, r.Path, &rec)
			}
			if !match {
				return tx.ClearPending(r.Path)
			}
			f.log.Info("completing a change interrupted by a crash", "path", r.Path)
			rec := r
			if !r.Deleted {
				if err := f.root.SetMeta(r.Path, &rec, f.withOwner); err != nil {
					return err
				}
				st, _, err := f.root.Lstat(r.Path)
				if err != nil {
					return err
				}
				rec.Inode, rec.CTime = st.Inode, st.CTime
			}
			if _, err := tx.Put(rec); err != nil {
				return err
			}
			if err := tx.ClearPending(r.Path); err != nil {
				return err
			}
			return clearNeedIfDone(tx, r.Path, &rec)
		})
		if err != nil {
			return err
		}
		committed = committed || placed || match
	}
	removeTmp(f.tmpDir())
	return nil
}

// removeTmp removes what dir (.tandem/tmp) holds, keeping dir itself.
func removeTmp(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			removeTmp(p)
		}
		os.Remove(p)
	}
}

// pruneTmp removes the shards of .tandem/tmp that are empty (all of them
// once nothing is being fetched): the first temporary file of a round of
// pulling creates its shard again (createTmpMode).
func (f *Folder) pruneTmp() {
	for _, d := range tmpShards {
		_ = os.Remove(f.tmpDir() + "/" + string(d))
	}
}

// inDir runs op, which makes name, and runs it again after creating
// name's directory if that is missing (a shard of .tandem/tmp is made on
// first use).
func inDir(name string, op func() error) error {
	err := op()
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(name), 0o700); err == nil {
			err = op()
		}
	}
	return err
}

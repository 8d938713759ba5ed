// Package directio writes a file's content at arbitrary offsets, from many
// goroutines at once, with direct I/O (O_DIRECT): the bytes go from the
// writer's buffer to the disk without passing through the page cache.
//
// A receiver writes each large file it fetches once and must make it
// durable before showing it, so the page cache only costs it: every page
// is allocated, copied into and written back, and pushes out pages the
// server's own programs use. With direct I/O the write is one copy into an
// aligned buffer and the disk's own transfer.
//
// Direct I/O needs the offset, the length and the memory of every write
// aligned to the filesystem's block. Writes here land anywhere (blocks are
// cut by content), so each write's aligned middle is written at once and
// its unaligned ends are held in memory, by page, until the writes on
// either side complete the page; Flush writes what is still partial,
// merged with the file's content. A filesystem without direct I/O, or one
// that refuses a write, gets ordinary writes.
package directio

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment direct writes use: a page, which is a multiple of
// the logical block size of the disks and filesystems this runs on.
const Align = 4096

// maxPartial bounds the partial pages held in memory for one file (16 MiB);
// beyond it a page is merged with the file's content and written at once.
const maxPartial = 4096

// chunk is the largest write made at once from a staging buffer, and
// maxWriters how many such writes all files make at once: each holds a
// staging buffer (8 MiB in all), and a few writes in flight keep a disk
// busy.
const (
	chunk      = 1 << 20
	maxWriters = 8
)

// File writes one file's content. Its methods may be called concurrently,
// except Flush and Discard, which must follow every WriteAt.
type File struct {
	f *os.File

	mu      sync.Mutex
	direct  bool            // the file is open with O_DIRECT
	partial map[int64]*page // by page offset
	// size is the file's size as ordinary writes would leave it: its
	// size when opened or set by Truncate, or the end of the furthest
	// write. Merging a partial page may make the file longer until Flush.
	size int64
}

// page is a partial page: the bytes written to it so far and which.
type page struct {
	buf  *[]byte // Align bytes, aligned
	have [Align / 64]uint64
}

// New writes f's content from now on; f must be open for reading and
// writing. It turns on direct I/O for f where the filesystem allows it
// (other uses of f see the same flag) and leaves ordinary writes
// otherwise. The caller still owns f, and closes it after Flush or
// Discard.
func New(f *os.File) (*File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	w := &File{f: f, partial: map[int64]*page{}, size: st.Size}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err == nil {
		// Refused (EINVAL) where the filesystem has no direct I/O.
		_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, fl|unix.O_DIRECT)
		w.direct = err == nil
	}
	return w, nil
}

// Truncate sets the file's size.
func (w *File) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.f.Truncate(size); err != nil {
		return err
	}
	w.size = size
	return nil
}

// Direct reports whether writes currently bypass the page cache.
func (w *File) Direct() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.direct
}

// WriteAt writes p at offset off. Part of it may only be in memory until a
// neighbouring write or Flush.
func (w *File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write %s: negative offset", w.f.Name())
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	w.mu.Lock()
	w.size = max(w.size, end)
	direct := w.direct
	w.mu.Unlock()
	if !direct {
		return w.f.WriteAt(p, off)
	}
	lo, hi := alignUp(off), alignDown(end)
	if lo > hi {
		// Within one page.
		if err := w.stage(p, off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// Whole pages are written at once, with the partial pages at either
	// end where what is held of them completes them (a neighbouring
	// block arrived first); otherwise p's bytes of those pages are held.
	w.mu.Lock()
	if lo < hi && len(w.partial) > 0 {
		w.dropRange(lo, hi) // older than p
	}
	var head, tail *page
	if off < lo {
		if pg := w.partial[lo-Align]; pg != nil && pg.fullWith(int(off-(lo-Align)), Align) {
			head = pg
			delete(w.partial, lo-Align)
		}
	}
	if hi < end {
		if pg := w.partial[hi]; pg != nil && pg.fullWith(0, int(end-hi)) {
			tail = pg
			delete(w.partial, hi)
		}
	}
	w.mu.Unlock()
	for _, pg := range []*page{head, tail} {
		if pg != nil {
			defer putBuf(pg.buf)
		}
	}
	if off < lo && head == nil {
		if err := w.stage(p[:lo-off], off); err != nil {
			return 0, err
		}
	}
	if hi < end && tail == nil {
		if err := w.stage(p[hi-off:], hi); err != nil {
			return 0, err
		}
	}
	start, stop := lo, hi
	if head != nil {
		start = lo - Align
	}
	if tail != nil {
		stop = hi + Align
	}
	if start < stop {
		if err := w.writeRange(start, stop, p, off, head, tail); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// writeRange writes the whole pages [start, stop) through an aligned
// buffer: p's bytes (at off), and where p does not reach, head's (the page
// before alignUp(off)) and tail's (the page at alignDown(off+len(p))).
func (w *File) writeRange(start, stop int64, p []byte, off int64, head, tail *page) error {
	end := off + int64(len(p))
	buf := getChunk()
	defer putChunk(buf)
	for at := start; at < stop; {
		n := min(stop-at, chunk) // a multiple of Align: no page is split
		b := (*buf)[:n]
		if head != nil && at == start {
			copy(b, *head.buf)
		}
		if t := alignDown(end); tail != nil && at+n > t {
			copy(b[t-at:], *tail.buf)
		}
		from, to := max(at, off), min(at+n, end)
		copy(b[from-at:], p[from-off:to-off])
		if err := w.pwrite(b, at); err != nil {
			return err
		}
		at += n
	}
	return nil
}

// dropRange forgets the partial pages in [lo, hi); w.mu is held.
func (w *File) dropRange(lo, hi int64) {
	if int64(len(w.partial)) < (hi-lo)/Align {
		for at, pg := range w.partial {
			if at >= lo && at < hi {
				putBuf(pg.buf)
				delete(w.partial, at)
			}
		}
		return
	}
	for at := lo; at < hi; at += Align {
		if pg, ok := w.partial[at]; ok {
			putBuf(pg.buf)
			delete(w.partial, at)
		}
	}
}

// pwrite writes b (aligned in memory, length and offset) with direct I/O.
// If the filesystem refuses, the file is switched to ordinary writes.
func (w *File) pwrite(b []byte, off int64) error {
	_, err := w.f.WriteAt(b, off)
	if errors.Is(err, unix.EINVAL) {
		w.mu.Lock()
		err = w.fallBack()
		w.mu.Unlock()
		if err == nil {
			_, err = w.f.WriteAt(b, off)
		}
	}
	return err
}

// fallBack switches the file to ordinary writes; w.mu is held. The partial
// pages stay held and Flush writes them as they are.
func (w *File) fallBack() error {
	if !w.direct {
		return nil
	}
	fl, err := unix.FcntlInt(w.f.Fd(), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(w.f.Fd(), unix.F_SETFL, fl&^unix.O_DIRECT)
	}
	if err != nil {
		return fmt.Errorf("write %s: turn off direct I/O: %w", w.f.Name(), err)
	}
	w.direct = false
	return nil
}

// stage holds p, which lies within the page at alignDown(off), and writes
// the page once it is complete.
func (w *File) stage(p []byte, off int64) error {
	at := alignDown(off)
	w.mu.Lock()
	if !w.direct {
		w.mu.Unlock()
		_, err := w.f.WriteAt(p, off)
		return err
	}
	pg := w.partial[at]
	if pg == nil {
		pg = &page{buf: getBuf()}
		w.partial[at] = pg
	}
	i := int(off - at)
	copy((*pg.buf)[i:], p)
	pg.mark(i, i+len(p))
	full := pg.full()
	tooMany := !full && len(w.partial) > maxPartial
	if full || tooMany {
		delete(w.partial, at)
	}
	if full {
		w.mu.Unlock()
		defer putBuf(pg.buf)
		return w.pwrite(*pg.buf, at)
	}
	if tooMany {
		// Too many held: merge this one with the file now, under the
		// lock so that no other write to the page comes between.
		defer w.mu.Unlock()
		defer putBuf(pg.buf)
		return w.merge(at, pg)
	}
	w.mu.Unlock()
	return nil
}

// merge writes partial page pg at at, with the file's content where pg
// has no bytes; w.mu is held.
func (w *File) merge(at int64, pg *page) error {
	if !w.direct {
		return w.writeHeld(at, pg)
	}
	disk := getBuf()
	defer putBuf(disk)
	d := *disk
	clear(d)
	if err := w.readPage(d, at); err != nil {
		return err
	}
	for i := range Align {
		if pg.has(i) {
			d[i] = (*pg.buf)[i]
		}
	}
	// Writing the whole page may extend the file past its end; Flush
	// sets the size back.
	_, err := w.f.WriteAt(d, at)
	if errors.Is(err, unix.EINVAL) {
		if err = w.fallBack(); err == nil {
			return w.writeHeld(at, pg)
		}
	}
	return err
}

// readPage reads the page at at into d (aligned); bytes past the file's end
// are left as they are. A direct read returns less than asked only at the
// file's end.
func (w *File) readPage(d []byte, at int64) error {
	for {
		_, err := unix.Pread(int(w.f.Fd()), d, at)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read back %s: %w", w.f.Name(), err)
		}
		return nil
	}
}

// writeHeld writes the bytes pg holds with ordinary writes, one run at a
// time; w.mu is held.
func (w *File) writeHeld(at int64, pg *page) error {
	for i := 0; i < Align; {
		if !pg.has(i) {
			i++
			continue
		}
		j := i
		for j < Align && pg.has(j) {
			j++
		}
		if _, err := w.f.WriteAt((*pg.buf)[i:j], at+int64(i)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// Flush writes every partial page (merged with the file's content) and
// leaves the file as long as ordinary writes would have.
func (w *File) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for at, pg := range w.partial {
		if err := w.merge(at, pg); err != nil {
			return fmt.Errorf("flush %s: %w", w.f.Name(), err)
		}
		putBuf(pg.buf)
		delete(w.partial, at)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(w.f.Fd()), &st); err != nil {
		return fmt.Errorf("flush %s: %w", w.f.Name(), err)
	}
	if st.Size != w.size {
		if err := unix.Ftruncate(int(w.f.Fd()), w.size); err != nil {
			return fmt.Errorf("flush %s: %w", w.f.Name(), err)
		}
	}
	return nil
}

// Discard forgets what is held in memory, without writing it: for a file
// that is given up.
func (w *File) Discard() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for at, pg := range w.partial {
		putBuf(pg.buf)
		delete(w.partial, at)
	}
}

// mark records that bytes [i, j) of the page are held.
func (pg *page) mark(i, j int) {
	for i < j {
		b := i % 64
		n := min(64-b, j-i)
		m := ^uint64(0)
		if n < 64 {
			m = 1<<n - 1
		}
		pg.have[i/64] |= m << b
		i += n
	}
}

// fullWith reports whether the page would be complete with bytes [i, j)
// added.
func (pg *page) fullWith(i, j int) bool {
	c := *pg
	c.mark(i, j)
	return c.full()
}

func (pg *page) has(i int) bool { return pg.have[i/64]&(1<<(i%64)) != 0 }

func (pg *page) full() bool {
	for _, w := range pg.have {
		if w != ^uint64(0) {
			return false
		}
	}
	return true
}

func alignDown(n int64) int64 { return n &^ (Align - 1) }
func alignUp(n int64) int64   { return alignDown(n + Align - 1) }

// Partial pages come from a pool; staging buffers are bounded: there are
// at most maxWriters, and a writer waits for one.
var (
	pages      = sync.Pool{New: func() any { return aligned(Align) }}
	chunks     = make(chan *[]byte, maxWriters)
	chunksMade atomic.Int32
)

func getBuf() *[]byte  { return pages.Get().(*[]byte) }
func putBuf(b *[]byte) { pages.Put(b) }

func getChunk() *[]byte {
	select {
	case b := <-chunks:
		return b
	default:
	}
	if chunksMade.Add(1) <= maxWriters {
		return aligned(chunk)
	}
	return <-chunks
}

func putChunk(b *[]byte) { chunks <- b }

// aligned returns n bytes whose address is a multiple of Align.
func aligned(n int) *[]byte {
	raw := make([]byte, n+Align)
	skip := (Align - int(uintptr(unsafe.Pointer(&raw[0]))%Align)) % Align
	b := raw[skip : skip+n : skip+n]
	return &b
}

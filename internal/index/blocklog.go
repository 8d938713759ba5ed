package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// The block map (where each block is stored locally) has two parts. The
// blocks bucket is keyed by hash, which FindBlock needs, but keys of
// random hashes land on random pages: a transaction storing a few
// hundred small files dirtied a page of that bucket for each, and every
// commit wrote them all again (bbolt copies each changed page), which
// cost as much as the rest of the commit. New entries therefore go first
// to the block log, a bucket keyed by a counter, where a transaction's
// entries lie together on its last pages, and are looked up through a
// map in memory. Once the log holds blockLogMerge entries, every write
// transaction moves its blockLogChunk oldest entries into the blocks
// bucket, in key order: while that bucket has fewer pages than a chunk
// has entries, a page takes many entries at once. A chunk is bounded
// because a transaction holds every page it changes in memory until it
// commits; in a large index a chunk's entries land on as many pages, as
// they did before the log, and moving the whole log at once held the
// whole bucket (hundreds of MiB with a million files).
//
//	blocklog  n(8 BE) -> hash(32) offset(8) size(4) path
var (
	bBlockLog  = []byte("blocklog")
	kBlockLogN = []byte("blocklogn") // in meta: the log's next key
)

// blockLogMerge is the size of the log from which write transactions
// move its oldest entries to the blocks bucket, blockLogChunk at a time
// (variables for tests).
var (
	blockLogMerge = 1 << 15
	blockLogChunk = 1 << 10
)

// blockLog is the in-memory map of one folder's block log, shared by
// every Folder value of that folder. It holds exactly what the committed
// log holds: write transactions of the folder run one at a time under
// wmu, and their changes to the log are applied to the map after they
// commit, before the next one starts.
type blockLog struct {
	wmu    sync.Mutex // held by a folder's write transaction, commit included
	mu     sync.RWMutex
	byHash map[[32]byte][]logEntry
	n      int // entries in byHash
}

// logEntry is one block stored in the log.
type logEntry struct {
	key  uint64
	path string
	off  int64
	size uint32
}

// txLog is what one write transaction changed in the log: entries added
// and committed entries deleted (by key).
type txLog struct {
	adds map[[32]byte][]logEntry
	dels map[uint64][32]byte // key -> the entry's hash
}

func encodeLogEntry(h [32]byte, e logEntry) []byte {
	v := make([]byte, 0, 44+len(e.path))
	v = append(v, h[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(e.off))
	v = binary.BigEndian.AppendUint32(v, e.size)
	return append(v, e.path...)
}

func decodeLogEntry(k, v []byte) ([32]byte, logEntry, bool) {
	if len(k) != 8 || len(v) < 44 {
		return [32]byte{}, logEntry{}, false
	}
	return [32]byte(v[:32]), logEntry{key: binary.BigEndian.Uint64(k), off: int64(binary.BigEndian.Uint64(v[32:])), size: binary.BigEndian.Uint32(v[40:]), path: string(v[44:])}, true
}

// load fills the map from the log bucket (at start-up).
func (l *blockLog) load(bk *bolt.Bucket) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byHash, l.n = map[[32]byte][]logEntry{}, 0
	return bk.ForEach(func(k, v []byte) error {
		h, e, ok := decodeLogEntry(k, v)
		if !ok {
			return fmt.Errorf("index: block log entry %x is malformed", k)
		}
		l.byHash[h] = append(l.byHash[h], e)
		l.n++
		return nil
	})
}

// apply makes the map follow a committed transaction's changes.
func (l *blockLog) apply(c *txLog) {
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, h := range c.dels {
		es := l.byHash[h]
		kept := slices.DeleteFunc(es, func(e logEntry) bool { return e.key == key })
		l.n -= len(es) - len(kept)
		if len(kept) == 0 {
			delete(l.byHash, h)
		} else {
			l.byHash[h] = kept
		}
	}
	for h, es := range c.adds {
		l.byHash[h] = append(l.byHash[h], es...)
		l.n += len(es)
	}
}

// logged returns the log's entries for h as t sees them: the committed
// ones it did not delete, and its own.
func (t *Tx) logged(h [32]byte) []logEntry {
	t.log.mu.RLock()
	var out []logEntry
	for _, e := range t.log.byHash[h] {
		if t.logTx == nil || !t.deleted(e.key) {
			out = append(out, e)
		}
	}
	t.log.mu.RUnlock()
	if t.logTx != nil {
		out = append(out, t.logTx.adds[h]...)
	}
	return out
}

// deleted reports whether t deleted the log's entry key.
func (t *Tx) deleted(key uint64) bool {
	_, ok := t.logTx.dels[key]
	return ok
}

// changes returns t's record of its changes to the log, starting it.
func (t *Tx) changes() *txLog {
	if t.logTx == nil {
		t.logTx = &txLog{adds: map[[32]byte][]logEntry{}, dels: map[uint64][32]byte{}}
	}
	return t.logTx
}

// logBlock adds one block of path to the log.
func (t *Tx) logBlock(h [32]byte, path string, off int64, size uint32) error {
	meta := t.sub(bMeta)
	n := u64(t.lookup(bMeta, kBlockLogN))
	if err := meta.Put(kBlockLogN, be(n+1)); err != nil {
		return err
	}
	e := logEntry{key: n, path: path, off: off, size: size}
	lb := t.sub(bBlockLog)
	lb.FillPercent = 1 // keys only ever grow
	if err := lb.Put(be(n), encodeLogEntry(h, e)); err != nil {
		return err
	}
	c := t.changes()
	c.adds[h] = append(c.adds[h], e)
	return nil
}

// unlogBlock deletes the log's entry for block h of path at off, if the
// log holds one, and reports whether it did.
func (t *Tx) unlogBlock(h [32]byte, path string, off int64) (bool, error) {
	for _, e := range t.logged(h) {
		if e.path == path && e.off == off {
			return true, t.dropLogged(h, e.key)
		}
	}
	return false, nil
}

// dropLogged deletes the log's entry key (for block h): from t's own
// additions if t made it, else from the committed log when t commits.
func (t *Tx) dropLogged(h [32]byte, key uint64) error {
	c := t.changes()
	if es := c.adds[h]; slices.ContainsFunc(es, func(e logEntry) bool { return e.key == key }) {
		c.adds[h] = slices.DeleteFunc(es, func(e logEntry) bool { return e.key == key })
	} else {
		c.dels[key] = h
	}
	return t.sub(bBlockLog).Delete(be(key))
}

// logSize is the number of entries in the log as t sees it.
func (t *Tx) logSize() int {
	t.log.mu.RLock()
	n := t.log.n
	t.log.mu.RUnlock()
	if t.logTx != nil {
		n -= len(t.logTx.dels)
		for _, es := range t.logTx.adds {
			n += len(es)
		}
	}
	return n
}

// mergeLogIfFull moves the log's blockLogChunk oldest entries into the
// blocks bucket once it holds blockLogMerge entries.
func (t *Tx) mergeLogIfFull() error {
	if t.logTx == nil || len(t.logTx.adds) == 0 || t.logSize() < blockLogMerge {
		return nil
	}
	return t.mergeLog(blockLogChunk)
}

// mergeLog moves the log's n oldest entries into the blocks bucket.
func (t *Tx) mergeLog(n int) error {
	type kv struct{ k, v []byte }
	var (
		moved []kv
		keys  []uint64
		hs    [][32]byte
	)
	lb := t.sub(bBlockLog)
	c := lb.Cursor()
	for k, v := c.First(); k != nil && len(moved) < n; k, v = c.Next() {
		h, e, ok := decodeLogEntry(k, v)
		if !ok {
			return fmt.Errorf("index: block log entry %x is malformed", k)
		}
		val := make([]byte, 12)
		binary.BigEndian.PutUint64(val, uint64(e.off))
		binary.BigEndian.PutUint32(val[8:], e.size)
		moved = append(moved, kv{blockKey(h, e.path), val})
		keys, hs = append(keys, e.key), append(hs, h)
	}
	// In key order; of two entries with one key (the same block twice
	// in a file), the later one last, as Put stored them before the log.
	slices.SortStableFunc(moved, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	bk := t.sub(bBlocks)
	for _, e := range moved {
		t.touch(1) // a page of a large index's bucket each (memory.go)
		if err := bk.Put(e.k, e.v); err != nil {
			return err
		}
	}
	for i, key := range keys {
		if err := t.dropLogged(hs[i], key); err != nil {
			return err
		}
	}
	return nil
}

// blockKey is the blocks bucket's key of block h of path.
func blockKey(h [32]byte, path string) []byte {
	return append(h[:len(h):len(h)], path...)
}

// blockLocs turns up to limit log entries into locations.
func blockLocs(es []logEntry, limit int) []BlockLoc {
	var out []BlockLoc
	for _, e := range es {
		if len(out) >= limit {
			break
		}
		out = append(out, BlockLoc{Path: e.path, Offset: e.off, Size: e.size})
	}
	return out
}

// Package index is tandem's persistent, crash-safe state: for each folder,
// the local record of every path (with its version vector and a local
// sequence number), what each peer has announced, which paths need work,
// and where each content block can be found locally. It is a bbolt
// database; every change is one durable transaction.
package index

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	bolt "go.etcd.io/bbolt"

	"tandem/internal/record"
)

// Bucket layout, per folder bucket "f/<folder id>":
//
//	files   path -> local record
//	seq     seq (8 bytes BE) -> path
//	need    path -> ""                  remote versions not yet dealt with
//	pending path -> record              a remote version being put in place
//	blocks  hash(32) path -> offset(8) size(4)
//	blocklog n(8 BE) -> hash(32) offset(8) size(4) path   (see blocklog.go)
//	meta    "seq", "indexid", "live" (records not deleted), "needs"
//	peers/<peer id>/files  path -> the peer's record
//	peers/<peer id>/meta   "indexid", "seq"
var (
	bFiles   = []byte("files")
	bSeq     = []byte("seq")
	bNeed    = []byte("need")
	bPending = []byte("pending")
	bBlocks  = []byte("blocks")
	bMeta    = []byte("meta")
	bPeers   = []byte("peers")
	kSeq     = []byte("seq")
	kIndexID = []byte("indexid")
	kLive    = []byte("live")
	kNeeds   = []byte("needs")
)

// DB is the index of all folders of one node.
type DB struct {
	bolt *bolt.DB
	txs  atomic.Uint64 // transactions run, for ReleaseIfUsed
	// Random page accesses since the last release (see memory.go).
	touched atomic.Int64
	// releases counts the mapping releases made by touch (for tests).
	releases atomic.Int64
	// filters holds each folder's blockFilter, by bucket name, shared by
	// every Folder value of that folder.
	filtersMu sync.Mutex
	filters   map[string]*blockFilter
	logs      map[string]*blockLog // each folder's block log, likewise
}

// initialMapping is how much address space the index maps from the
// start. bbolt otherwise maps the file at the next power of two of its
// size and maps it anew each time it outgrows that: a write transaction
// doing so first copies every key and value it has touched out of the
// old mapping (a quarter of the allocations of a node receiving 10 000
// small files, BenchmarkApplySmallFiles), and waits for every reader to
// finish. Address space is not memory: only the pages read count in the
// RSS, as before.
const initialMapping = 1 << 30

// Open opens (or creates) the index at path. It fails fast if another
// process holds it.
func Open(path string) (*DB, error) { return OpenMapping(path, initialMapping) }

// OpenMapping is Open with the first mapping of mapping bytes, for tests
// of what happens when an index outgrows its mapping.
func OpenMapping(path string, mapping int) (*DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType, InitialMmapSize: mapping})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("index %s is locked: is another tandem running with this --home?", path)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return &DB{bolt: b}, nil
}

// Close closes the database.
func (db *DB) Close() error { return db.bolt.Close() }

// Folder returns the index of one folder, creating its buckets.
func (db *DB) Folder(id string) (*Folder, error) {
	f := &Folder{db: db, name: []byte("f/" + id)}
	db.filtersMu.Lock()
	defer db.filtersMu.Unlock()
	if db.filters == nil {
		db.filters = map[string]*blockFilter{}
		db.logs = map[string]*blockLog{}
	}
	fresh := db.filters[string(f.name)] == nil
	if fresh {
		db.filters[string(f.name)] = &blockFilter{}
		db.logs[string(f.name)] = &blockLog{}
	}
	f.filter = db.filters[string(f.name)]
	f.log = db.logs[string(f.name)]
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(f.name)
		if err != nil {
			return err
		}
		for _, n := range [][]byte{bFiles, bSeq, bNeed, bPending, bBlocks, bBlockLog, bMeta, bPeers} {
			if _, err := root.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		meta := root.Bucket(bMeta)
		if err := backfillCounts(root); err != nil {
			return err
		}
		if fresh {
			if err := f.log.load(root.Bucket(bBlockLog)); err != nil {
				return err
			}
			f.filter.load(root, int64(u64(meta.Get(kLive))), func() {
				if tx.Size() >= releaseFloor {
					_ = madviseDontNeed(db.bolt.Info().Data, tx.Size())
				}
			})
		}
		if meta.Get(kIndexID) == nil {
			var b [8]byte
			if _, err := rand.Read(b[:]); err != nil {
				return err
			}
			b[0] |= 1 // never zero
			return meta.Put(kIndexID, b[:])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index: folder %q: %w", id, err)
	}
	return f, nil
}

// backfillCounts computes the live-record and need counters of an index
// written before they existed (once; afterwards Put, SetNeed and
// ClearNeed keep them).
func backfillCounts(root *bolt.Bucket) error {
	meta := root.Bucket(bMeta)
	if meta.Get(kLive) == nil {
		var live uint64
		err := root.Bucket(bFiles).ForEach(func(k, v []byte) error {
			r, err := decode(v)
			if err != nil {
				return fmt.Errorf("decode %q: %w", k, err)
			}
			if !r.Deleted {
				live++
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := meta.Put(kLive, be(live)); err != nil {
			return err
		}
	}
	if meta.Get(kNeeds) == nil {
		return meta.Put(kNeeds, be(uint64(root.Bucket(bNeed).Stats().KeyN)))
	}
	return nil
}

// Folder is the index of one folder.
type Folder struct {
	db     *DB
	name   []byte
	filter *blockFilter
	log    *blockLog
}

// Update runs fn in a read-write transaction, committed durably.
func (f *Folder) Update(fn func(*Tx) error) error {
	f.db.txs.Add(1)
	f.log.wmu.Lock()
	defer f.log.wmu.Unlock()
	var t *Tx
	err := f.db.bolt.Update(func(tx *bolt.Tx) error {
		t = &Tx{b: tx.Bucket(f.name), tx: tx, db: f.db, filter: f.filter, log: f.log}
		if err := fn(t); err != nil {
			return err
		}
		return t.mergeLogIfFull()
	})
	if err == nil {
		f.log.apply(t.logTx)
	}
	return err
}

// View runs fn in a read-only transaction.
func (f *Folder) View(fn func(*Tx) error) error {
	f.db.txs.Add(1)
	return f.db.bolt.View(func(tx *bolt.Tx) error {
		return fn(&Tx{b: tx.Bucket(f.name), tx: tx, db: f.db, filter: f.filter, log: f.log})
	})
}

// Tx is a transaction on one folder's index.
type Tx struct {
	b      *bolt.Bucket
	tx     *bolt.Tx
	db     *DB
	filter *blockFilter
	// nextBloom is the block filter rebuilt in this write transaction,
	// taking over when it commits (blockFilter.add).
	nextBloom *bloomSet
	// remotes are the peers' files buckets, read by Remotes once per
	// transaction (a path's remote records are looked up for every file
	// placed or planned); forgetRemotes drops them where a peer or its
	// files bucket is created or replaced.
	remotes      []remoteFiles
	remotesKnown bool
	// log is the folder's block log; logTx what this write transaction
	// changed in it, applied to log once it commits (blocklog.go).
	log   *blockLog
	logTx *txLog
	// opened are the folder's buckets this transaction used (txcache.go).
	opened []*opened
}

// remoteFiles is one peer's files bucket.
type remoteFiles struct {
	id    [32]byte
	files *bolt.Bucket
	c     *bolt.Cursor // on files, for lookups (txcache.go)
}

// decMode reads records stored in the earlier CBOR form (see codec.go).
var decMode, _ = cbor.DecOptions{MaxArrayElements: 1 << 24}.DecMode()

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func be(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// IndexID identifies this incarnation of the folder's index; a peer that
// sees it change starts over from sequence 0.
func (t *Tx) IndexID() uint64 { return u64(t.lookup(bMeta, kIndexID)) }

// MaxSeq is the highest local sequence number assigned.
func (t *Tx) MaxSeq() uint64 { return u64(t.lookup(bMeta, kSeq)) }

// Get returns the local record of path.
func (t *Tx) Get(path string) (record.Record, bool, error) { return t.get(path, decode) }

func (t *Tx) get(path string, dec func([]byte) (record.Record, error)) (record.Record, bool, error) {
	t.touch(1)
	v := t.lookup(bFiles, []byte(path))
	if v == nil {
		return record.Record{}, false, nil
	}
	r, err := dec(v)
	if err != nil {
		return r, false, fmt.Errorf("index: decode %q: %w", path, err)
	}
	return r, true, nil
}

// GetStat is Get passing a partial record: what a scan compares with the
// disk (see ChildrenStat).
func (t *Tx) GetStat(path string) (record.Record, bool, error) { return t.get(path, decodeStat) }

// Put stores r as the local record of r.Path under a new sequence number,
// so that peers are told about it, and keeps the block map in step. It
// returns the stored record.
func (t *Tx) Put(r record.Record) (record.Record, error) {
	t.touch(2 + len(r.Blocks))
	old, had, err := t.Get(r.Path)
	if err != nil {
		return r, err
	}
	meta := t.sub(bMeta)
	seq := u64(t.lookup(bMeta, kSeq)) + 1
	if err := meta.Put(kSeq, be(seq)); err != nil {
		return r, err
	}
	var delta int64
	if had && !old.Deleted {
		delta--
	}
	if !r.Deleted {
		delta++
	}
	if err := t.add(kLive, delta); err != nil {
		return r, err
	}
	if had {
		if err := t.sub(bSeq).Delete(be(old.Seq)); err != nil {
			return r, err
		}
		if err := t.blocks(&old, false); err != nil {
			return r, err
		}
	}
	r.Seq = seq
	sb := t.sub(bSeq)
	sb.FillPercent = 1 // keys only ever grow: pack pages full
	if err := sb.Put(be(seq), []byte(r.Path)); err != nil {
		return r, err
	}
	if err := t.blocks(&r, true); err != nil {
		return r, err
	}
	return r, t.putFile(&r)
}

// SetStat updates only the local stat cache of a record, without a new
// sequence number: peers are not told.
func (t *Tx) SetStat(path string, inode uint64, ctime int64) error {
	r, ok, err := t.Get(path)
	if err != nil || !ok {
		return err
	}
	r.Inode, r.CTime = inode, ctime
	return t.putFile(&r)
}

func (t *Tx) putFile(r *record.Record) error {
	v, err := encode(r)
	if err != nil {
		return fmt.Errorf("index: encode %q: %w", r.Path, err)
	}
	return t.sub(bFiles).Put([]byte(r.Path), v)
}

func (t *Tx) blocks(r *record.Record, add bool) error {
	if r.Deleted || r.Type != record.File {
		return nil
	}
	var off uint64
	for _, blk := range r.Blocks {
		var err error
		if add {
			if err = t.logBlock(blk.Hash, r.Path, int64(off), blk.Size); err == nil {
				t.filter.add(t, blk.Hash[:], t.b)
			}
		} else {
			var logged bool
			if logged, err = t.unlogBlock(blk.Hash, r.Path, int64(off)); err == nil && !logged {
				err = t.sub(bBlocks).Delete(blockKey(blk.Hash, r.Path))
			}
		}
		if err != nil {
			return err
		}
		off += uint64(blk.Size)
	}
	return nil
}

// BlockLoc is a place where a block is stored locally.
type BlockLoc struct {
	Path   string
	Offset int64
	Size   uint32
}

// FindBlocks is FindBlock for each of bs, in one read transaction, or in
// none where the block filter knows that no block of bs is here (most
// new files).
func (f *Folder) FindBlocks(bs []record.Block, limit int) [][]BlockLoc {
	out := make([][]BlockLoc, len(bs))
	if !slices.ContainsFunc(bs, func(b record.Block) bool { return f.filter.mayHave(b.Hash[:]) }) {
		return out
	}
	_ = f.View(func(tx *Tx) error {
		for i, b := range bs {
			out[i] = tx.FindBlock(b.Hash, limit)
		}
		return nil
	})
	return out
}

// FindBlock returns up to limit local places holding the block with hash h.
func (t *Tx) FindBlock(h [32]byte, limit int) []BlockLoc {
	if !t.filter.mayHave(h[:]) {
		return nil
	}
	t.touch(1)
	out := blockLocs(t.logged(h), limit)
	c := t.sub(bBlocks).Cursor()
	for k, v := c.Seek(h[:]); k != nil && len(k) > 32 && [32]byte(k[:32]) == h && len(out) < limit; k, v = c.Next() {
		if len(v) != 12 {
			continue
		}
		out = append(out, BlockLoc{Path: string(k[32:]), Offset: int64(binary.BigEndian.Uint64(v)), Size: binary.BigEndian.Uint32(v[8:])})
	}
	return out
}

// Since calls fn for each local record with a sequence number above seq,
// in order, until fn returns false.
func (t *Tx) Since(seq uint64, fn func(record.Record) bool) error {
	c := t.sub(bSeq).Cursor()
	for k, v := c.Seek(be(seq + 1)); k != nil; k, v = c.Next() {
		r, ok, err := t.Get(string(v))
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// Walk calls fn for every local record in path order until fn returns
// false.
func (t *Tx) Walk(fn func(record.Record) bool) error {
	return t.sub(bFiles).ForEach(func(k, v []byte) error {
		r, err := decode(v)
		if err != nil {
			return fmt.Errorf("index: decode %q: %w", k, err)
		}
		if !fn(r) {
			return errStop
		}
		return nil
	})
}

var errStop = errors.New("stop")

// add adds delta to the counter key of the meta bucket.
func (t *Tx) add(key []byte, delta int64) error {
	if delta == 0 {
		return nil
	}
	meta := t.sub(bMeta)
	v := int64(u64(t.lookup(bMeta, key))) + delta
	if v < 0 {
		return fmt.Errorf("index: counter %s would go below zero", key)
	}
	return meta.Put(key, be(uint64(v)))
}

// Live returns how many local records are not deleted, from a counter
// kept by Put (constant time, whatever the size of the index).
func (t *Tx) Live() int { return int(u64(t.lookup(bMeta, kLive))) }

func (t *Tx) peer(id [32]byte, create bool) (*bolt.Bucket, error) {
	peers := t.sub(bPeers)
	if !create {
		return peers.Bucket(id[:]), nil
	}
	p, err := peers.CreateBucketIfNotExists(id[:])
	if err != nil {
		return nil, err
	}
	for _, n := range [][]byte{bFiles, bMeta} {
		if p.Bucket(n) != nil {
			continue
		}
		t.forgetRemotes() // a new peer, or its files bucket is new
		if _, err := p.CreateBucket(n); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// forgetRemotes drops the peers' files buckets Remotes keeps: one was
// added or replaced.
func (t *Tx) forgetRemotes() { t.remotes, t.remotesKnown = nil, false }

// PeerState returns the peer's index ID and the highest of its sequence
// numbers whose records are stored here.
func (t *Tx) PeerState(id [32]byte) (indexID, seq uint64) {
	p, _ := t.peer(id, false)
	if p == nil {
		return 0, 0
	}
	m := p.Bucket(bMeta)
	return u64(m.Get(kIndexID)), u64(m.Get(kSeq))
}

// SetPeerState records the peer's index ID and sequence position. A new
// index ID drops what was stored from the peer's previous index.
func (t *Tx) SetPeerState(id [32]byte, indexID, seq uint64) error {
	p, err := t.peer(id, true)
	if err != nil {
		return err
	}
	m := p.Bucket(bMeta)
	if old := u64(m.Get(kIndexID)); old != indexID && old != 0 {
		t.forgetRemotes()
		if err := p.DeleteBucket(bFiles); err != nil {
			return err
		}
		if _, err := p.CreateBucket(bFiles); err != nil {
			return err
		}
	}
	if err := m.Put(kIndexID, be(indexID)); err != nil {
		return err
	}
	return m.Put(kSeq, be(seq))
}

// PutRemote stores a record announced by a peer.
func (t *Tx) PutRemote(id [32]byte, r record.Record) error {
	t.touch(1)
	p, err := t.peer(id, true)
	if err != nil {
		return err
	}
	r.Inode, r.CTime = 0, 0
	v, err := encode(&r)
	if err != nil {
		return err
	}
	return p.Bucket(bFiles).Put([]byte(r.Path), v)
}

// Remotes returns what every peer announced for path, with the peers
// that announced it, in the order of the peers' IDs (the planner's order
// of sources and of concurrent records). It is called for every file
// placed or planned.
func (t *Tx) Remotes(path string) (peers [][32]byte, recs []record.Record, err error) {
	t.touch(1)
	if !t.remotesKnown {
		peers := t.sub(bPeers)
		err := peers.ForEachBucket(func(k []byte) error { // in key order
			if files := peers.Bucket(k).Bucket(bFiles); files != nil {
				t.remotes = append(t.remotes, remoteFiles{[32]byte(k), files, files.Cursor()})
			}
			return nil
		})
		if err != nil {
			t.remotes = nil
			return nil, nil, err
		}
		t.remotesKnown = true
	}
	for _, p := range t.remotes {
		v := seekExact(p.c, []byte(path))
		if v == nil {
			continue
		}
		r, err := decode(v)
		if err != nil {
			return nil, nil, fmt.Errorf("index: decode remote %q: %w", path, err)
		}
		peers, recs = append(peers, p.id), append(recs, r)
	}
	return peers, recs, nil
}

// RemoteCount returns how many records a peer announced.
func (t *Tx) RemoteCount(id [32]byte) int {
	p, _ := t.peer(id, false)
	if p == nil {
		return 0
	}
	return p.Bucket(bFiles).Stats().KeyN
}

// SetNeed marks path as needing a decision.
func (t *Tx) SetNeed(path string) error {
	b := t.sub(bNeed)
	if t.lookup(bNeed, []byte(path)) != nil {
		return nil
	}
	if err := t.add(kNeeds, 1); err != nil {
		return err
	}
	return b.Put([]byte(path), []byte{1})
}

// ClearNeed removes path from the work list.
func (t *Tx) ClearNeed(path string) error {
	b := t.sub(bNeed)
	if t.lookup(bNeed, []byte(path)) == nil {
		return nil
	}
	if err := t.add(kNeeds, -1); err != nil {
		return err
	}
	return b.Delete([]byte(path))
}

// Needs returns up to limit paths needing a decision, in path order.
func (t *Tx) Needs(limit int) []string {
	var out []string
	c := t.sub(bNeed).Cursor()
	for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
		out = append(out, string(k))
	}
	return out
}

// NeedCount is the number of paths needing a decision.
func (t *Tx) NeedCount() int { return int(u64(t.lookup(bMeta, kNeeds))) }

// SetPending records that the remote version r is about to be renamed
// into place, so that a crash between the rename and the index commit is
// recognised at start-up instead of looking like a local edit.
func (t *Tx) SetPending(r record.Record) error {
	v, err := encode(&r)
	if err != nil {
		return err
	}
	return t.sub(bPending).Put([]byte(r.Path), v)
}

// ClearPending forgets the pending version of path.
func (t *Tx) ClearPending(path string) error { return t.sub(bPending).Delete([]byte(path)) }

// Pending returns all pending versions.
func (t *Tx) Pending() ([]record.Record, error) {
	var out []record.Record
	err := t.sub(bPending).ForEach(func(k, v []byte) error {
		r, err := decode(v)
		if err != nil {
			return fmt.Errorf("index: decode pending %q: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Prefix calls fn for every local record whose path starts with prefix.
func (t *Tx) Prefix(prefix string, fn func(record.Record)) error {
	c := t.sub(bFiles).Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix; k, v = c.Next() {
		r, err := decode(v)
		if err != nil {
			return fmt.Errorf("index: decode %q: %w", k, err)
		}
		fn(r)
	}
	return nil
}

// Children calls fn for every local record directly inside the directory
// whose path plus "/" is prefix ("" for the folder root), skipping the
// records deeper down.
func (t *Tx) Children(prefix string, fn func(record.Record)) error {
	return t.children(prefix, decode, fn)
}

// statFields are the fields of a record a scan compares with the disk,
// for records in the earlier CBOR form (see decodeStat).
type statFields struct {
	Path    string      `cbor:"1,keyasint"`
	Type    record.Type `cbor:"2,keyasint"`
	Deleted bool        `cbor:"3,keyasint,omitempty"`
	Size    int64       `cbor:"4,keyasint,omitempty"`
	Mode    uint32      `cbor:"5,keyasint,omitempty"`
	MTime   int64       `cbor:"6,keyasint,omitempty"`
	UID     uint32      `cbor:"7,keyasint,omitempty"`
	GID     uint32      `cbor:"8,keyasint,omitempty"`
	Inode   uint64      `cbor:"20,keyasint,omitempty"`
	CTime   int64       `cbor:"21,keyasint,omitempty"`
}

// ChildrenStat is Children passing partial records: only what a scan
// compares with the disk (path, type, deleted, size, mode, mtime, owner
// and the stat cache; no blocks, versions or target), which makes the
// rescan of an unchanged tree cheaper.
func (t *Tx) ChildrenStat(prefix string, fn func(record.Record)) error {
	return t.children(prefix, decodeStat, fn)
}

func (t *Tx) children(prefix string, dec func([]byte) (record.Record, error), fn func(record.Record)) error {
	c := t.sub(bFiles).Cursor()
	p := []byte(prefix)
	k, v := c.Seek(p)
	for k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix {
		rest := k[len(p):]
		if i := indexByte(rest, '/'); i >= 0 {
			// Skip the subtree: every key "<prefix><child>/..." sorts before
			// "<prefix><child>0" ('0' follows '/').
			next := append(append([]byte{}, k[:len(p)+i]...), '0')
			t.touch(1)
			k, v = c.Seek(next)
			continue
		}
		r, err := dec(v)
		if err != nil {
			return fmt.Errorf("index: decode %q: %w", k, err)
		}
		fn(r)
		k, v = c.Next()
	}
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// HasNeedPrefix reports whether any needed path starts with prefix.
func (t *Tx) HasNeedPrefix(prefix string) bool {
	k, _ := t.sub(bNeed).Cursor().Seek([]byte(prefix))
	return k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == prefix
}

package index

import (
	"encoding/binary"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// blockFilter is a Bloom filter of the block hashes a folder's index
// holds: FindBlocks answers "certainly not here" for new blocks without
// a read transaction, which was most of what looking up the blocks of a
// new small file cost.
//
// It never misses a block that a committed transaction stored: every
// stored block is added before its transaction commits, and a filter that
// is full is rebuilt from the blocks bucket inside a write transaction,
// while no other write can run, and takes over when that transaction
// commits. A block deleted from the index stays in the filter, and a
// transaction that rolls back leaves its blocks in it: both only make the
// filter answer "maybe" where the index holds nothing.
//
// The hashes are SHA-256, uniform already: the filter's four probes are
// the hash's four 64-bit words, with no hashing of their own.
type blockFilter struct {
	set atomic.Pointer[bloomSet]
}

// bloomSet is one generation of the filter, sized for capacity entries at
// bloomBitsPer bits each (a false "maybe" about once in 400 lookups).
type bloomSet struct {
	words    []atomic.Uint64
	mask     uint64 // bit count - 1 (a power of two)
	added    atomic.Int64
	capacity int64
}

const (
	bloomBitsPer   = 16
	bloomMinBlocks = 1 << 14
)

func newBloomSet(blocks int64) *bloomSet {
	capacity := int64(bloomMinBlocks)
	for capacity < blocks {
		capacity *= 2
	}
	nbits := uint64(capacity) * bloomBitsPer
	return &bloomSet{words: make([]atomic.Uint64, nbits/64), mask: nbits - 1, capacity: capacity}
}

func (s *bloomSet) add(h []byte) {
	for i := 0; i < 32; i += 8 {
		b := binary.LittleEndian.Uint64(h[i:]) & s.mask
		s.words[b/64].Or(1 << (b % 64))
	}
	s.added.Add(1)
}

func (s *bloomSet) has(h []byte) bool {
	for i := 0; i < 32; i += 8 {
		b := binary.LittleEndian.Uint64(h[i:]) & s.mask
		if s.words[b/64].Load()&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// buildBloom fills a filter from the block map of the folder bucket fb:
// its blocks bucket (keys: hash, then path) and its block log (values:
// hash, ...). release, if not nil, runs every bloomReleaseEvery keys:
// reading the whole bucket maps all its pages, which would otherwise all
// count in the process's RSS until the next release.
func buildBloom(fb *bolt.Bucket, blocks int64, release func()) *bloomSet {
	s := newBloomSet(blocks)
	n := 0
	// The hash leads the key in the blocks bucket, the value in the log.
	for _, part := range []struct {
		bucket []byte
		inKey  bool
	}{{bBlocks, true}, {bBlockLog, false}} {
		c := fb.Bucket(part.bucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !part.inKey {
				k = v
			}
			if len(k) >= 32 {
				s.add(k[:32])
			}
			if n++; release != nil && n%bloomReleaseEvery == 0 {
				release()
			}
		}
	}
	if release != nil {
		release()
	}
	return s
}

// bloomReleaseEvery is how many keys a filter build reads between
// releases of the mapping (a few MiB of pages).
const bloomReleaseEvery = 1 << 15

// fitBloom builds a filter from the block map of fb sized for blocks entries, and again,
// larger, if the map holds more than half of what it was sized for: a filter
// is at most half full after a build, whatever the guess of its size.
func fitBloom(fb *bolt.Bucket, blocks int64, release func()) *bloomSet {
	s := buildBloom(fb, blocks, release)
	if n := s.added.Load(); 2*n > s.capacity {
		s = buildBloom(fb, 2*n, release)
	}
	return s
}

// load builds the filter from the block map of fb, sized first for twice the folder's
// live files (a count the index keeps: the map's own count would take reading
// all of it).
func (f *blockFilter) load(fb *bolt.Bucket, live int64, release func()) {
	f.set.Store(fitBloom(fb, 2*live, release))
}

// add records block hash h, stored by write transaction t. Adds are
// counted with repeats (a file stored again adds its blocks again), so a
// filter past its capacity is rebuilt from the blocks bucket at its own
// size and grows only if the blocks stored fill more than half of it: it
// follows the blocks stored, not the adds over the node's uptime.
//
// The rebuilt filter reflects t's view of the bucket (t's deletions
// included), so it replaces the current one only once t commits; until
// then, and for good if t rolls back, the current one, which holds every
// committed block, answers. t's later adds go to both.
func (f *blockFilter) add(t *Tx, h []byte, fb *bolt.Bucket) {
	if f == nil {
		return
	}
	s := f.set.Load()
	if s == nil {
		return
	}
	s.add(h)
	if t.nextBloom != nil {
		t.nextBloom.add(h)
		return
	}
	if s.added.Load() <= s.capacity {
		return
	}
	next := fitBloom(fb, s.capacity, t.release)
	t.nextBloom = next
	t.tx.OnCommit(func() { f.set.Store(next) })
}

// mayHave reports whether h may be stored; false means it is not. Without
// a filter (none loaded), everything may be.
func (f *blockFilter) mayHave(h []byte) bool {
	if f == nil {
		return true
	}
	s := f.set.Load()
	return s == nil || s.has(h)
}

// bloomWords is the filter's size in 64-bit words (for tests).
func (f *blockFilter) bloomWords() int {
	if s := f.set.Load(); s != nil {
		return len(s.words)
	}
	return 0
}

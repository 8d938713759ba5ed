// Package blocks splits file content into content-defined chunks (FastCDC)
// identified by SHA-256, so that an insertion shifts only the blocks around
// it and a receiver can reuse every block it already holds, and verifies
// data against a block by its XXH3 check.
package blocks

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers the algorithm
	"github.com/zeebo/xxh3"

	"tandem/internal/record"
)

// Chunk size bounds. They are part of the protocol: two nodes must cut the
// same content into the same blocks, or nothing can be reused.
const (
	MinSize    = 32 << 10
	NormalSize = 128 << 10
	MaxSize    = 512 << 10
	// algorithm is the library's FastCDC, which fixes the cut points;
	// gearAlgorithm (gear.go) finds the same ones faster.
	algorithm = "fastcdc-v1.0.0"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 2*MaxSize); return &b }}

// Hash reads r to the end and returns its blocks and total size. Cutting
// is sequential; from the second block on, blocks are hashed by a few
// goroutines while the next ones are cut, so a large file is hashed at
// the speed of the cores rather than of one.
func Hash(r io.Reader) ([]record.Block, int64, error) {
	return HashReporting(r, 0, nil)
}

// HashReporting is Hash that also calls report, each time about every
// more bytes were cut, with the blocks hashed since its last call that
// follow on from it (the first at offset), so that a caller can act on
// the start of a large file while the rest is being hashed. report runs
// on the hashing goroutine; it must not keep blocks.
func HashReporting(r io.Reader, every int64, report func(offset int64, blocks []record.Block)) ([]record.Block, int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	ch, err := chunkers.NewChunkerBuffer(gearAlgorithm, r, &chunkers.ChunkerOpts{MinSize: MinSize, NormalSize: NormalSize, MaxSize: MaxSize}, *bp)
	if err != nil {
		return nil, 0, fmt.Errorf("chunker: %w", err)
	}
	var out []record.Block
	var total int64
	var p *hasher
	defer func() {
		if p != nil {
			p.finish()
		}
	}()
	// For report: blocks[:reported] were reported, the first at
	// reportedAt; hashed marks the blocks whose hash is known.
	reporting := report != nil && every > 0
	var (
		hashed     []bool
		reported   int
		reportedAt int64
		nextReport = every
	)
	for {
		c, err := ch.Next()
		if len(c) > 0 {
			i := len(out)
			out = append(out, record.Block{Size: uint32(len(c))})
			if reporting {
				hashed = append(hashed, i == 0)
			}
			total += int64(len(c))
			if i == 0 {
				sumOf(0, c).store(out) // most files are one block
			} else {
				if p == nil {
					p = newHasher()
				}
				p.add(i, c)
			}
			if reporting && total >= nextReport {
				nextReport = total + every
				if p != nil {
					for _, h := range p.take() {
						h.store(out)
						hashed[h.i] = true
					}
				}
				n := reported
				for n < len(out) && hashed[n] {
					n++
				}
				if n > reported {
					report(reportedAt, out[reported:n])
					for _, b := range out[reported:n] {
						reportedAt += int64(b.Size)
					}
					reported = n
				}
			}
		}
		if errors.Is(err, io.EOF) {
			if p != nil {
				for _, h := range p.finish() {
					h.store(out)
				}
				p = nil
			}
			return out, total, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// hasher hashes copies of blocks in parallel.
type hasher struct {
	jobs chan hashJob
	wg   sync.WaitGroup
	mu   sync.Mutex
	done []hashed
}

type hashJob struct {
	i   int
	buf *[]byte
}

// hashed is block i's SHA-256 and check.
type hashed struct {
	i     int
	sum   [32]byte
	check uint64
}

func sumOf(i int, data []byte) hashed { return hashed{i, sha256.Sum256(data), CheckSum(data)} }

// store sets block h.i of out to what h holds.
func (h hashed) store(out []record.Block) { out[h.i].Hash, out[h.i].Check = h.sum, h.check }

var blockPool = sync.Pool{New: func() any { b := make([]byte, MaxSize); return &b }}

func newHasher() *hasher {
	n := min(runtime.GOMAXPROCS(0), 4)
	p := &hasher{jobs: make(chan hashJob, 2*n)}
	for range n {
		p.wg.Go(func() {
			for j := range p.jobs {
				h := sumOf(j.i, *j.buf)
				*j.buf = (*j.buf)[:cap(*j.buf)]
				blockPool.Put(j.buf)
				p.mu.Lock()
				p.done = append(p.done, h)
				p.mu.Unlock()
			}
		})
	}
	return p
}

// add queues a copy of block i (c is reused by the chunker).
func (p *hasher) add(i int, c []byte) {
	bp := blockPool.Get().(*[]byte)
	*bp = append((*bp)[:0], c...)
	p.jobs <- hashJob{i, bp}
}

// take returns the hashes finished so far and forgets them.
func (p *hasher) take() []hashed {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.done
	p.done = nil
	return d
}

// finish waits for every queued block and returns their hashes (those
// not taken).
func (p *hasher) finish() []hashed {
	close(p.jobs)
	p.wg.Wait()
	return p.done
}

// CheckSum is the check value of a block's data (record.Block.Check):
// its XXH3-64, with 0 (which means "not known") taken as 1.
func CheckSum(data []byte) uint64 {
	if c := xxh3.Hash(data); c != 0 {
		return c
	}
	return 1
}

// Verify reports whether data is block b's content: by b.Check where the
// record holds one (XXH3 runs at memory speed, where SHA-256 took a third
// of a receiver's CPU for a large file), by SHA-256 otherwise. XXH3 is no
// defence against a peer that forges data, but such a peer is one that
// may write any content anyway (peers are pinned and trusted); what is
// checked here is that a block read from a file that changed since it
// was hashed, on the peer or locally, is not taken for the block.
func Verify(data []byte, b record.Block) bool {
	if uint32(len(data)) != b.Size {
		return false
	}
	if b.Check != 0 {
		return CheckSum(data) == b.Check
	}
	return sha256.Sum256(data) == b.Hash
}

package blocks

import (
	"math/bits"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	"github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc"
)

// gearCDC cuts exactly where the library's "fastcdc-v1.0.0" cuts (its
// Gear table, its masks for normalization level 2) with a tighter loop:
// the library's compares every byte's index with the normal size to
// switch masks, and reloads its table and masks from memory; here the
// two halves are two loops over slices (scan), which take two bytes a
// step. It is registered under its own name;
// TestGearMatchesLibrary holds the two to the same cut points.
type gearCDC struct {
	fastcdc.FastCDC // options, validation and defaults of the library
	maskS, maskL    uint64
}

const gearAlgorithm = "tandem-gear-fastcdc"

func init() {
	if err := chunkers.Register(gearAlgorithm, func() chunkers.ChunkerImplementation { return &gearCDC{} }); err != nil {
		panic(err) // a name registered twice is a programming error
	}
}

// Setup computes the masks as the library does for normalization level 2.
func (c *gearCDC) Setup(o *chunkers.ChunkerOpts) error {
	b := bits.Len(uint(o.NormalSize)) - 1 // log2 of a power of two
	c.maskS = spacedMask(b + 2)
	c.maskL = spacedMask(b - 2)
	return nil
}

// spacedMask spreads ones 1 bits evenly over 64, from the top.
func spacedMask(ones int) uint64 {
	if ones >= 64 {
		return ^uint64(0)
	}
	if ones <= 0 {
		return 0
	}
	step := 64 / ones
	var m uint64
	for i := range ones {
		m |= 1 << (63 - i*step)
	}
	return m
}

// Algorithm returns the length of the chunk at the start of data[:n].
func (c *gearCDC) Algorithm(o *chunkers.ChunkerOpts, data []byte, n int) int {
	minSize, normal := o.MinSize, o.NormalSize
	switch {
	case n <= minSize:
		return n
	case n >= o.MaxSize:
		n = o.MaxSize
	case n <= normal:
		normal = n
	}
	d := data[:n]
	fp, i := scan(0, d[minSize:normal], c.maskS)
	if i >= 0 {
		return minSize + i
	}
	if _, i = scan(fp, d[normal:], c.maskL); i >= 0 {
		return normal + i
	}
	return n
}

// scan runs the gear hash on from fp over d and returns the hash at the
// end of d and -1, or the index of the first byte after which fp&mask is
// 0. One step of the hash, fp<<1 + G[b], waits for the one before (two
// additions: two cycles a byte); two steps at once, fp<<2 + (G[b1]<<1 +
// G[b2]), are the same value with one wait for both, and the value
// between them, needed for its test, is off the chain. On this machine's
// EPYC the whole chunker (BenchmarkChunk) ran 1.05-1.34 times as fast in
// six alternating runs against the one-byte loop, and a node's chunking
// of 2 GiB took 0.95 s of CPU instead of 1.53 (unrolling by four was
// slower than by two: more instructions than the chain saves).
func scan(fp uint64, d []byte, mask uint64) (uint64, int) {
	g := &fastcdc.G
	i := 1
	for ; i < len(d); i += 2 {
		g1 := g[d[i-1]]
		t := fp<<1 + g1
		fp = fp<<2 + (g1<<1 + g[d[i]])
		if t&mask == 0 {
			return t, i - 1
		}
		if fp&mask == 0 {
			return fp, i
		}
	}
	if i == len(d) { // an odd length leaves one byte
		fp = fp<<1 + g[d[i-1]]
		if fp&mask == 0 {
			return fp, i - 1
		}
	}
	return fp, -1
}

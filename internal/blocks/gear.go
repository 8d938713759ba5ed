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
// two halves are two loops over slices, so the hot loop is a shift, a
// table load, an add and a test. It is registered under its own name;
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
	g := &fastcdc.G
	d := data[:n]
	var fp uint64
	maskS, maskL := c.maskS, c.maskL
	for i, b := range d[minSize:normal] {
		fp = fp<<1 + g[b]
		if fp&maskS == 0 {
			return minSize + i
		}
	}
	for i, b := range d[normal:] {
		fp = fp<<1 + g[b]
		if fp&maskL == 0 {
			return normal + i
		}
	}
	return n
}

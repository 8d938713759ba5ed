package protocol

import (
	"math/bits"
	"sync"
)

// Block buffers. A node moves block after block of up to 512 KiB
// (blocks.MaxSize): the sender reads each into a buffer, the receiver
// reads each response into one, and after a write or a send its bytes are
// dead. Allocating them fresh made the garbage collector clear and sweep
// gigabytes for a large transfer; these pools, one per power-of-two size
// from 4 KiB to 1 MiB, hand them round instead. Using them is optional: a
// buffer that is never released is collected as usual.
const (
	minClassShift = 12 // 4 KiB
	numClasses    = 9  // up to 1 MiB
)

var blockPools [numClasses]sync.Pool

// classOf returns the pool of buffers of at least n bytes, or -1 for a
// size the pools do not cover.
func classOf(n int) int {
	if n <= 0 || n > 1<<(minClassShift+numClasses-1) {
		return -1
	}
	c := 0
	if n > 1<<minClassShift {
		c = bits.Len(uint(n-1)) - minClassShift
	}
	return c
}

// BlockBuf returns a buffer of n bytes, from the pools where they cover
// n. Its content is undefined.
func BlockBuf(n int) []byte {
	c := classOf(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := blockPools[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<(minClassShift+c))
}

// ReleaseBlock hands b, a buffer BlockBuf returned (not a part of one),
// back for reuse; the caller must not touch it afterwards. Anything else is left to the
// garbage collector.
func ReleaseBlock(b []byte) {
	c := classOf(cap(b))
	if c < 0 || cap(b) != 1<<(minClassShift+c) {
		return
	}
	b = b[:cap(b)]
	blockPools[c].Put(&b)
}

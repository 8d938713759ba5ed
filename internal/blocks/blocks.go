// Package blocks splits file content into content-defined chunks (FastCDC)
// identified by SHA-256, so that an insertion shifts only the blocks around
// it and a receiver can reuse every block it already holds.
package blocks

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers the algorithm

	"tandem/internal/record"
)

// Chunk size bounds. They are part of the protocol: two nodes must cut the
// same content into the same blocks, or nothing can be reused.
const (
	MinSize    = 32 << 10
	NormalSize = 128 << 10
	MaxSize    = 512 << 10
	algorithm  = "fastcdc-v1.0.0"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 2*MaxSize); return &b }}

// Hash reads r to the end and returns its blocks and total size.
func Hash(r io.Reader) ([]record.Block, int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	ch, err := chunkers.NewChunkerBuffer(algorithm, r, &chunkers.ChunkerOpts{MinSize: MinSize, NormalSize: NormalSize, MaxSize: MaxSize}, *bp)
	if err != nil {
		return nil, 0, fmt.Errorf("chunker: %w", err)
	}
	var out []record.Block
	var total int64
	for {
		c, err := ch.Next()
		if len(c) > 0 {
			out = append(out, record.Block{Hash: sha256.Sum256(c), Size: uint32(len(c))})
			total += int64(len(c))
		}
		if errors.Is(err, io.EOF) {
			return out, total, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// Check reports whether data has hash h.
func Check(data []byte, h [32]byte) bool { return sha256.Sum256(data) == h }

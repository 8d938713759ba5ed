package folder

import (
	"errors"
	"fmt"
	"io"

	"tandem/internal/blocks"
	"tandem/internal/protocol"
	"tandem/internal/record"
)

// ErrChanged is returned when a requested block is no longer in the file.
var ErrChanged = errors.New("file changed since it was announced")

// ServeBlock reads a block a peer requested. The name is validated and
// read through the confined root; the data must still match the hash.
func (f *Folder) ServeBlock(req *protocol.Request) ([]byte, error) {
	if f.root == nil {
		return nil, fmt.Errorf("folder %q is not running", f.cfg.ID)
	}
	if err := record.ValidName(req.Path); err != nil {
		return nil, err
	}
	if req.Size == 0 || req.Size > blocks.MaxSize || req.Offset < 0 {
		return nil, fmt.Errorf("invalid block request %s at %d size %d", req.Path, req.Offset, req.Size)
	}
	fh, err := f.root.OpenReader(req.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	buf := protocol.BlockBuf(int(req.Size)) // released once sent
	if _, err := fh.ReadAt(buf, req.Offset); err != nil {
		protocol.ReleaseBlock(buf)
		if errors.Is(err, io.EOF) {
			return nil, ErrChanged
		}
		return nil, err
	}
	// Not re-hashed here: the receiver verifies every block it gets, and
	// a block that changed since it was announced fails that check.
	return buf, nil
}

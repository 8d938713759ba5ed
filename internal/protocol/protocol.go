// Package protocol defines the messages tandem peers exchange and frames
// them on a stream: a 4-byte big-endian length, a 1-byte type, then a CBOR
// body; a Response, which carries a block, has a small binary header
// instead, followed by the block's bytes, so a block is not copied in and
// out of CBOR. Every frame from a peer is bounded and validated before use.
package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"
	"github.com/klauspost/compress/s2"

	"tandem/internal/blocks"
	"tandem/internal/record"
)

// MaxFrame bounds a frame; a peer announcing more is misbehaving.
const MaxFrame = 64 << 20

// Type identifies a message.
type Type uint8

const (
	TypeHello Type = iota + 1
	TypeIndex
	TypeRequest
	TypeResponse
	TypePing
	TypeHint
	TypeRequests
)

// Hello is the first message on a connection, both ways.
type Hello struct {
	Version int           `cbor:"1,keyasint"`
	Folders []FolderHello `cbor:"2,keyasint"`
}

// FolderHello describes one folder the sender shares and how far it has
// read the receiver's index.
type FolderHello struct {
	ID      string `cbor:"1,keyasint"`
	IndexID uint64 `cbor:"2,keyasint"` // the sender's index incarnation
	// What the sender already holds of the receiver's index: records up to
	// HaveSeq of incarnation HaveIndexID. The receiver sends the rest.
	HaveIndexID uint64 `cbor:"3,keyasint"`
	HaveSeq     uint64 `cbor:"4,keyasint"`
}

// Index carries records of the sender's index, in sequence order.
type Index struct {
	Folder  string          `cbor:"1,keyasint"`
	IndexID uint64          `cbor:"2,keyasint"`
	Records []record.Record `cbor:"3,keyasint"`
	// Last is the highest sequence number covered by this message.
	Last uint64 `cbor:"4,keyasint"`
}

// Request asks for one block of a file at the sender's current version.
type Request struct {
	ID     uint32   `cbor:"1,keyasint"`
	Folder string   `cbor:"2,keyasint"`
	Path   string   `cbor:"3,keyasint"`
	Offset int64    `cbor:"4,keyasint"`
	Size   uint32   `cbor:"5,keyasint"`
	Hash   [32]byte `cbor:"6,keyasint"`
}

// Requests carries several small Requests in one frame: a node fetching
// many small files sends together the requests that wait at one moment,
// and the peer reads and answers them together, one write for all the
// responses. Each keeps its own ID and gets its own Response.
type Requests struct {
	Reqs []Request `cbor:"1,keyasint"`
}

// Bounds of a Requests message: a batch holds at most MaxBatch requests
// of at most MaxBatched bytes each, MaxBatchBytes in all (what one
// Request may ask for, so serving a batch holds no more memory than
// serving one block). A peer sending more is misbehaving.
const (
	MaxBatch      = 256
	MaxBatched    = 64 << 10
	MaxBatchBytes = blocks.MaxSize
)

// Check reports whether the batch keeps within the bounds.
func (m *Requests) Check() error {
	if len(m.Reqs) == 0 || len(m.Reqs) > MaxBatch {
		return fmt.Errorf("protocol: batch of %d requests (1 to %d allowed)", len(m.Reqs), MaxBatch)
	}
	var total int64
	for i := range m.Reqs {
		if m.Reqs[i].Size > MaxBatched {
			return fmt.Errorf("protocol: batched request of %d bytes (at most %d)", m.Reqs[i].Size, MaxBatched)
		}
		total += int64(m.Reqs[i].Size)
	}
	if total > MaxBatchBytes {
		return fmt.Errorf("protocol: batch asks for %d bytes (at most %d)", total, MaxBatchBytes)
	}
	return nil
}

// Encoding of a Response's data.
const (
	EncRaw = 0
	EncS2  = 1
)

// Response answers a Request.
type Response struct {
	ID   uint32 `cbor:"1,keyasint"`
	Data []byte `cbor:"2,keyasint,omitempty"`
	Enc  uint8  `cbor:"3,keyasint,omitempty"`
	Err  string `cbor:"4,keyasint,omitempty"`
}

// Ping keeps an idle connection alive.
type Ping struct{}

// Hint tells peers which blocks of a large file the sender has hashed so
// far, while it is still hashing the rest, so that they can start fetching
// them before the file is announced. It is advice, not a version: the
// receiver verifies every block against its hash and keeps it only for a
// version that is announced later with the same block at the same offset.
type Hint struct {
	Folder string `cbor:"1,keyasint"`
	Path   string `cbor:"2,keyasint"`
	// Size is the file's size when the sender began hashing it.
	Size int64 `cbor:"3,keyasint"`
	// Offset is where the first of Blocks begins; they follow each other.
	Offset int64          `cbor:"4,keyasint"`
	Blocks []record.Block `cbor:"5,keyasint"`
}

// ProtocolVersion is sent in Hello; peers with another version are refused.
// Version 3 added Hint, version 4 Requests, version 5 the check of
// every block (record.Block.Check) in Index and Hint, version 6 the
// versions of the same content a record folded in (record.Record.Merged),
// which the decision rules of both peers must see alike.
const ProtocolVersion = 6

var (
	encMode, _ = cbor.EncOptions{}.EncMode()
	decMode, _ = cbor.DecOptions{MaxArrayElements: 1 << 22, MaxMapPairs: 1 << 16, MaxNestedLevels: 16}.DecMode()
)

// Conn frames messages on a stream. Send is safe for concurrent use;
// Receive must be called from one goroutine.
type Conn struct {
	r       *bufio.Reader
	raw     io.ReadWriter // under r and w, for large payloads
	wmu     sync.Mutex
	w       *bufio.Writer
	senders atomic.Int32 // Send calls under way, holding or waiting for wmu
	buf     []byte
}

// New wraps rw.
func New(rw io.ReadWriter) *Conn {
	return &Conn{r: bufio.NewReaderSize(rw, 256<<10), raw: rw, w: bufio.NewWriterSize(rw, 256<<10)}
}

// direct is the size from which a payload bypasses the buffers: through
// them, each of its bytes would be copied once more (bufio passes a
// large write or read straight through only while its buffer is empty).
const direct = 32 << 10

// readFull fills p: what r holds already, then, for a large p, the rest
// straight from the stream.
func (c *Conn) readFull(p []byte) error {
	if len(p) < direct {
		_, err := io.ReadFull(c.r, p)
		return err
	}
	n := min(c.r.Buffered(), len(p))
	if _, err := io.ReadFull(c.r, p[:n]); err != nil {
		return err
	}
	_, err := io.ReadFull(c.raw, p[n:])
	return err
}

func typeOf(m any) (Type, error) {
	switch m.(type) {
	case *Hello:
		return TypeHello, nil
	case *Index:
		return TypeIndex, nil
	case *Request:
		return TypeRequest, nil
	case *Response:
		return TypeResponse, nil
	case *Ping:
		return TypePing, nil
	case *Hint:
		return TypeHint, nil
	case *Requests:
		return TypeRequests, nil
	}
	return 0, fmt.Errorf("protocol: cannot send %T", m)
}

// Send writes one message. It returns once the message is written to the
// underlying writer, or handed to a concurrent Send that will write it:
// while other goroutines are sending, messages are written together (one
// TLS record and one system call for many small requests or responses)
// instead of one flush each. The last sender always flushes.
func (c *Conn) Send(m any) error {
	t, err := typeOf(m)
	if err != nil {
		return err
	}
	if r, ok := m.(*Response); ok {
		return c.sendResponse(r)
	}
	body, err := encMode.Marshal(m)
	if err != nil {
		return fmt.Errorf("protocol: encode %T: %w", m, err)
	}
	if len(body)+1 > MaxFrame {
		return fmt.Errorf("protocol: %T of %d bytes exceeds the frame limit", m, len(body))
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)+1))
	hdr[4] = byte(t)
	return c.write(hdr[:], body)
}

// write writes one message's parts and flushes unless another Send is
// waiting to write (it flushes then, or the one after it). Only a sender
// that will certainly take the lock is counted, so the count drops to
// zero exactly when the last waiting sender has written.
func (c *Conn) write(parts ...[]byte) error {
	c.senders.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	for _, p := range parts {
		if err != nil {
			break
		}
		if len(p) >= direct {
			// What is buffered goes first, then p in one write.
			if err = c.w.Flush(); err == nil {
				_, err = c.raw.Write(p)
			}
		} else if len(p) > 0 {
			_, err = c.w.Write(p)
		}
	}
	if c.senders.Add(-1) == 0 && err == nil {
		err = c.w.Flush()
	}
	return err
}

// responseHeader is the size of a Response's binary header: ID (4 bytes),
// encoding (1), length of the error text (2).
const responseHeader = 7

// sendResponse writes a Response: frame header, binary header, error
// text, data.
func (c *Conn) sendResponse(r *Response) error {
	return c.SendResponses([]*Response{r})
}

// SendResponses writes responses one after the other with one flush (the
// answers to a Requests batch).
func (c *Conn) SendResponses(rs []*Response) error {
	parts := make([][]byte, 0, 3*len(rs))
	hdrs := make([]byte, len(rs)*(5+responseHeader))
	for i, r := range rs {
		if len(r.Err) > 1<<15 {
			r.Err = r.Err[:1<<15]
		}
		n := 1 + responseHeader + len(r.Err) + len(r.Data)
		if n > MaxFrame {
			return fmt.Errorf("protocol: response of %d bytes exceeds the frame limit", n)
		}
		hdr := hdrs[i*(5+responseHeader) : (i+1)*(5+responseHeader)]
		binary.BigEndian.PutUint32(hdr[:4], uint32(n))
		hdr[4] = byte(TypeResponse)
		binary.BigEndian.PutUint32(hdr[5:9], r.ID)
		hdr[9] = r.Enc
		binary.BigEndian.PutUint16(hdr[10:12], uint16(len(r.Err)))
		parts = append(parts, hdr, []byte(r.Err), r.Data)
	}
	return c.write(parts...)
}

// receiveResponse reads a Response frame's body of n bytes. Its data is
// read into a buffer of its own from BlockBuf, which the receiver may hand
// back with ReleaseBlock once the bytes are used.
func (c *Conn) receiveResponse(n int) (*Response, error) {
	if n < responseHeader {
		return nil, fmt.Errorf("protocol: response of %d bytes is too short", n)
	}
	var hdr [responseHeader]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	r := &Response{ID: binary.BigEndian.Uint32(hdr[0:4]), Enc: hdr[4]}
	el := int(binary.BigEndian.Uint16(hdr[5:7]))
	if responseHeader+el > n {
		return nil, fmt.Errorf("protocol: response error text overruns the frame")
	}
	if el > 0 {
		msg := make([]byte, el)
		if _, err := io.ReadFull(c.r, msg); err != nil {
			return nil, err
		}
		r.Err = string(msg)
	}
	if rest := n - responseHeader - el; rest > 0 {
		r.Data = BlockBuf(rest)
		if err := c.readFull(r.Data); err != nil {
			ReleaseBlock(r.Data)
			return nil, err
		}
	}
	return r, nil
}

// Receive reads the next message: one of *Hello, *Index, *Request,
// *Response, *Ping, *Hint.
func (c *Conn) Receive() (any, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 || n > MaxFrame {
		return nil, fmt.Errorf("protocol: frame length %d out of bounds", n)
	}
	if Type(hdr[4]) == TypeResponse {
		return c.receiveResponse(int(n - 1))
	}
	if cap(c.buf) < int(n-1) {
		c.buf = make([]byte, n-1)
	}
	body := c.buf[:n-1]
	if err := c.readFull(body); err != nil {
		return nil, err
	}
	var m any
	switch Type(hdr[4]) {
	case TypeHello:
		m = new(Hello)
	case TypeIndex:
		m = new(Index)
	case TypeRequest:
		m = new(Request)
	case TypePing:
		m = new(Ping)
	case TypeHint:
		m = new(Hint)
	case TypeRequests:
		m = new(Requests)
	default:
		return nil, fmt.Errorf("protocol: unknown message type %d", hdr[4])
	}
	if err := decMode.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("protocol: decode %T: %w", m, err)
	}
	if cap(c.buf) > 4<<20 {
		c.buf = nil // do not pin a huge buffer
	}
	return m, nil
}

// ErrClosed is returned for operations on a closed connection.
var ErrClosed = errors.New("connection closed")

// Compress sets the response's data to data, S2-compressed when that saves
// at least 1/32 of it; incompressible data goes as it is. A large block is
// first sampled at its start, middle and end; if none of them shrinks, it
// is not compressed at all (already compressed media, archives, random
// data: most of a large transfer). Compressed data is put in a buffer
// from BlockBuf.
func (r *Response) Compress(data []byte) {
	if len(data) >= 512 && (len(data) < 4*sampleSize || compressible(data)) {
		buf := BlockBuf(s2.MaxEncodedLen(len(data)))
		c := s2.Encode(buf, data)
		if len(c) < len(data)-len(data)/32 {
			r.Data, r.Enc = c, EncS2
			return
		}
		ReleaseBlock(buf)
	}
	r.Data, r.Enc = data, EncRaw
}

const sampleSize = 8 << 10

// compressible reports whether any of three samples of data shrinks by at
// least 1/32 under S2 (an estimate that writes nothing).
func compressible(data []byte) bool {
	for _, at := range []int{0, len(data)/2 - sampleSize/2, len(data) - sampleSize} {
		sample := data[at : at+sampleSize]
		// -1: no improvement at all.
		if est := s2.EstimateBlockSize(sample); est >= 0 && est < sampleSize-sampleSize/32 {
			return true
		}
	}
	return false
}

// ReleaseEncoded hands back the buffer of compressed data (from Compress or
// a received response) once it is sent or decoded; uncompressed data
// belongs to whoever supplied or received it.
func (r *Response) ReleaseEncoded() {
	if r.Enc == EncS2 {
		ReleaseBlock(r.Data)
		r.Data = nil
	}
}

// Payload returns the response's data, decompressed (into a buffer from
// BlockBuf; uncompressed data is r.Data itself); want is the size the
// request asked for, which bounds the decoded size.
func (r *Response) Payload(want int) ([]byte, error) {
	switch r.Enc {
	case EncRaw:
		return r.Data, nil
	case EncS2:
		n, err := s2.DecodedLen(r.Data)
		if err != nil {
			return nil, fmt.Errorf("protocol: corrupt compressed block: %w", err)
		}
		if n != want {
			return nil, fmt.Errorf("protocol: compressed block decodes to %d bytes, asked for %d", n, want)
		}
		return s2.Decode(BlockBuf(n), r.Data)
	}
	return nil, fmt.Errorf("protocol: unknown block encoding %d", r.Enc)
}

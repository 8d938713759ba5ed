package protocol

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tandem/internal/record"
	"tandem/internal/version"
)

func TestRoundTrip(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ca, cb := New(a), New(b)
	v := version.Vector{}.Update(7, 1)
	msgs := []any{
		&Hello{Version: ProtocolVersion, Folders: []FolderHello{{ID: "www", IndexID: 3, HaveSeq: 9}}},
		&Index{Folder: "www", IndexID: 3, Last: 2, Records: []record.Record{{Path: "a/b", Type: record.File, Size: 1, Version: v, ModifiedBy: 7, Dot: 1, Blocks: []record.Block{{Size: 1, Check: 0xfeed}, {Size: 2}}}}},
		&Request{ID: 1, Folder: "www", Path: "a/b", Size: 1},
		&Response{ID: 1, Data: []byte("x")},
		&Response{ID: 1<<32 - 1, Data: bytes.Repeat([]byte{7}, 128<<10), Enc: EncS2},
		&Response{ID: 2, Err: "no such file"},
		&Response{ID: 3},
		&Ping{},
		&Hint{Folder: "www", Path: "big.iso", Size: 1 << 30, Offset: 256 << 10, Blocks: []record.Block{{Size: 128 << 10, Hash: [32]byte{1}, Check: 1}, {Size: 40 << 10, Hash: [32]byte{2}}}},
		&Requests{Reqs: []Request{{ID: 5, Folder: "www", Path: "a", Size: 10, Hash: [32]byte{5}}, {ID: 6, Folder: "www", Path: "b/c", Offset: 3, Size: 1}}},
	}
	go func() {
		for _, m := range msgs {
			if err := ca.Send(m); err != nil {
				t.Error(err)
			}
		}
	}()
	for _, want := range msgs {
		got, err := cb.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if gt, wt := typeOf(got); gt != mustType(t, want) || wt != nil {
			t.Fatalf("got %T, want %T", got, want)
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(record.Block{})); diff != "" {
			t.Errorf("%T changed on the way (-sent +received):\n%s", want, diff)
		}
	}
}

func mustType(t *testing.T, m any) Type {
	ty, err := typeOf(m)
	if err != nil {
		t.Fatal(err)
	}
	return ty
}

func TestCompression(t *testing.T) {
	text := bytes.Repeat([]byte("compressible text "), 8000)
	random := make([]byte, 128<<10)
	rand.Read(random)
	// Random but for a compressible tail: the samples find the tail.
	tail := append(append([]byte(nil), random...), bytes.Repeat([]byte("tail "), 4000)...)
	for name, data := range map[string][]byte{"text": text, "random": random, "tail": tail} {
		var r Response
		r.Compress(data)
		if name == "text" && (r.Enc != EncS2 || len(r.Data) >= len(data)/4) {
			t.Errorf("text: enc %d, %d -> %d bytes", r.Enc, len(data), len(r.Data))
		}
		if name == "tail" && (r.Enc != EncS2 || len(r.Data) > len(random)+len(random)/16) {
			t.Errorf("tail: enc %d, %d -> %d bytes", r.Enc, len(data), len(r.Data))
		}
		if name == "random" && r.Enc != EncRaw {
			t.Errorf("random data was sent compressed")
		}
		got, err := r.Payload(len(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: round trip failed: %v", name, err)
		}
		if r.Enc == EncS2 {
			if _, err := r.Payload(len(data) - 1); err == nil {
				t.Errorf("a block decoding to more than asked was accepted")
			}
		}
	}
}

type rw struct {
	io.Reader
	io.Writer
}

func TestGarbageFrames(t *testing.T) {
	for _, in := range [][]byte{
		{0, 0, 0, 0},                                          // zero length
		{0xff, 0xff, 0xff, 0xff, 1},                           // longer than MaxFrame
		{0, 0, 0, 2, 99, 0},                                   // unknown type
		{0, 0, 0, 3, byte(TypeIndex), 0xff, 0xff},             // bad CBOR
		{0, 0, 0, 9, byte(TypeIndex)},                         // truncated
		{0, 0, 0, 4, byte(TypeResponse), 0, 0, 1},             // response header cut short
		{0, 0, 0, 8, byte(TypeResponse), 0, 0, 0, 1, 0, 0, 9}, // error text overruns the frame
	} {
		c := New(rw{bytes.NewReader(in), io.Discard})
		if m, err := c.Receive(); err == nil {
			t.Errorf("% x decoded as %T", in, m)
		}
	}
}

func BenchmarkCompressRandom(b *testing.B) {
	data := make([]byte, 128<<10)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var r Response
		r.Compress(data)
	}
}

// TestSendResponses writes several responses with one call; each arrives
// whole and in order.
func TestSendResponses(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ca, cb := New(a), New(b)
	rs := []*Response{
		{ID: 1, Data: []byte("one")},
		{ID: 2, Err: "no such file"},
		{ID: 3, Data: bytes.Repeat([]byte{9}, 70<<10)},
		{ID: 4},
	}
	go func() {
		if err := ca.SendResponses(rs); err != nil {
			t.Error(err)
		}
	}()
	for _, want := range rs {
		got := receiveResponse(t, cb)
		if got.ID != want.ID || got.Err != want.Err || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("got response %d (%q, %d bytes), want %d (%q, %d bytes)", got.ID, got.Err, len(got.Data), want.ID, want.Err, len(want.Data))
		}
	}
}

// receiveResponse reads the next message from c, which must be a
// Response.
func receiveResponse(t interface{ Fatalf(string, ...any) }, c *Conn) *Response {
	m, err := c.Receive()
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	r, ok := m.(*Response)
	if !ok {
		t.Fatalf("got %T, want a response", m)
	}
	return r
}

func TestRequestsBounds(t *testing.T) {
	small := Request{Size: MaxBatched}
	cases := []struct {
		name string
		reqs []Request
		ok   bool
	}{
		{"one", []Request{{Size: 1}}, true},
		{"empty", nil, false},
		{"at the count bound", make([]Request, MaxBatch), true},
		{"over the count bound", make([]Request, MaxBatch+1), false},
		{"request too large", []Request{{Size: MaxBatched + 1}}, false},
		{"at the byte bound", []Request{small, small, small, small, small, small, small, small}, true},
		{"over the byte bound", []Request{small, small, small, small, small, small, small, small, {Size: 1}}, false},
	}
	for _, tc := range cases {
		if err := (&Requests{Reqs: tc.reqs}).Check(); (err == nil) != tc.ok {
			t.Errorf("%s: Check() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

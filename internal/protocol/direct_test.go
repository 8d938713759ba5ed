package protocol

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"pgregory.net/rapid"
)

// TestMixedSizesKeepFraming: responses of every size class (under and
// over the direct threshold, sent one by one or batched, by concurrent
// senders) arrive whole and in each sender's order, with the stream cut
// into arbitrary read sizes.
func TestMixedSizesKeepFraming(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		senders := rapid.IntRange(1, 3).Draw(t, "senders")
		plans := make([][]int, senders)
		for s := range plans {
			plans[s] = rapid.SliceOfN(rapid.SampledFrom([]int{0, 1, 100, direct - 1, direct, direct + 1, 200 << 10, 600 << 10}), 1, 5).Draw(t, "sizes")
		}
		chop := rapid.IntRange(1, 70<<10).Draw(t, "read size") + 4<<10
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ca, cb := New(a), New(&chopped{b, chop})
		payload := func(s, i, n int) []byte { return bytes.Repeat([]byte{byte(s*16 + i)}, n) }
		var wg sync.WaitGroup
		for s, sizes := range plans {
			wg.Go(func() {
				for i, n := range sizes {
					r := &Response{ID: uint32(s<<16 | i), Data: payload(s, i, n)}
					var err error
					if i%2 == 0 {
						err = ca.Send(r)
					} else {
						err = ca.SendResponses([]*Response{r, {ID: uint32(s<<16 | i | 1<<15), Err: "x"}})
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		next := make([]int, senders)
		total := 0
		for _, sizes := range plans {
			total += len(sizes) + len(sizes)/2
		}
		for range total {
			r := receiveResponse(t, cb)
			s, i := int(r.ID>>16), int(r.ID&0x7fff)
			if r.ID&(1<<15) != 0 {
				if r.Err != "x" || i != next[s]-1 {
					t.Fatalf("batched companion %x out of place", r.ID)
				}
				continue
			}
			if i != next[s] {
				t.Fatalf("sender %d: response %d arrived where %d was due", s, i, next[s])
			}
			next[s]++
			if !bytes.Equal(r.Data, payload(s, i, plans[s][i])) {
				t.Fatalf("sender %d response %d: %d bytes differ from the %d sent", s, i, len(r.Data), plans[s][i])
			}
			ReleaseBlock(r.Data)
		}
		wg.Wait()
	})
}

// chopped returns at most n bytes per Read.
type chopped struct {
	io.ReadWriter
	n int
}

func (c *chopped) Read(p []byte) (int, error) { return c.ReadWriter.Read(p[:min(len(p), c.n)]) }

// recorder remembers the size of every write that reaches the stream and
// reads from a fixed stream.
type recorder struct {
	io.Reader
	writes []int
	reads  []int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return len(p), nil
}
func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	r.reads = append(r.reads, len(p))
	return n, err
}

// TestLargePayloadsSkipTheBuffer: a large response reaches the stream in
// one write of its own (not cut at the buffer's size), and is read into
// the caller's buffer by reads as large as what is left of it, not
// through the 256 KiB buffer.
func TestLargePayloadsSkipTheBuffer(t *testing.T) {
	var sent bytes.Buffer
	c := New(&struct {
		io.Reader
		io.Writer
	}{nil, &sent})
	data := bytes.Repeat([]byte{3}, 400<<10)
	if err := c.Send(&Response{ID: 1, Data: data}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Reader: bytes.NewReader(nil)}
	w := New(rec)
	if err := w.Send(&Response{ID: 1, Data: data}); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 2 || rec.writes[1] != len(data) {
		t.Fatalf("writes reaching the stream: %v; want the headers, then the %d bytes of data in one", rec.writes, len(data))
	}
	in := &recorder{Reader: bytes.NewReader(sent.Bytes())}
	r := New(in)
	if got := receiveResponse(t, r).Data; !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes, not the %d sent", len(got), len(data))
	}
	// The first read fills the buffer (header and the data's start); the
	// rest goes straight into the response's buffer.
	if len(in.reads) < 2 || in.reads[1] < len(data)-256<<10 {
		t.Fatalf("reads from the stream asked for %v bytes; want the data's rest in one", in.reads)
	}
}

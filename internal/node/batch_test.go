package node

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writesConn records every Write it is given.
type writesConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (w *writesConn) Write(p []byte) (int, error) {
	if w.fail != nil {
		return 0, w.fail
	}
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (w *writesConn) all() []byte { return bytes.Join(w.writes, nil) }

func TestBatchConnCollectsRecordsBetweenBeginAndEnd(t *testing.T) {
	under := &writesConn{}
	b := &batchConn{Conn: under}

	// Outside a batch (a handshake, an alert): straight through.
	b.Write([]byte("hello"))
	if len(under.writes) != 1 {
		t.Fatalf("%d writes outside a batch, want 1 at once", len(under.writes))
	}

	b.begin()
	for i := 0; i < 8; i++ {
		if n, err := b.Write(bytes.Repeat([]byte{byte('a' + i)}, 16<<10)); n != 16<<10 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(under.writes) != 1 {
		t.Fatalf("%d writes during a batch, want none until end", len(under.writes)-1)
	}
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 {
		t.Fatalf("%d writes for a batch of 8 records, want 1", len(under.writes)-1)
	}

	var want []byte
	want = append(want, "hello"...)
	for i := 0; i < 8; i++ {
		want = append(want, bytes.Repeat([]byte{byte('a' + i)}, 16<<10)...)
	}
	if !bytes.Equal(under.all(), want) {
		t.Fatal("bytes out of order or lost")
	}
}

func TestBatchConnWritesWhenFull(t *testing.T) {
	under := &writesConn{}
	b := &batchConn{Conn: under}
	b.begin()
	rec := bytes.Repeat([]byte{1}, 16<<10)
	total := 0
	for total < 3*batchMax {
		b.Write(rec)
		total += len(rec)
	}
	b.Write(bytes.Repeat([]byte{2}, batchMax)) // larger than what is left: through
	if err := b.end(); err != nil {
		t.Fatal(err)
	}
	for i, w := range under.writes {
		if len(w) > batchMax {
			t.Fatalf("write %d of %d bytes, more than batchMax", i, len(w))
		}
	}
	if len(under.writes) < 3 || len(under.writes) > 5 {
		t.Fatalf("%d writes for %d bytes, want about %d", len(under.writes), total+batchMax, (total+batchMax)/batchMax)
	}
	if got := len(under.all()); got != total+batchMax {
		t.Fatalf("%d bytes written, want %d", got, total+batchMax)
	}
	// After end, writes go straight through again.
	n := len(under.writes)
	b.Write([]byte("x"))
	if len(under.writes) != n+1 {
		t.Fatal("a write after end was held back")
	}
}

func TestBatchConnReportsTheWriteError(t *testing.T) {
	broken := errors.New("broken pipe")
	under := &writesConn{fail: broken}
	b := &batchConn{Conn: under}
	b.begin()
	b.Write([]byte("record"))
	if err := b.end(); !errors.Is(err, broken) {
		t.Fatalf("end = %v, want the connection's error", err)
	}
}

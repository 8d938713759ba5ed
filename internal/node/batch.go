package node

import (
	"net"
	"sync"
)

// batchMax is the most a batchConn collects before it writes.
const batchMax = 512 << 10

// batchConn is the TCP connection under a TLS connection. TLS cuts what it
// is given into records of at most 16 KiB and writes each on its own: one
// system call per record, eight for every block of 128 KiB. Between begin
// and end, a batchConn collects the records instead and end writes them
// with one call; outside a batch (handshake, alerts) it writes through.
type batchConn struct {
	net.Conn

	mu  sync.Mutex
	on  bool   // between begin and end
	buf []byte // records collected, not yet written
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.on {
		return b.Conn.Write(p)
	}
	if len(b.buf)+len(p) > batchMax {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= batchMax {
			return b.Conn.Write(p)
		}
	}
	if b.buf == nil {
		b.buf = make([]byte, 0, batchMax)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// begin starts collecting; the caller must call end.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.on = true
	b.mu.Unlock()
}

// end writes what was collected since begin and stops collecting.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.on = false
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

package cluster

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Proxy is a TCP forwarder for fault injection in tests: it listens on a
// loopback port and forwards every accepted connection to a target
// address. Cut breaks the link (live connections are closed, new ones are
// closed right after they are accepted) until Heal. All methods are safe
// for concurrent use.
type Proxy struct {
	// Addr is the address to dial instead of the target.
	Addr   string
	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	closed bool
	gen    uint64 // advanced by every Cut: a connection from before is stale
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	accepted, refused uint64
	// gone is what the proxy's closed sockets received: the bytes
	// forwarded through connections that are over.
	gone uint64
}

// ListenProxy starts a proxy on 127.0.0.1:0 that forwards to target.
func ListenProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// NewProxy is ListenProxy for tests: it fails the test on error and closes
// the proxy at cleanup.
func NewProxy(t TB, target string) *Proxy {
	t.Helper()
	p, err := ListenProxy(target)
	if err != nil {
		t.Fatalf("proxy to %s: %v", target, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut closes every live connection and makes the proxy close new ones as
// soon as they are accepted, until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.gen++
	p.closeAllLocked()
}

// Heal lets new connections through again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// IsCut reports whether the link is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Stats returns how many connections were forwarded and how many were
// refused (closed because the link was cut or the target unreachable).
func (p *Proxy) Stats() (accepted, refused uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.gen++
	p.closeAllLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) closeAllLocked() {
	// Counted before any is closed: closing one makes its pipes close
	// the other end of the connection.
	for c := range p.conns {
		p.gone += received(c)
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// register records c as live if the proxy is still in generation gen and
// not cut; otherwise it closes c.
func (p *Proxy) register(gen uint64, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed || p.gen != gen {
		for _, c := range cs {
			c.Close()
		}
		p.refused++
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) forget(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if _, ok := p.conns[c]; ok {
			p.gone += received(c)
			delete(p.conns, c)
		}
	}
	for _, c := range cs {
		c.Close()
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(5 * time.Millisecond) // transient accept error (EMFILE...)
			continue
		}
		p.mu.Lock()
		gen := p.gen
		p.mu.Unlock()
		if !p.register(gen, c) {
			continue
		}
		p.wg.Add(1)
		go p.forward(gen, c)
	}
}

// forward dials the target for client c and copies both ways until either
// side is done or the link is cut.
func (p *Proxy) forward(gen uint64, c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		p.forget(c)
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		return
	}
	if !p.register(gen, up) {
		p.forget(c)
		return
	}
	p.mu.Lock()
	p.accepted++
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
	p.forget(c, up)
}

// Bytes returns how many bytes the proxy has forwarded so far, both
// directions together (TLS records included: what a network would carry).
//
// The kernel counts them: every byte forwarded was first received by one
// of the proxy's sockets, and the copy between two sockets is a splice
// that never passes through this process (counting in user space would
// mean copying every byte, CPU taken from the nodes a benchmark measures).
// Bytes received and not yet passed on are counted too; at any moment
// that is at most a pipe's buffer per direction.
func (p *Proxy) Bytes() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.gone
	for c := range p.conns {
		n += received(c)
	}
	return n
}

// received is how many bytes connection c has received so far (TCP_INFO's
// tcpi_bytes_received), 0 where the kernel does not tell.
func received(c net.Conn) uint64 {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint64
	_ = raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Bytes_received
		}
	})
	return n
}

// pipe copies src to dst (a splice between two TCP connections); at the
// end of src it half-closes dst, on an error it closes both.
func (p *Proxy) pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
	}
	p.forget(dst, src) // counted before they close
}

// CountWire routes every link of c through byte-counting proxies (call it
// before starting the nodes) and returns a function that reports the bytes
// they forwarded so far, both directions, TLS included.
func (c *Cluster) CountWire() func() uint64 {
	prox := map[[2]string]*Proxy{}
	for _, from := range c.Nodes {
		for _, to := range c.Nodes {
			if from != to {
				prox[[2]string{from.Name, to.Name}] = NewProxy(c.t, to.Addr)
			}
		}
	}
	c.PeerAddr = func(from, to *Node) string { return prox[[2]string{from.Name, to.Name}].Addr }
	for _, nd := range c.Nodes {
		c.WriteConfig(nd, "")
	}
	return func() uint64 {
		var n uint64
		for _, p := range prox {
			n += p.Bytes()
		}
		return n
	}
}

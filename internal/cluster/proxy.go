package cluster

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
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
	bytes             atomic.Uint64 // forwarded, both directions
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
		delete(p.conns, c)
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
	wg.Go(func() { pipe(countingConn{up, &p.bytes}, c) })
	wg.Go(func() { pipe(countingConn{c, &p.bytes}, up) })
	wg.Wait()
	p.forget(c, up)
}

// Bytes returns how many bytes the proxy has forwarded so far, both
// directions together (TLS records included: what a network would carry).
func (p *Proxy) Bytes() uint64 { return p.bytes.Load() }

// countingConn counts the bytes written to a connection.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(uint64(n))
	return n, err
}

func (c countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("no half-close")
}

// pipe copies src to dst; at the end of src it half-closes dst, on an
// error it closes both.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
	}
	dst.Close()
	src.Close()
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

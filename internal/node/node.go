// Package node connects a tandem node to its configured peers: it listens
// and dials with mutual TLS 1.3 (pinned certificate IDs), keeps one
// connection per pair, streams index updates both ways and serves block
// requests for its folders.
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"tandem/internal/folder"
	"tandem/internal/identity"
	"tandem/internal/protocol"
)

// Peer is a configured peer.
type Peer struct {
	ID      identity.ID
	Address string // empty: never dialled, only accepted
}

// Options configure a Node.
type Options struct {
	Identity *identity.Identity
	Listen   string
	Peers    []Peer
	Folders  []*folder.Folder
	Log      *slog.Logger
}

// Node manages the connections of one tandem process.
type Node struct {
	opt     Options
	me      identity.ID
	peers   map[identity.ID]Peer
	folders map[string]*folder.Folder
	log     *slog.Logger

	mu    sync.Mutex
	conns map[identity.ID]*conn
	state map[identity.ID]*peerState

	chMu    sync.Mutex
	changed chan struct{} // closed and replaced on every local index change

	listenAddr net.Addr
	ready      chan struct{}
}

type peerState struct {
	lastErr   string
	since     time.Time
	bytesIn   uint64
	bytesOut  uint64
	connected bool
}

// New creates a node.
func New(opt Options) *Node {
	n := &Node{
		opt:     opt,
		me:      opt.Identity.ID,
		peers:   map[identity.ID]Peer{},
		folders: map[string]*folder.Folder{},
		log:     opt.Log,
		conns:   map[identity.ID]*conn{},
		state:   map[identity.ID]*peerState{},
		changed: make(chan struct{}),
		ready:   make(chan struct{}),
	}
	for _, p := range opt.Peers {
		n.peers[p.ID] = p
		n.state[p.ID] = &peerState{}
	}
	for _, f := range opt.Folders {
		n.folders[f.ID()] = f
	}
	return n
}

// SetFolders sets the folders served; call before Run.
func (n *Node) SetFolders(fs []*folder.Folder) {
	for _, f := range fs {
		n.folders[f.ID()] = f
	}
}

// Changed tells every connection that the local index has new records.
func (n *Node) Changed() {
	n.chMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.chMu.Unlock()
}

func (n *Node) changedCh() <-chan struct{} {
	n.chMu.Lock()
	defer n.chMu.Unlock()
	return n.changed
}

// Connected reports whether peer has a live connection.
//
// Folders call it from inside index transactions, so n.mu must never be
// held while anything reads or writes the index (see Status).
func (n *Node) Connected(peer identity.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.conns[peer]
	return ok
}

// Request fetches a block from peer.
func (n *Node) Request(ctx context.Context, peer identity.ID, req *protocol.Request) ([]byte, error) {
	n.mu.Lock()
	c := n.conns[peer]
	n.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("peer %s is not connected", peer.Short())
	}
	return c.request(ctx, req)
}

// Hint passes h to every connected peer that shares its folder, without
// waiting for any of them.
func (n *Node) Hint(h *protocol.Hint) {
	n.mu.Lock()
	conns := make([]*conn, 0, len(n.conns))
	for _, c := range n.conns {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		if c.shares(h.Folder) {
			c.hint(h)
		}
	}
}

// ListenAddr returns the bound listen address once Run has started.
func (n *Node) ListenAddr() net.Addr {
	<-n.ready
	return n.listenAddr
}

// Run listens and dials until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.opt.Listen)
	if err != nil {
		close(n.ready)
		return fmt.Errorf("listen on %s: %w", n.opt.Listen, err)
	}
	n.listenAddr = ln.Addr()
	close(n.ready)
	n.log.Info("listening", "address", ln.Addr().String(), "id", n.me.String())
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
		n.mu.Lock()
		for _, c := range n.conns {
			c.close(errors.New("shutting down"))
		}
		n.mu.Unlock()
	})
	for _, p := range n.peers {
		if p.Address != "" {
			wg.Go(func() { n.dialLoop(ctx, p) })
		}
	}
	for {
		raw, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			n.log.Warn("accept", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		wg.Go(func() { n.accept(ctx, raw) })
	}
	wg.Wait()
	return nil
}

func (n *Node) allow(id identity.ID) error {
	if _, ok := n.peers[id]; !ok {
		return fmt.Errorf("node %s is not a configured peer", id)
	}
	return nil
}

func (n *Node) accept(ctx context.Context, raw net.Conn) {
	setTCP(raw)
	tc := tls.Server(&batchConn{Conn: raw}, n.opt.Identity.ServerTLS(n.allow))
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		if ctx.Err() != nil {
			raw.Close()
			return
		}
		n.log.Warn("rejected incoming connection", "remote", raw.RemoteAddr().String(), "err", err)
		raw.Close()
		return
	}
	id, err := identity.PeerID(tc.ConnectionState())
	if err != nil {
		raw.Close()
		return
	}
	n.serve(ctx, tc, id, false)
}

func setTCP(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
		_ = tc.SetKeepAlivePeriod(15 * time.Second)
	}
}

func (n *Node) dialLoop(ctx context.Context, p Peer) {
	backoff := 250 * time.Millisecond
	logged := ""
	for ctx.Err() == nil {
		if n.Connected(p.ID) {
			n.waitDisconnect(ctx, p.ID)
			backoff = 250 * time.Millisecond
			continue
		}
		d := net.Dialer{Timeout: 10 * time.Second}
		raw, err := d.DialContext(ctx, "tcp", p.Address)
		if err == nil {
			setTCP(raw)
			tc := tls.Client(&batchConn{Conn: raw}, n.opt.Identity.ClientTLS(p.ID))
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = tc.HandshakeContext(hctx)
			cancel()
			if err == nil {
				logged = ""
				began := time.Now()
				n.serve(ctx, tc, p.ID, true)
				if time.Since(began) > 10*time.Second {
					backoff = 250 * time.Millisecond
					continue
				}
				// The connection failed quickly (peer shutting down or
				// misbehaving): back off instead of reconnecting in a loop.
				err = errors.New("connection closed right after it was established")
			} else {
				raw.Close()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if msg := err.Error(); msg != logged {
				n.log.Warn("cannot connect to peer; retrying with backoff", "peer", p.ID.Short(), "address", p.Address, "err", err)
				logged = msg
			}
			n.setErr(p.ID, fmt.Errorf("dial %s: %w", p.Address, err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (n *Node) waitDisconnect(ctx context.Context, id identity.ID) {
	n.mu.Lock()
	c := n.conns[id]
	n.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case <-ctx.Done():
	case <-c.done:
	}
}

func (n *Node) setErr(id identity.ID, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st := n.state[id]; st != nil && err != nil {
		st.lastErr = err.Error()
	}
}

// keep decides which of two connections to one peer survives: the one
// dialled by the node with the smaller ID, so both sides agree.
func (n *Node) preferred(peer identity.ID, dialedByMe bool) bool {
	meSmaller := bytes.Compare(n.me[:], peer[:]) < 0
	return dialedByMe == meSmaller
}

// serve runs one authenticated connection until it fails.
func (n *Node) serve(ctx context.Context, tc *tls.Conn, peer identity.ID, dialed bool) {
	c := newConn(n, tc, peer, dialed)
	n.mu.Lock()
	if old := n.conns[peer]; old != nil {
		if old.dialed != dialed && !n.preferred(peer, dialed) {
			n.mu.Unlock()
			tc.Close()
			return
		}
		old.close(errors.New("replaced by a newer connection"))
	}
	n.conns[peer] = c
	st := n.state[peer]
	st.connected, st.since, st.lastErr = true, time.Now(), ""
	n.mu.Unlock()
	n.log.Info("peer connected", "peer", peer.Short(), "remote", tc.RemoteAddr().String())

	err := c.run(ctx)

	n.mu.Lock()
	if n.conns[peer] == c {
		delete(n.conns, peer)
		st.connected = false
		if err != nil && ctx.Err() == nil {
			st.lastErr = err.Error()
		}
	}
	n.mu.Unlock()
	if ctx.Err() == nil {
		n.log.Info("peer disconnected", "peer", peer.Short(), "err", err)
	}
}

// PeerStatus is a snapshot for `tandem status`.
type PeerStatus struct {
	ID        string    `json:"id"`
	Address   string    `json:"address,omitempty"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	BytesIn   uint64    `json:"bytes_in"`
	BytesOut  uint64    `json:"bytes_out"`
	// Unsent is, per folder, how many local sequence numbers the peer has
	// not been sent yet.
	Unsent map[string]uint64 `json:"unsent,omitempty"`
}

// Status returns the peers' status.
func (n *Node) Status() []PeerStatus {
	var out []PeerStatus
	var conns []*conn
	n.mu.Lock()
	for _, p := range n.opt.Peers {
		st := n.state[p.ID]
		ps := PeerStatus{ID: p.ID.String(), Address: p.Address, Connected: st.connected, LastError: st.lastErr}
		if st.connected {
			ps.Since = st.since
		}
		c := n.conns[p.ID]
		if c != nil {
			ps.BytesIn, ps.BytesOut = c.counter.in.Load(), c.counter.out.Load()
		}
		out = append(out, ps)
		conns = append(conns, c)
	}
	n.mu.Unlock()
	// The index is read without n.mu held: a folder that asks whether a
	// peer is connected from inside an index transaction would otherwise
	// wait for n.mu while this waited for the index (bbolt lets no new
	// reader in while a writer waits to grow the file): a deadlock.
	for i, c := range conns {
		if c != nil {
			out[i].Unsent = c.unsent()
		}
	}
	return out
}

package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/folder"
	"tandem/internal/identity"
	"tandem/internal/protocol"
	"tandem/internal/record"
)

const (
	pingEvery   = 20 * time.Second
	idleTimeout = 60 * time.Second
	indexBatch  = 1000
	maxServing  = 64
	indexQueue  = 8 // index messages received, not yet stored
)

// counter counts bytes on a connection. Each of its writes reaches the
// network in one system call where the TLS connection is over a
// batchConn.
type counter struct {
	net.Conn
	batch   *batchConn // nil: records are written one by one
	in, out atomic.Uint64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	return n, err
}

func (c *counter) Write(p []byte) (int, error) {
	if c.batch != nil {
		c.batch.begin()
	}
	n, err := c.Conn.Write(p)
	if c.batch != nil {
		if ferr := c.batch.end(); err == nil && ferr != nil {
			n, err = 0, ferr
		}
	}
	c.out.Add(uint64(n))
	return n, err
}

// conn is one live, authenticated connection to a peer.
type conn struct {
	n       *Node
	peer    identity.ID
	dialed  bool
	raw     *tls.Conn
	counter *counter
	pc      *protocol.Conn

	done    chan struct{}
	errOnce sync.Once
	err     error

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan *protocol.Response
	sent    map[string]*atomic.Uint64 // folder -> highest local seq sent

	// hints waiting to be sent; a hint that finds it full is dropped (it
	// is advice: the peer fetches the file when it is announced anyway).
	hints chan *protocol.Hint
	// small requests waiting to be sent together (sendRequests)
	reqQ chan protocol.Request
}

func newConn(n *Node, tc *tls.Conn, peer identity.ID, dialed bool) *conn {
	cnt := &counter{Conn: tc}
	cnt.batch, _ = tc.NetConn().(*batchConn)
	return &conn{
		n: n, peer: peer, dialed: dialed, raw: tc, counter: cnt,
		pc:      protocol.New(cnt),
		done:    make(chan struct{}),
		waiting: map[uint32]chan *protocol.Response{},
		hints:   make(chan *protocol.Hint, hintQueue),
		reqQ:    make(chan protocol.Request, protocol.MaxBatch),
		sent:    map[string]*atomic.Uint64{},
	}
}

func (c *conn) close(err error) {
	c.errOnce.Do(func() {
		c.err = err
		close(c.done)
		c.raw.Close()
	})
}

func (c *conn) unsent() map[string]uint64 {
	c.mu.Lock()
	sent := make(map[string]*atomic.Uint64, len(c.sent))
	for id, s := range c.sent {
		sent[id] = s
	}
	c.mu.Unlock()
	// The index is read without c.mu held (see Node.Status).
	out := map[string]uint64{}
	for id, s := range sent {
		_, max := c.n.folders[id].LocalIndexID()
		if v := s.Load(); max > v {
			out[id] = max - v
		} else {
			out[id] = 0
		}
	}
	return out
}

// run exchanges Hello, then streams indexes and serves requests until the
// connection fails or ctx ends.
func (c *conn) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			c.close(errors.New("shutting down"))
		case <-c.done:
		}
	}()
	hello := &protocol.Hello{Version: protocol.ProtocolVersion}
	for id, f := range c.n.folders {
		idxID, _ := f.LocalIndexID()
		haveID, haveSeq := f.PeerPosition(c.peer)
		hello.Folders = append(hello.Folders, protocol.FolderHello{ID: id, IndexID: idxID, HaveIndexID: haveID, HaveSeq: haveSeq})
	}
	errc := make(chan error, 1)
	go func() { errc <- c.pc.Send(hello) }()
	_ = c.raw.SetReadDeadline(time.Now().Add(idleTimeout))
	m, err := c.pc.Receive()
	if err != nil {
		c.close(err)
		return fmt.Errorf("read hello: %w", err)
	}
	theirs, ok := m.(*protocol.Hello)
	if !ok {
		c.close(errors.New("no hello"))
		return fmt.Errorf("peer %s sent %T before hello", c.peer.Short(), m)
	}
	if err := <-errc; err != nil {
		c.close(err)
		return fmt.Errorf("send hello: %w", err)
	}
	if theirs.Version != protocol.ProtocolVersion {
		err := fmt.Errorf("peer %s speaks protocol version %d, this node %d: run the same tandem release on both", c.peer.Short(), theirs.Version, protocol.ProtocolVersion)
		c.close(err)
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, fh := range theirs.Folders {
		f := c.n.folders[fh.ID]
		if f == nil {
			continue
		}
		idxID, _ := f.LocalIndexID()
		from := fh.HaveSeq
		if fh.HaveIndexID != idxID {
			from = 0
		}
		s := &atomic.Uint64{}
		s.Store(from)
		c.mu.Lock()
		c.sent[fh.ID] = s
		c.mu.Unlock()
		wg.Go(func() { c.sendIndex(ctx, f, s) })
		f.Wake() // versions waiting for a source may now be fetched
	}
	wg.Go(func() { c.pinger(ctx) })
	wg.Go(func() { c.sendRequests(ctx) })
	err = c.readLoop()
	c.close(err)
	c.mu.Lock()
	for id, ch := range c.waiting {
		close(ch)
		delete(c.waiting, id)
	}
	c.mu.Unlock()
	return err
}

func (c *conn) sendIndex(ctx context.Context, f *folder.Folder, sent *atomic.Uint64) {
	for {
		ch := c.n.changedCh()
		pos := sent.Load()
		last, _, err := f.Since(pos, indexBatch, func(recs []record.Record, last uint64) error {
			idxID, _ := f.LocalIndexID()
			return c.pc.Send(&protocol.Index{Folder: f.ID(), IndexID: idxID, Records: recs, Last: last})
		})
		if err != nil {
			c.close(fmt.Errorf("send index of %q: %w", f.ID(), err))
			return
		}
		if last != pos {
			sent.Store(last)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-ch:
		}
	}
}

// hintQueue is how many hints may wait for one connection.
const hintQueue = 64

// shares reports whether the peer shares folder (its Hello named it).
func (c *conn) shares(folder string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[folder] != nil
}

// hint queues h for the peer without waiting; it reports whether h was
// queued.
func (c *conn) hint(h *protocol.Hint) bool {
	select {
	case c.hints <- h:
		return true
	default:
		return false
	}
}

// pinger sends a Ping every pingEvery, and the queued hints.
func (c *conn) pinger(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		var m any
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
			m = &protocol.Ping{}
		case h := <-c.hints:
			m = h
		}
		if err := c.pc.Send(m); err != nil {
			c.close(err)
			return
		}
	}
}

func (c *conn) readLoop() error {
	serving := make(chan struct{}, maxServing)
	serve := func(reqs []protocol.Request) {
		serving <- struct{}{}
		go func() {
			defer func() { <-serving }()
			c.serve(reqs)
		}()
	}
	// Index messages are stored by a goroutine of their own, in order:
	// storing one is a durable transaction, and meanwhile the responses
	// to our block requests and the peer's requests must keep flowing.
	indexQ := make(chan *protocol.Index, indexQueue)
	indexDone := make(chan struct{})
	go func() {
		defer close(indexDone)
		for m := range indexQ {
			select {
			case <-c.done:
				continue // the connection failed: the peer sends it again
			default:
			}
			if err := c.n.folders[m.Folder].HandleIndex(c.peer, m); err != nil {
				c.close(err)
			}
		}
	}()
	defer func() {
		close(indexQ)
		<-indexDone
	}()
	for {
		_ = c.raw.SetReadDeadline(time.Now().Add(idleTimeout))
		m, err := c.pc.Receive()
		if err != nil {
			select {
			case <-c.done:
				if c.err != nil {
					return c.err
				}
			default:
			}
			if errors.Is(err, io.EOF) {
				return errors.New("closed by peer")
			}
			return err
		}
		switch m := m.(type) {
		case *protocol.Ping:
		case *protocol.Index:
			if c.n.folders[m.Folder] == nil {
				return fmt.Errorf("peer %s sent an index for unshared folder %q", c.peer.Short(), m.Folder)
			}
			select {
			case indexQ <- m:
			case <-c.done:
				return c.err
			}
		case *protocol.Request:
			serve([]protocol.Request{*m})
		case *protocol.Requests:
			if err := m.Check(); err != nil {
				return fmt.Errorf("peer %s: %w", c.peer.Short(), err)
			}
			serve(m.Reqs) // one slot: a batch holds no more than one block
		case *protocol.Response:
			c.mu.Lock()
			ch := c.waiting[m.ID]
			delete(c.waiting, m.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case *protocol.Hint:
			// Advice for a shared folder; anything else is ignored.
			if f := c.n.folders[m.Folder]; f != nil && c.shares(m.Folder) {
				f.HandleHint(c.peer, m)
			}
		case *protocol.Hello:
			return fmt.Errorf("peer %s sent a second hello", c.peer.Short())
		}
	}
}

// serve reads the blocks reqs ask for and answers them all with one write.
func (c *conn) serve(reqs []protocol.Request) {
	resps := make([]*protocol.Response, len(reqs))
	datas := make([][]byte, len(reqs))
	for i := range reqs {
		m := &reqs[i]
		resp := &protocol.Response{ID: m.ID}
		if f := c.n.folders[m.Folder]; f == nil {
			resp.Err = fmt.Sprintf("folder %q is not shared", m.Folder)
		} else if d, err := f.ServeBlock(m); err != nil {
			resp.Err = err.Error()
		} else {
			datas[i] = d
			resp.Compress(d)
		}
		resps[i] = resp
	}
	if err := c.pc.SendResponses(resps); err != nil {
		c.close(err)
	}
	// Written out (or failed): the buffers go back.
	for i, resp := range resps {
		resp.ReleaseEncoded()
		if datas[i] != nil {
			protocol.ReleaseBlock(datas[i])
		}
	}
}

// sendRequests sends the small requests that request queues: each time
// it can write, all those waiting (within the bounds of a batch) go in
// one Requests message, so a stream of small files costs a few frames,
// writes and wake-ups on both sides rather than one per file. A request
// alone goes at once, as a plain Request.
func (c *conn) sendRequests(ctx context.Context) {
	var carry *protocol.Request // taken from the queue, for the next batch
	for {
		var first protocol.Request
		if carry != nil {
			first, carry = *carry, nil
		} else {
			select {
			case <-ctx.Done():
				return
			case <-c.done:
				return
			case first = <-c.reqQ:
			}
		}
		batch := []protocol.Request{first}
		size := int64(first.Size)
		if len(c.reqQ) == 0 {
			// Let the goroutines that are ready run first: workers that
			// just got their responses ask for their next files in a
			// moment, and go in this batch rather than one each.
			runtime.Gosched()
		}
	more:
		for len(batch) < protocol.MaxBatch {
			select {
			case r := <-c.reqQ:
				if size+int64(r.Size) > protocol.MaxBatchBytes {
					carry = &r
					break more
				}
				batch = append(batch, r)
				size += int64(r.Size)
			default:
				break more
			}
		}
		var m any = &protocol.Requests{Reqs: batch}
		if len(batch) == 1 {
			m = &batch[0]
		}
		if err := c.pc.Send(m); err != nil {
			c.close(err)
			return
		}
	}
}

func (c *conn) request(ctx context.Context, req *protocol.Request) ([]byte, error) {
	ch := make(chan *protocol.Response, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.waiting[id] = ch
	c.mu.Unlock()
	r := *req
	r.ID = id
	if r.Size <= protocol.MaxBatched {
		select {
		case c.reqQ <- r:
		case <-ctx.Done():
			return nil, c.forgetRequest(ctx, id)
		case <-c.done:
			return nil, c.forgetRequest(ctx, id)
		}
	} else if err := c.pc.Send(&r); err != nil {
		c.close(err)
		return nil, err
	}
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("connection to %s lost", c.peer.Short())
		}
		if resp.Err != "" {
			return nil, fmt.Errorf("peer %s: %s", c.peer.Short(), resp.Err)
		}
		data, err := resp.Payload(int(req.Size))
		resp.ReleaseEncoded() // decoded into a buffer of its own
		return data, err
	case <-ctx.Done():
	case <-c.done:
	case <-t.C:
		c.close(errors.New("request timed out"))
	}
	return nil, c.forgetRequest(ctx, id)
}

// forgetRequest drops request id, which gets no answer, and says why.
func (c *conn) forgetRequest(ctx context.Context, id uint32) error {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("connection to %s lost", c.peer.Short())
}

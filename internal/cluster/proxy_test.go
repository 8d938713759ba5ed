package cluster

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// echoServer accepts connections and echoes every line back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// roundTrip sends one line over c and reads it back.
func roundTrip(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != msg+"\n" {
		return fmt.Errorf("echo %q, want %q", line, msg)
	}
	return nil
}

// closedSoon reports whether the peer closes c within the timeout.
func closedSoon(c net.Conn, timeout time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestProxyForwardsCutsAndHeals(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	if p.Addr == "" || p.Target() == "" {
		t.Fatal("proxy without addresses")
	}
	c1, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := roundTrip(c1, "hello"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	// "hello\n" went up and came back: 12 bytes forwarded (counted just
	// after each write returns, so poll briefly).
	for deadline := time.Now().Add(5 * time.Second); p.Bytes() != 12; {
		if time.Now().After(deadline) {
			t.Fatalf("Bytes() = %d after one 6-byte echo, want 12", p.Bytes())
		}
		time.Sleep(time.Millisecond) // poll interval
	}

	p.Cut()
	if !p.IsCut() {
		t.Fatal("IsCut false after Cut")
	}
	if !closedSoon(c1, 5*time.Second) {
		t.Fatal("live connection survived Cut")
	}
	if n := p.Bytes(); n != 12 {
		t.Fatalf("Bytes() = %d once the connection was cut, want the 12 it forwarded", n)
	}
	// New connections are accepted by the kernel but closed at once.
	for range 3 {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			continue // refused outright is fine too
		}
		if !closedSoon(c, 5*time.Second) {
			t.Fatal("connection made while cut was not closed")
		}
		c.Close()
	}

	p.Heal()
	if p.IsCut() {
		t.Fatal("IsCut true after Heal")
	}
	c2, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2, "again"); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
	acc, ref := p.Stats()
	if acc < 2 || ref < 3 {
		t.Errorf("stats: %d accepted, %d refused; want >= 2 and >= 3", acc, ref)
	}
}

func TestProxyUnreachableTarget(t *testing.T) {
	// A port nobody listens on: the client's connection is closed.
	p := NewProxy(t, FreeAddr(t))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !closedSoon(c, 5*time.Second) {
		t.Fatal("connection to an unreachable target stayed open")
	}
}

func TestProxyHalfClose(t *testing.T) {
	p := NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "last words"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last words" {
		t.Fatalf("after half-close: %q, %v", b, err)
	}
}

// TestProxyConcurrent hammers Cut, Heal and traffic at once (meant for
// -race) and checks the proxy still works and closes cleanly.
func TestProxyConcurrent(t *testing.T) {
	p, err := ListenProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", p.Addr)
				if err != nil {
					continue
				}
				_ = roundTrip(c, fmt.Sprintf("worker %d msg %d", i, n)) // may fail while cut
				c.Close()
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.Cut()
			time.Sleep(time.Millisecond)
			p.Heal()
			time.Sleep(2 * time.Millisecond)
		}
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	p.Heal()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(c, "still alive"); err != nil {
		t.Fatalf("after the storm: %v", err)
	}
	c.Close()
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", p.Addr); err == nil {
		if !closedSoon(c, 5*time.Second) {
			t.Error("closed proxy still forwards")
		}
		c.Close()
	}
}

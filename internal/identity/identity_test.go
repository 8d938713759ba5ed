package identity

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestGenerateLoadParse(t *testing.T) {
	dir := t.TempDir()
	a, err := Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Fatalf("ID changed across load: %s vs %s", a.ID, b.ID)
	}
	if _, err := Generate(dir); err == nil {
		t.Fatal("Generate overwrote an existing identity")
	}
	s := a.ID.String()
	if len(s) != 52 {
		t.Fatalf("ID string length %d", len(s))
	}
	p, err := ParseID(strings.ToLower(s[:10]) + "-" + s[10:])
	if err != nil || p != a.ID {
		t.Fatalf("ParseID round trip: %v %v", p, err)
	}
	for _, bad := range []string{"", "abc", s[:51] + "!", strings.Repeat("Z", 52)} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func handshake(t *testing.T, srv *tls.Config, cli *tls.Config) (error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, srv)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte("x"))
		}
		errc <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, cli)
	cerr := c.Handshake()
	if cerr == nil {
		// In TLS 1.3 a rejected client certificate surfaces on the first read.
		_, cerr = c.Read(make([]byte, 1))
	}
	c.Close()
	return <-errc, cerr
}

func TestMutualPinning(t *testing.T) {
	a, _ := Generate(t.TempDir())
	b, _ := Generate(t.TempDir())
	evil, _ := Generate(t.TempDir())
	allowOnly := func(want ID) func(ID) error {
		return func(got ID) error {
			if got != want {
				return errors.New("not configured")
			}
			return nil
		}
	}
	if se, ce := handshake(t, a.ServerTLS(allowOnly(b.ID)), b.ClientTLS(a.ID)); se != nil || ce != nil {
		t.Fatalf("configured peers rejected: %v / %v", se, ce)
	}
	if se, _ := handshake(t, a.ServerTLS(allowOnly(b.ID)), evil.ClientTLS(a.ID)); se == nil {
		t.Fatal("server accepted an unknown client")
	}
	if _, ce := handshake(t, evil.ServerTLS(allowOnly(b.ID)), b.ClientTLS(a.ID)); ce == nil {
		t.Fatal("client accepted an impostor server")
	}
}

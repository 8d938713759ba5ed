package cluster

import (
	"net"
	"strconv"
	"testing"
)

func TestRangeOutside(t *testing.T) {
	for _, c := range []struct {
		eLo, eHi, lo, hi int
		ok               bool
	}{
		{32768, 60999, 10000, 32768, true}, // Linux's default
		{10500, 60999, 61000, 65536, true}, // little room below: above
		{1024, 65535, 0, 0, false},         // all ephemeral
		{10999, 64600, 0, 0, false},        // too little on either side
		{11000, 65535, 10000, 11000, true},
	} {
		lo, hi, ok := rangeOutside(c.eLo, c.eHi)
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("rangeOutside(%d, %d) = %d, %d, %v; want %d, %d, %v", c.eLo, c.eHi, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
	if _, _, err := parseRange("32768\t60999\n"); err != nil {
		t.Errorf("parseRange: %v", err)
	}
	if _, _, err := parseRange("32768"); err == nil {
		t.Error("parseRange of one number: no error")
	}
}

// TestFreeAddrAvoidsKernelPorts: the addresses FreeAddr hands out are
// outside the range the kernel picks ports from for port-0 listeners, so
// the many listeners opened meanwhile never get one of them, and a node
// can bind its address later.
func TestFreeAddrAvoidsKernelPorts(t *testing.T) {
	lo, hi, ok := pickRange()
	if !ok {
		t.Skip("no port range outside the ephemeral one here")
	}
	var addrs []string
	for range 50 {
		addrs = append(addrs, FreeAddr(t))
	}
	mine := map[string]bool{}
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi {
			t.Errorf("port %d outside [%d, %d)", port, lo, hi)
		}
		if mine[a] {
			t.Errorf("%s handed out twice", a)
		}
		mine[a] = true
	}
	// Many port-0 listeners at once (as proxies are) get none of them.
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 500 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		if mine[l.Addr().String()] {
			t.Fatalf("a port-0 listener got %s, handed out by FreeAddr", l.Addr())
		}
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("bind %s: %v", a, err)
		}
		l.Close()
	}
}

package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// FreeAddr returns a loopback address with a port nobody listens on, for a
// node to listen on later. A port is free only until someone binds it, and
// every listener on port 0 (a proxy, an rsync daemon, another test) and
// every outgoing connection takes one from the kernel's ephemeral range:
// a port picked there and closed could be handed out again before the node
// binds it (a proxy got a node's port, and the node could not start). So
// the port is picked at random below the ephemeral range, where the
// kernel never hands one out by itself, and checked by binding it. No
// address is returned twice in a process.
func FreeAddr(t TB) string {
	t.Helper()
	handedMu.Lock()
	defer handedMu.Unlock()
	// take binds addr (port 0: any) and returns the address bound, if it
	// is free and was not handed out before.
	take := func(addr string) (string, bool) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", false // in use
		}
		got := l.Addr().String()
		l.Close()
		if handed[got] {
			return "", false
		}
		handed[got] = true
		return got, true
	}
	if lo, hi, ok := pickRange(); ok {
		for range 1000 {
			if addr, ok := take("127.0.0.1:" + strconv.Itoa(lo+rand.IntN(hi-lo))); ok {
				return addr
			}
		}
	}
	// No room outside the ephemeral range: take one from the kernel.
	for range 100 {
		if addr, ok := take("127.0.0.1:0"); ok {
			return addr
		}
	}
	t.Fatalf("no fresh loopback port after 1100 tries")
	return ""
}

var (
	handedMu sync.Mutex
	handed   = map[string]bool{}
)

// pickRange returns the ports [lo, hi) FreeAddr picks from: from 10000 up
// to the start of the kernel's ephemeral range, or above its end.
func pickRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	eLo, eHi, err := parseRange(string(b))
	if err != nil {
		return 0, 0, false
	}
	return rangeOutside(eLo, eHi)
}

// parseRange reads ip_local_port_range: two numbers.
func parseRange(s string) (lo, hi int, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("port range %q: want two numbers", s)
	}
	if lo, err = strconv.Atoi(f[0]); err != nil {
		return 0, 0, err
	}
	if hi, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}

// rangeOutside returns at least 1000 ports at or above 10000 outside the
// ephemeral range [eLo, eHi], preferring those below it.
func rangeOutside(eLo, eHi int) (lo, hi int, ok bool) {
	const floor, minPorts = 10000, 1000
	if eLo-floor >= minPorts {
		return floor, eLo, true
	}
	if start := max(eHi+1, floor); 65536-start >= minPorts {
		return start, 65536, true
	}
	return 0, 0, false
}

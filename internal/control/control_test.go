package control

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestGetLeavesNoConnection: every Get closes its connection, so a client
// polling the daemon does not leave idle connections behind (each costs
// the daemon a goroutine and buffers).
func TestGetLeavesNoConnection(t *testing.T) {
	home := t.TempDir()
	ln, err := Listen(home)
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, map[string]int{"n": 1}) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(ln)
	defer srv.Close()
	for range 50 {
		var v map[string]int
		if err := Get(context.Background(), home, "/x", &v); err != nil || v["n"] != 1 {
			t.Fatalf("Get: %v %v", v, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after 50 Gets", open.Load())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

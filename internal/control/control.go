// Package control is the local channel between a running daemon and the
// `tandem` commands that query it: HTTP over a unix socket in the home
// directory, readable only by its owner.
package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// SocketPath returns the control socket of home. Paths too long for a unix
// socket fall back to an abstract socket named after the home directory.
func SocketPath(home string) string {
	p := filepath.Join(home, "tandem.sock")
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(p))
	return "@tandem-" + hex.EncodeToString(sum[:12])
}

// Listen opens the control socket, replacing a stale one.
func Listen(home string) (net.Listener, error) {
	p := SocketPath(home)
	if p[0] != '@' {
		if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another tandem is already running with --home %s (socket %s answers)", home, p)
		}
		os.Remove(p)
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", p, err)
	}
	if p[0] != '@' {
		_ = os.Chmod(p, 0o600)
	}
	return ln, nil
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Get fetches path from the daemon of home and decodes JSON into v.
func Get(ctx context.Context, home, path string, v any) error {
	p := SocketPath(home)
	// One request per connection: a caller that asks often (a monitoring
	// loop) must not leave idle connections, each holding a goroutine and
	// buffers in the daemon.
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", p)
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://tandem"+path, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("tandem is not running with --home %s (cannot reach %s): %w", home, p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("daemon answered %s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

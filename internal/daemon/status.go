package daemon

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"tandem/internal/control"
)

// QueryStatus asks the daemon of home for its status.
func QueryStatus(ctx context.Context, home string, st *Status) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return control.Get(ctx, home, "/status", st)
}

// HasError reports whether any folder is stopped or has failing items.
func (s *Status) HasError() bool {
	for _, f := range s.Folders {
		if f.State == "error" || len(f.ItemError) > 0 {
			return true
		}
	}
	return false
}

// InSync reports whether every folder is idle with nothing pending and
// every peer is connected and has been sent everything.
func (s *Status) InSync() bool {
	for _, f := range s.Folders {
		if f.State != "idle" || f.Needed > 0 {
			return false
		}
	}
	for _, p := range s.Peers {
		if !p.Connected {
			return false
		}
		for _, n := range p.Unsent {
			if n > 0 {
				return false
			}
		}
	}
	return true
}

// PrintStatus renders the status for people.
func PrintStatus(w io.Writer, s *Status) {
	fmt.Fprintf(w, "node    %s\nlisten  %s\nup      since %s\n\n", s.ID, s.Listen, s.Started.Format(time.RFC3339))
	for _, f := range s.Folders {
		state := f.State
		if f.State == "idle" && f.Needed == 0 {
			state = "in sync"
		}
		fmt.Fprintf(w, "folder %-12s %s\n  state   %s", f.ID, f.Path, state)
		if f.Needed > 0 {
			fmt.Fprintf(w, " (%d items pending)", f.Needed)
		}
		fmt.Fprintf(w, "\n  files   %d\n", f.Files)
		if f.Error != "" {
			fmt.Fprintf(w, "  ERROR   %s\n", f.Error)
		}
		paths := make([]string, 0, len(f.ItemError))
		for p := range f.ItemError {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for i, p := range paths {
			if i == 10 {
				fmt.Fprintf(w, "  ... and %d more failing items\n", len(paths)-10)
				break
			}
			fmt.Fprintf(w, "  failing %s: %s\n", p, f.ItemError[p])
		}
	}
	if len(s.Peers) > 0 {
		fmt.Fprintln(w)
	}
	for _, p := range s.Peers {
		conn := "not connected"
		if p.Connected {
			conn = "connected since " + p.Since.Format(time.RFC3339)
			var behind []string
			for f, n := range p.Unsent {
				if n > 0 {
					behind = append(behind, fmt.Sprintf("%s: %d updates to send", f, n))
				}
			}
			if len(behind) > 0 {
				sort.Strings(behind)
				conn += " (" + strings.Join(behind, ", ") + ")"
			}
		}
		addr := p.Address
		if addr == "" {
			addr = "(accepts only)"
		}
		fmt.Fprintf(w, "peer %s  %s\n  %s\n", p.ID, addr, conn)
		if !p.Connected && p.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", p.LastError)
		}
	}
}

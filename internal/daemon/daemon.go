// Package daemon assembles a running tandem node from a home directory:
// identity, config, index, folders, peer connections, the local control
// socket used by `tandem status`, and the optional Prometheus listener.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"tandem/internal/config"
	"tandem/internal/control"
	"tandem/internal/folder"
	"tandem/internal/identity"
	"tandem/internal/index"
	"tandem/internal/node"
)

// Paths inside a home directory.
const (
	ConfigFile = "tandem.toml"
	IndexFile  = "index.db"
)

// Daemon is one running node.
type Daemon struct {
	home    string
	id      *identity.Identity
	cfg     *config.Config
	db      *index.DB
	folders []*folder.Folder
	node    *node.Node
	log     *slog.Logger
	started time.Time
}

// Load reads identity and config from home and opens the index.
func Load(home string, log *slog.Logger) (*Daemon, error) {
	id, err := identity.Load(home)
	if err != nil {
		return nil, err
	}
	config.ValidateID = func(s string) error { _, err := identity.ParseID(s); return err }
	cfg, err := config.Load(filepath.Join(home, ConfigFile))
	if err != nil {
		return nil, err
	}
	var peers []node.Peer
	for _, p := range cfg.Peers {
		pid, err := identity.ParseID(p.ID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(home, ConfigFile), err)
		}
		if pid == id.ID {
			return nil, fmt.Errorf("%s: peer %s is this node's own ID", filepath.Join(home, ConfigFile), p.ID)
		}
		peers = append(peers, node.Peer{ID: pid, Address: p.Address})
	}
	db, err := index.Open(filepath.Join(home, IndexFile))
	if err != nil {
		return nil, err
	}
	d := &Daemon{home: home, id: id, cfg: cfg, db: db, log: log, started: time.Now()}
	d.node = node.New(node.Options{Identity: id, Listen: cfg.Listen, Peers: peers, Log: log})
	for _, fc := range cfg.Folders {
		fi, err := db.Folder(fc.ID)
		if err != nil {
			db.Close()
			return nil, err
		}
		d.folders = append(d.folders, folder.New(folder.Options{
			Config: fc, Me: id.ID, Index: fi, Peers: d.node, Log: log, Changed: d.node.Changed,
		}))
	}
	d.node.SetFolders(d.folders)
	return d, nil
}

// Run runs the node until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.db.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctl, err := control.Listen(d.home)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) { control.WriteJSON(w, d.Status()) })
	mux.Handle("/metrics", metricsHandler(d))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: idleConnTimeout}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ctl) })
	var msrv *http.Server
	if d.cfg.Metrics != "" {
		ml, err := net.Listen("tcp", d.cfg.Metrics)
		if err != nil {
			srv.Close()
			return fmt.Errorf("metrics listener on %s: %w", d.cfg.Metrics, err)
		}
		mm := http.NewServeMux()
		mm.Handle("/metrics", metricsHandler(d))
		msrv = &http.Server{Handler: mm, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: idleConnTimeout}
		wg.Go(func() { _ = msrv.Serve(ml) })
	}
	d.log.Info("tandem starting", "id", d.id.ID.String(), "folders", len(d.folders), "peers", len(d.cfg.Peers))
	nodeErr := make(chan error, 1)
	wg.Go(func() { nodeErr <- d.node.Run(ctx) })
	for _, f := range d.folders {
		wg.Go(func() {
			if err := f.Run(ctx); err != nil {
				d.log.Error("folder stopped", "folder", f.ID(), "err", err)
			}
		})
	}
	wg.Go(func() { d.releaseLoop(ctx) })
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-nodeErr:
		cancel()
	}
	srv.Close()
	if msrv != nil {
		msrv.Close()
	}
	wg.Wait()
	os.Remove(control.SocketPath(d.home))
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	d.log.Info("tandem stopped")
	return nil
}

// idleConnTimeout closes keep-alive connections to the control socket and
// the metrics listener that sit idle, so clients that never close them
// cannot pile up goroutines and buffers in the daemon.
const idleConnTimeout = 30 * time.Second

// releaseEvery is how often the index pages a scan or sync touched are
// handed back to the page cache (see index.DB.ReleaseMapped), so that RSS
// stays near the process's own memory however large the index.
const releaseEvery = 100 * time.Millisecond

func (d *Daemon) releaseLoop(ctx context.Context) {
	t := time.NewTicker(releaseEvery)
	defer t.Stop()
	var txs uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.db.ReleaseIfUsed(&txs); err != nil {
			d.log.Warn("releasing index pages", "err", err)
		}
	}
}

// Status is the whole node's status.
type Status struct {
	ID      string            `json:"id"`
	Listen  string            `json:"listen"`
	Started time.Time         `json:"started"`
	Folders []folder.Status   `json:"folders"`
	Peers   []node.PeerStatus `json:"peers"`
}

// Status returns a snapshot.
func (d *Daemon) Status() Status {
	s := Status{ID: d.id.ID.String(), Listen: d.cfg.Listen, Started: d.started, Peers: d.node.Status()}
	for _, f := range d.folders {
		s.Folders = append(s.Folders, f.Status())
	}
	return s
}

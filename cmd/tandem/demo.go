package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tandem/internal/daemon"
	"tandem/internal/identity"
)

func demoCmd() *cobra.Command {
	var keep bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Play the server-outage story on two local nodes and show both trees",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runDemo(c.Context(), c.OutOrStdout(), keep)
		},
	}
	c.Flags().BoolVar(&keep, "keep", false, "keep the temporary directories afterwards")
	return c
}

type demoNode struct {
	name, home, dir string
	cancel          context.CancelFunc
	done            chan error
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (n *demoNode) start(ctx context.Context) error {
	d, err := daemon.Load(n.home, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: demoLogLevel()})))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- d.Run(rctx) }()
	return nil
}

func (n *demoNode) stop() {
	if n.cancel != nil {
		n.cancel()
		<-n.done
		n.cancel = nil
	}
}

func runDemo(ctx context.Context, w io.Writer, keep bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	tmp, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(tmp)
	}
	nodes := []*demoNode{{name: "A"}, {name: "B"}}
	ids := make([]identity.ID, 2)
	addrs := make([]string, 2)
	for i, n := range nodes {
		n.home = filepath.Join(tmp, "home-"+n.name)
		n.dir = filepath.Join(tmp, "www-"+n.name)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		id, err := identity.Generate(n.home)
		if err != nil {
			return err
		}
		ids[i] = id.ID
		if addrs[i], err = freePort(); err != nil {
			return err
		}
	}
	for i, n := range nodes {
		o := 1 - i
		cfg := fmt.Sprintf("listen = %q\n\n[[peer]]\nid = %q\naddress = %q\n\n[[folder]]\nid = \"www\"\npath = %q\n", addrs[i], ids[o].String(), addrs[o], n.dir)
		if err := os.WriteFile(filepath.Join(n.home, daemon.ConfigFile), []byte(cfg), 0o600); err != nil {
			return err
		}
	}
	a, b := nodes[0], nodes[1]
	defer a.stop()
	defer b.stop()
	say := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	write := func(n *demoNode, rel, content string) error {
		return os.WriteFile(filepath.Join(n.dir, rel), []byte(content), 0o644)
	}
	settle := func() error {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			ta, _ := snapshot(a.dir)
			tb, _ := snapshot(b.dir)
			if ta == tb {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("the two trees did not converge within 30s")
	}
	show := func() {
		for _, n := range nodes {
			t, _ := snapshot(n.dir)
			say("  server %s:%s", n.name, indent(t))
		}
	}

	say("tandem demo: two nodes, A and B, on loopback, in %s", tmp)
	say("Each keeps a version history per file, so a returning node can tell")
	say("\"created on B while I was away\" from \"deleted here\".\n")
	for _, n := range nodes {
		if err := n.start(ctx); err != nil {
			return err
		}
	}
	say("1. Both up. A publishes a site.")
	for _, f := range [][2]string{{"index.html", "<h1>v1</h1>\n"}, {"about.html", "about v1\n"}, {"old-banner.png", "banner\n"}} {
		if err := write(a, f[0], f[1]); err != nil {
			return err
		}
	}
	if err := settle(); err != nil {
		return err
	}
	show()

	say("\n2. A goes down. B takes every write: two uploads, an edit of index.html,")
	say("   and it deletes old-banner.png.")
	a.stop()
	if err := write(b, "upload-1.jpg", "photo 1\n"); err != nil {
		return err
	}
	if err := write(b, "upload-2.jpg", "photo 2\n"); err != nil {
		return err
	}
	if err := write(b, "index.html", "<h1>v2, edited on B</h1>\n"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(b.dir, "old-banner.png")); err != nil {
		return err
	}
	show()

	say("\n3. A comes back. lsyncd's start-up rsync --delete would now delete B's uploads,")
	say("   or with delete=\"running\" revert index.html and bring old-banner.png back.")
	say("   tandem compares versions instead:")
	if err := a.start(ctx); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	show()

	say("\n4. tandem on A is stopped; someone edits about.html on A's disk; tandem restarts.")
	a.stop()
	if err := write(a, "about.html", "about v2, edited on A while tandem was stopped\n"); err != nil {
		return err
	}
	if err := a.start(ctx); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	show()
	say("\nBoth trees are identical: no write lost, nothing resurrected.")
	return nil
}

func indent(s string) string {
	if s == "" {
		return " (empty)"
	}
	return "\n    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// snapshot renders a tree (without .tandem) as sorted "path: content" lines.
func snapshot(dir string) (string, error) {
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if rel == ".tandem" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%-16s %q", rel, strings.TrimSpace(string(b))))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n"), err
}

func demoLogLevel() slog.Level {
	if os.Getenv("TANDEM_DEMO_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelError
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/identity"
)

func execute(args ...string) (stdout string, err error) {
	var out bytes.Buffer
	c := rootCmd()
	c.SetArgs(args)
	c.SetOut(&out)
	c.SetErr(&out)
	err = c.Execute()
	return out.String(), err
}

func TestInitAndID(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	out, err := execute("init", "--home", home)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("init printed %d lines, want only the node ID: %q", len(lines), out)
	}
	if _, err := identity.ParseID(lines[0]); err != nil {
		t.Fatalf("init printed %q: %v", lines[0], err)
	}
	again, err := execute("id", "--home", home)
	if err != nil || strings.TrimSpace(again) != lines[0] {
		t.Fatalf("id printed %q (%v), init printed %q", again, err, lines[0])
	}
	cfg, err := os.ReadFile(filepath.Join(home, "tandem.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "listen") || !strings.Contains(string(cfg), "#") {
		t.Fatalf("tandem.toml is not a commented config:\n%s", cfg)
	}
	if _, err := execute("init", "--home", home); err == nil {
		t.Fatal("a second init overwrote the identity")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := execute("init", "--home", home); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ cfg, want string }{
		"unknown key": {"listen = \"127.0.0.1:7420\"\n[[folder]]\nid = \"www\"\npth = \"/srv\"\n", "tandem.toml:4"},
		"bad value":   {"listen = \"127.0.0.1:7420\"\n[[folder]]\nid = \"www\"\npath = \"relative/dir\"\n", "folder[0].path"},
		"bad peer id": {"[[peer]]\nid = \"nope\"\naddress = \"127.0.0.1:1\"\n", "peer[0].id"},
		"missing id":  {"[[folder]]\npath = \"/srv/www\"\n", `tandem.toml:1: folder[0]: missing required key "id"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(home, "tandem.toml"), []byte(tc.cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := execute("run", "--home", home)
			if err == nil {
				t.Fatal("run accepted a bad config")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line mentioning %q", msg, tc.want)
			}
		})
	}
}

func TestStatusWhenNotRunning(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if _, err := execute("init", "--home", home); err != nil {
		t.Fatal(err)
	}
	_, err := execute("status", "--home", home)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("status of a stopped node: %v", err)
	}
	out, err := execute("status", "--home", home, "--json")
	if err == nil || !strings.Contains(out, `"running":false`) {
		t.Fatalf("status --json of a stopped node: %q, %v", out, err)
	}
}

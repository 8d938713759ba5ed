package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func folder(id, path string) Folder {
	return Folder{ID: id, Path: path, Rescan: time.Hour, Conflict: "keep-both", TrashDays: 7}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Config
	}{
		{"empty file", "", Config{Listen: "0.0.0.0:7420"}},
		{"only comments", "# nothing yet\n\n", Config{Listen: "0.0.0.0:7420"}},
		{"defaults", `
[[peer]]
id = "AAAA"

[[folder]]
id = "www"
path = "/srv/www/"
`, Config{
			Listen:  "0.0.0.0:7420",
			Peers:   []Peer{{ID: "AAAA"}},
			Folders: []Folder{folder("www", "/srv/www")},
		}},
		{"everything set", `
listen = ":7000"     # all interfaces
metrics = "127.0.0.1:7421"

[[peer]]
id = "AAAA"
address = "10.0.0.2:7420"

[[peer]]
id = "BBBB"
address = "[fe80::1]:7420"

[[folder]]
id = "www"
path = "/srv/www"
rescan = "90s"
conflict = "newest-wins"
trash_days = 0

[[folder]]
id = "data.2_x-y"
path = "/srv/www2//a/../b"
trash_days = 30
`, Config{
			Listen:  ":7000",
			Metrics: "127.0.0.1:7421",
			Peers:   []Peer{{ID: "AAAA", Address: "10.0.0.2:7420"}, {ID: "BBBB", Address: "[fe80::1]:7420"}},
			Folders: []Folder{
				{ID: "www", Path: "/srv/www", Rescan: 90 * time.Second, Conflict: "newest-wins", TrashDays: 0},
				{ID: "data.2_x-y", Path: "/srv/www2/b", Rescan: time.Hour, Conflict: "keep-both", TrashDays: 30},
			},
		}},
		{"empty metrics and address mean off", `
metrics = ""
[[peer]]
id = "AAAA"
address = ""
`, Config{Listen: "0.0.0.0:7420", Peers: []Peer{{ID: "AAAA"}}}},
		{"inline array of tables", `folder = [{id = "a", path = "/a"}, {id = "b", path = "/b"}]`,
			Config{Listen: "0.0.0.0:7420", Folders: []Folder{folder("a", "/a"), folder("b", "/b")}}},
		{"siblings are not nested", `
[[folder]]
id = "a"
path = "/srv/www"
[[folder]]
id = "b"
path = "/srv/www2"
`, Config{Listen: "0.0.0.0:7420", Folders: []Folder{folder("a", "/srv/www"), folder("b", "/srv/www2")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in), "tandem.toml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		key  string // key named in the message
		msg  string // another fragment of the message
	}{
		// Syntax and shape.
		{"syntax error", "listen = \"0.0.0.0:7420\"\n[[peer]\n", 2, "syntax error", "]]"},
		{"unterminated string", "\n\nlisten = \"0.0.0.0:7420\n", 3, "syntax error", ""},
		{"duplicate key", "listen = \":1\"\nlisten = \":2\"\n", 2, "listen", "already defined"},
		{"unknown top-level key", "listen = \":1\"\nlistn = \":2\"\n", 2, "listn", "unknown key"},
		{"unknown peer key", "[[peer]]\nid = \"A\"\n\n[[peer]]\nid = \"B\"\nadress = \"x:1\"\n", 6, "peer[1].adress", "unknown key"},
		{"unknown folder key", "[[folder]]\nid = \"a\"\npath = \"/a\"\ntrash = 3\n", 4, "folder[0].trash", "trash_days"},
		{"unknown table", "[[folder]]\nid = \"a\"\npath = \"/a\"\n[folder.options]\nx = 1\n", 4, "folder[0].options", "unknown key"},
		{"unknown key in inline table", "peer = [{id = \"A\"},\n  {id = \"B\", adress = \"x:1\"}]\n", 2, "peer[1].adress", "unknown key"},
		{"single table peer", "\n[peer]\nid = \"A\"\n", 2, "peer", "[[peer]]"},
		{"single table folder", "[folder]\nid = \"a\"\n", 1, "folder", "[[folder]]"},
		{"inline table folder", "folder = {id = \"a\", path = \"/a\"}\n", 1, "folder", "[[folder]]"},

		// Types.
		{"listen not a string", "listen = 7420\n", 1, "listen", "got a TOML integer"},
		{"trash_days string", "[[folder]]\nid = \"a\"\npath = \"/a\"\n[[folder]]\nid = \"b\"\npath = \"/b\"\ntrash_days = \"x\"\n", 7, "folder[1].trash_days", "whole number"},
		{"trash_days float", "[[folder]]\nid = \"a\"\npath = \"/a\"\ntrash_days = 1.5\n", 4, "folder[0].trash_days", "float"},
		{"trash_days too big", "[[folder]]\nid = \"a\"\npath = \"/a\"\ntrash_days = 99999999999999999999\n", 4, "folder[0].trash_days", "too large"},
		{"rescan integer", "[[folder]]\nid = \"a\"\npath = \"/a\"\nrescan = 60\n", 4, "folder[0].rescan", `"1h"`},
		{"peer not a table", "peer = 3\n", 1, "peer", "[[peer]]"},
		{"id not a string", "[[peer]]\nid = 12\n", 2, "peer[0].id", "string"},

		// listen, metrics, address.
		{"listen no port", "listen = \"0.0.0.0\"\n", 1, "listen", "host:port"},
		{"listen empty", "listen = \"\"\n", 1, "listen", "host:port"},
		{"listen port 0", "listen = \":0\"\n", 1, "listen", "1 to 65535"},
		{"listen port too big", "listen = \":65536\"\n", 1, "listen", "1 to 65535"},
		{"listen port name", "listen = \"0.0.0.0:http\"\n", 1, "listen", "1 to 65535"},
		{"listen port signed", "listen = \"0.0.0.0:+80\"\n", 1, "listen", "1 to 65535"},
		{"metrics bad", "# comment\nmetrics = \"localhost\"\n", 2, "metrics", "host:port"},
		{"address no host", "[[peer]]\nid = \"A\"\naddress = \":7420\"\n", 3, "peer[0].address", "host name"},
		{"address bad port", "[[peer]]\nid = \"A\"\naddress = \"10.0.0.2:99999\"\n", 3, "peer[0].address", "1 to 65535"},
		{"address space", "[[peer]]\nid = \"A\"\naddress = \"a b:1\"\n", 3, "peer[0].address", "spaces"},

		// Peers.
		{"peer id missing", "[[peer]]\nid = \"A\"\n\n[[peer]]\naddress = \"x:1\"\n", 4, "peer[1]", `"id"`},
		{"peer id empty", "[[peer]]\nid = \"\"\n", 2, "peer[0].id", "empty"},
		{"peer id duplicate", "[[peer]]\nid = \"A\"\n[[peer]]\nid = \"A\"\n", 4, "peer[1].id", "duplicate"},
		{"peer id rejected", "[[peer]]\n  id = \"bad\"  # typo\n", 2, "peer[0].id", "not base32"},

		// Folders.
		{"folder id missing", "[[folder]]\npath = \"/a\"\n", 1, "folder[0]", `"id"`},
		{"folder id empty", "[[folder]]\nid = \"\"\npath = \"/a\"\n", 2, "folder[0].id", "64"},
		{"folder id bad char", "[[folder]]\nid = \"a/b\"\npath = \"/a\"\n", 2, "folder[0].id", `"a/b"`},
		{"folder id dotdot", "[[folder]]\nid = \"..\"\npath = \"/a\"\n", 2, "folder[0].id", `".."`},
		{"folder id too long", "[[folder]]\nid = \"" + strings.Repeat("x", 65) + "\"\npath = \"/a\"\n", 2, "folder[0].id", "64"},
		{"folder id duplicate", "[[folder]]\nid = \"a\"\npath = \"/a\"\n[[folder]]\nid = \"a\"\npath = \"/b\"\n", 5, "folder[1].id", "duplicate"},
		{"folder path missing", "\n\n[[folder]]\nid = \"a\"\n", 3, "folder[0]", `"path"`},
		{"folder path empty", "[[folder]]\nid = \"a\"\npath = \"\"\n", 3, "folder[0].path", "empty"},
		{"folder path relative", "[[folder]]\nid = \"www\"\n\n\n\n\npath = \"srv/www\"\n", 7, "folder[0].path", `must be an absolute path, got "srv/www"`},
		{"folder path duplicate", "[[folder]]\nid = \"a\"\npath = \"/srv/a\"\n[[folder]]\nid = \"b\"\npath = \"/srv/a/\"\n", 6, "folder[1].path", "same as"},
		{"folder path inside", "[[folder]]\nid = \"a\"\npath = \"/srv\"\n[[folder]]\nid = \"b\"\npath = \"/srv/a\"\n", 6, "folder[1].path", "inside"},
		{"folder path contains", "[[folder]]\nid = \"a\"\npath = \"/srv/a\"\n[[folder]]\nid = \"b\"\npath = \"/srv\"\n", 6, "folder[1].path", "contains"},
		{"folder path root contains all", "[[folder]]\nid = \"a\"\npath = \"/srv/a\"\n[[folder]]\nid = \"b\"\npath = \"/\"\n", 6, "folder[1].path", "contains"},
		{"rescan unparsable", "[[folder]]\nid = \"a\"\npath = \"/a\"\nrescan = \"1d\"\n", 4, "folder[0].rescan", `"1d"`},
		{"rescan empty", "[[folder]]\nid = \"a\"\npath = \"/a\"\nrescan = \"\"\n", 4, "folder[0].rescan", "duration"},
		{"rescan too short", "[[folder]]\nid = \"a\"\npath = \"/a\"\nrescan = \"500ms\"\n", 4, "folder[0].rescan", "at least 1s"},
		{"rescan negative", "[[folder]]\nid = \"a\"\npath = \"/a\"\nrescan = \"-1h\"\n", 4, "folder[0].rescan", "at least 1s"},
		{"conflict bad", "[[folder]]\nid = \"a\"\npath = \"/a\"\nconflict = \"newest\"\n", 4, "folder[0].conflict", "keep-both"},
		{"trash_days negative", "[[folder]]\nid = \"a\"\npath = \"/a\"\ntrash_days = -1\n", 4, "folder[0].trash_days", "-1"},
		{"CRLF line endings", "listen = \":1\"\r\n[[folder]]\r\nid = \"a\"\r\npath = \"a\"\r\n", 4, "folder[0].path", "absolute"},
		{"inline folder path", "folder = [\n  {id = \"a\", path = \"/a\"},\n  {id = \"b\", path = \"b\"},\n]\n", 3, "folder[1].path", "absolute"},
		{"inline folder missing path", "folder = [\n  {id = \"a\", path = \"/a\"},\n  {id = \"b\"},\n]\n", 3, "folder[1]", `"path"`},
		{"quoted key", "[[folder]]\nid = \"a\"\npath = \"/a\"\n\"conflict\" = \"x\"\n", 4, "folder[0].conflict", "keep-both"},
	}
	old := ValidateID
	t.Cleanup(func() { ValidateID = old })
	ValidateID = func(s string) error {
		if s == "bad" {
			return errors.New("not base32")
		}
		return nil
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.in), "tandem.toml")
			if err == nil {
				t.Fatalf("no error; got %+v", cfg)
			}
			msg := err.Error()
			t.Log(msg)
			prefix := fmt.Sprintf("tandem.toml:%d: ", tt.line)
			if !strings.HasPrefix(msg, prefix) {
				t.Errorf("error %q does not start with %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.key) {
				t.Errorf("error %q does not name key %q", msg, tt.key)
			}
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q does not contain %q", msg, tt.msg)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

func TestValidateIDNil(t *testing.T) {
	old := ValidateID
	t.Cleanup(func() { ValidateID = old })
	ValidateID = nil
	if _, err := Parse([]byte("[[peer]]\nid = \"anything goes\"\n"), "x.toml"); err != nil {
		t.Fatal(err)
	}
}

func TestValidateIDMultilineError(t *testing.T) {
	old := ValidateID
	t.Cleanup(func() { ValidateID = old })
	ValidateID = func(string) error { return errors.New("bad\nid") }
	_, err := Parse([]byte("[[peer]]\nid = \"A\"\n"), "x.toml")
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "x.toml:2: peer[0].id: ") {
		t.Fatalf("got %q", err)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tandem.toml")
	if err := os.WriteFile(path, []byte("listen = \":1\"\n\n[[folder]]\nid = \"a\"\npath = \"a\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":5: folder[0].path: ") {
		t.Fatalf("got %v", err)
	}
	if _, err := Load(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v", err)
	}
}

func TestTemplate(t *testing.T) {
	cfg, err := Parse([]byte(Template()), "tandem.toml")
	if err != nil {
		t.Fatalf("template does not parse: %v", err)
	}
	if want := (Config{Listen: "0.0.0.0:7420"}); !reflect.DeepEqual(*cfg, want) {
		t.Errorf("template parses to %+v, want %+v", *cfg, want)
	}
	// Uncommenting the example blocks must give a valid config with the
	// documented defaults.
	var b strings.Builder
	for _, l := range strings.SplitAfter(Template(), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, "=") || strings.HasPrefix(l, "#[[") {
			l = l[1:]
		}
		b.WriteString(l)
	}
	cfg, err = Parse([]byte(b.String()), "tandem.toml")
	if err != nil {
		t.Fatalf("uncommented template does not parse: %v\n%s", err, b.String())
	}
	want := Config{
		Listen:  "0.0.0.0:7420",
		Metrics: "127.0.0.1:7421",
		Peers:   []Peer{{ID: "PASTE-THE-OTHER-NODE-ID-HERE", Address: "10.0.0.2:7420"}},
		Folders: []Folder{folder("www", "/srv/www")},
	}
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("uncommented template parses to %+v, want %+v", *cfg, want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Template()))
	f.Add([]byte("[[folder]]\nid = \"a\"\npath = \"/a\"\n[folder.x]\n[[folder.y]]\n"))
	f.Add([]byte("peer = [{id = \"A\", address = \"x:1\"}, [1, {a = 2}]]\n"))
	f.Add([]byte("[[peer]]\nid = \"A\"\n[peer]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "f.toml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml:") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		if cfg.Listen == "" {
			t.Fatal("no listen address")
		}
	})
}

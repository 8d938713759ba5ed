// Package config parses and validates tandem.toml, the configuration file
// in a tandem home directory: where the node listens, which peers it syncs
// with and which folders it keeps identical on every node.
//
// Every error is a single line naming the file, the line and the key, like
//
//	tandem.toml:7: folder[0].path: must be an absolute path, got "srv/www"
//
// so that it can be fixed without reading any code.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pelletier/go-toml/v2"
)

// Defaults applied to keys that are absent from the file.
const (
	defaultListen    = "0.0.0.0:7420"
	defaultRescan    = time.Hour
	defaultConflict  = conflictKeepBoth
	defaultTrashDays = 7
)

// Values of Folder.Conflict.
const (
	conflictKeepBoth   = "keep-both"
	conflictNewestWins = "newest-wins"
)

// Config is a parsed and validated tandem.toml.
type Config struct {
	Listen  string // "host:port" where this node accepts peers
	Metrics string // "host:port" of the Prometheus /metrics listener; "" = off
	Peers   []Peer
	Folders []Folder
}

// Peer is another node to sync with.
type Peer struct {
	ID      string // node ID as written, checked by ValidateID
	Address string // "host:port" to dial; "" = only accept its connections
}

// Folder is a directory kept identical on every node.
type Folder struct {
	ID        string        // [A-Za-z0-9._-]{1,64}, unique, same on every node
	Path      string        // absolute and cleaned; never inside another folder
	Rescan    time.Duration // full rescan interval, at least 1s
	Conflict  string        // "keep-both" (default) or "newest-wins"
	TrashDays int           // days to keep replaced or deleted files; 0 = off
}

// ValidateID checks a peer's node ID. It is set by the caller (package
// identity); nil accepts any non-empty ID.
var ValidateID func(string) error

// Load reads the file at path and parses it with Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// The shape of the file as decoded by go-toml. Pointers tell an absent key
// from an empty one.
type (
	rawConfig struct {
		Listen  *string     `toml:"listen"`
		Metrics *string     `toml:"metrics"`
		Peer    []rawPeer   `toml:"peer"`
		Folder  []rawFolder `toml:"folder"`
	}
	rawPeer struct {
		ID      *string `toml:"id"`
		Address *string `toml:"address"`
	}
	rawFolder struct {
		ID        *string `toml:"id"`
		Path      *string `toml:"path"`
		Rescan    *string `toml:"rescan"`
		Conflict  *string `toml:"conflict"`
		TrashDays *int64  `toml:"trash_days"`
	}
)

// validKeys lists, per table, the keys a user may write (for error hints).
var validKeys = map[string]string{
	"":       "listen, metrics, [[peer]], [[folder]]",
	"peer":   "id, address",
	"folder": "id, path, rescan, conflict, trash_days",
}

var folderIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// parser carries the file name and key positions while building errors.
type parser struct {
	file  string
	keys  []keyLine      // in document order
	lines map[string]int // path -> line, built from keys on first use
}

// errorf builds the one-line error "file:line: key: message".
func (p *parser) errorf(key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	msg = strings.Join(strings.Fields(msg), " ") // keep it on one line
	return fmt.Errorf("%s:%d: %s: %s", p.file, p.line(key), key, msg)
}

// Parse parses and validates the contents of a tandem.toml. filename is
// only used in error messages. An empty document is valid.
func Parse(data []byte, filename string) (*Config, error) {
	keys, err := scanKeys(data)
	p := &parser{file: filename, keys: keys}
	if err != nil {
		return nil, p.at(err.line, err.key, err.msg)
	}
	var raw rawConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, p.decodeError(err)
	}
	return p.validate(&raw)
}

// decodeError turns a go-toml error into a one-line error with position.
func (p *parser) decodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := &strict.Errors[0]
		row, _ := e.Position()
		key := p.find(e.Key(), row)
		msg := "unknown key"
		if hint, ok := validKeys[stripIndexes(parent(key))]; ok {
			msg += " (valid keys here: " + hint + ")"
		}
		return p.at(row, key, msg)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if len(de.Key()) == 0 {
			return p.at(row, "syntax error", msg)
		}
		key := p.find(de.Key(), row)
		if got, ok := strings.CutPrefix(msg, "cannot decode TOML "); ok {
			got, _, _ = strings.Cut(got, " ")
			msg = fmt.Sprintf("must be %s, got a TOML %s", wantType(key), got)
		}
		return p.at(row, key, msg)
	}
	return fmt.Errorf("%s: %s", p.file, strings.Join(strings.Fields(err.Error()), " "))
}

// at is errorf with an explicit line.
func (p *parser) at(line int, key, msg string) error {
	if line < 1 {
		line = 1
	}
	return fmt.Errorf("%s:%d: %s: %s", p.file, line, key, strings.Join(strings.Fields(msg), " "))
}

func wantType(key string) string {
	switch stripIndexes(key) {
	case "peer", "folder":
		return "a list of [[" + key + "]] tables"
	case "folder.trash_days":
		return "a whole number of days"
	case "folder.rescan":
		return `a duration string like "1h"`
	}
	return "a string"
}

func (p *parser) validate(raw *rawConfig) (*Config, error) {
	cfg := &Config{Listen: defaultListen}
	if raw.Listen != nil {
		if err := checkHostPort(*raw.Listen, false); err != nil {
			return nil, p.errorf("listen", "%v", err)
		}
		cfg.Listen = *raw.Listen
	}
	if raw.Metrics != nil && *raw.Metrics != "" {
		if err := checkHostPort(*raw.Metrics, false); err != nil {
			return nil, p.errorf("metrics", "%v", err)
		}
		cfg.Metrics = *raw.Metrics
	}

	peerAt := map[string]int{}
	for i, rp := range raw.Peer {
		key := fmt.Sprintf("peer[%d]", i)
		if rp.ID == nil {
			return nil, p.errorf(key, `missing required key "id" (the other node's ID, from `+"`tandem id --home DIR`"+` there)`)
		}
		id := *rp.ID
		if id == "" {
			return nil, p.errorf(key+".id", "must not be empty")
		}
		if ValidateID != nil {
			if err := ValidateID(id); err != nil {
				return nil, p.errorf(key+".id", "invalid node ID %q: %v", id, err)
			}
		}
		if j, dup := peerAt[id]; dup {
			return nil, p.errorf(key+".id", "duplicate peer ID %q (also peer[%d] on line %d)", id, j, p.line(fmt.Sprintf("peer[%d].id", j)))
		}
		peerAt[id] = i
		peer := Peer{ID: id}
		if rp.Address != nil && *rp.Address != "" {
			if err := checkHostPort(*rp.Address, true); err != nil {
				return nil, p.errorf(key+".address", "%v", err)
			}
			peer.Address = *rp.Address
		}
		cfg.Peers = append(cfg.Peers, peer)
	}

	idAt := map[string]int{}
	for i, rf := range raw.Folder {
		key := fmt.Sprintf("folder[%d]", i)
		f := Folder{Rescan: defaultRescan, Conflict: defaultConflict, TrashDays: defaultTrashDays}
		switch {
		case rf.ID == nil:
			return nil, p.errorf(key, `missing required key "id" (a name for the folder, the same on every node)`)
		case !folderIDRe.MatchString(*rf.ID) || *rf.ID == "." || *rf.ID == "..":
			return nil, p.errorf(key+".id", "must be 1 to 64 letters, digits, '.', '_' or '-' (and not . or ..), got %q", *rf.ID)
		}
		f.ID = *rf.ID
		if j, dup := idAt[f.ID]; dup {
			return nil, p.errorf(key+".id", "duplicate folder id %q (also folder[%d] on line %d)", f.ID, j, p.line(fmt.Sprintf("folder[%d].id", j)))
		}
		idAt[f.ID] = i

		switch {
		case rf.Path == nil:
			return nil, p.errorf(key, `missing required key "path" (the folder's absolute path on this node)`)
		case *rf.Path == "":
			return nil, p.errorf(key+".path", "must not be empty")
		case !filepath.IsAbs(*rf.Path):
			return nil, p.errorf(key+".path", "must be an absolute path, got %q", *rf.Path)
		}
		f.Path = filepath.Clean(*rf.Path)
		for j, other := range cfg.Folders {
			var what string
			switch {
			case f.Path == other.Path:
				what = "is the same as"
			case within(f.Path, other.Path):
				what = "is inside"
			case within(other.Path, f.Path):
				what = "contains"
			default:
				continue
			}
			return nil, p.errorf(key+".path", "%q %s the path %q of folder[%d] (%q, line %d); folders must not overlap",
				f.Path, what, other.Path, j, other.ID, p.line(fmt.Sprintf("folder[%d].path", j)))
		}

		if rf.Rescan != nil {
			d, err := time.ParseDuration(*rf.Rescan)
			switch {
			case err != nil:
				return nil, p.errorf(key+".rescan", `must be a duration like "1h", "30m" or "90s", got %q`, *rf.Rescan)
			case d < time.Second:
				return nil, p.errorf(key+".rescan", "must be at least 1s, got %q", *rf.Rescan)
			}
			f.Rescan = d
		}
		if rf.Conflict != nil {
			if c := *rf.Conflict; c != conflictKeepBoth && c != conflictNewestWins {
				return nil, p.errorf(key+".conflict", "must be %q or %q, got %q", conflictKeepBoth, conflictNewestWins, c)
			}
			f.Conflict = *rf.Conflict
		}
		if rf.TrashDays != nil {
			n := *rf.TrashDays
			if n < 0 || int64(int(n)) != n {
				return nil, p.errorf(key+".trash_days", "must be 0 (off) or a positive number of days, got %d", n)
			}
			f.TrashDays = int(n)
		}
		cfg.Folders = append(cfg.Folders, f)
	}
	return cfg, nil
}

// checkHostPort checks "host:port" with a numeric port 1..65535. The host
// may be empty (all interfaces) unless needHost is set.
func checkHostPort(s string, needHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf(`must be "host:port" (like "10.0.0.2:7420" or "[::1]:7420"), got %q`, s)
	}
	if needHost && host == "" {
		return fmt.Errorf(`needs a host name or IP address before the port, got %q`, s)
	}
	if strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("host must not contain spaces or control characters, got %q", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port must be a number from 1 to 65535, got %q", s)
	}
	return nil
}

// within reports whether path lies strictly below dir (both cleaned).
func within(path, dir string) bool {
	return len(path) > len(dir) && strings.HasPrefix(path, dir) &&
		(path[len(dir)] == filepath.Separator || strings.HasSuffix(dir, string(filepath.Separator)))
}

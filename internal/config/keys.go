package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// go-toml does not report positions of decoded values, so scanKeys walks
// the document with go-toml's own parser and records the line of every key
// and table, named like the errors name them: "listen", "peer[1]" (the
// [[peer]] header), "folder[0].path".

type keyLine struct {
	path string
	line int
}

// misuse is a structural mistake found while scanning, like [peer] for
// [[peer]].
type misuse struct {
	line     int
	key, msg string
}

// scanKeys returns the key positions in document order. It stops quietly at
// a syntax error: the decoder reports that one.
func scanKeys(data []byte) ([]keyLine, *misuse) {
	s := &scanner{arrays: map[string]string{}, counts: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			s.newlines = append(s.newlines, i)
		}
	}
	s.p.Reset(data)
	table := ""
	for s.p.NextExpression() {
		n := s.p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			parts, line := s.key(n)
			if len(parts) == 0 {
				continue
			}
			path := s.resolve(parts[:len(parts)-1])
			path = join(path, parts[len(parts)-1])
			if n.Kind == unstable.ArrayTable {
				elem := fmt.Sprintf("%s[%d]", path, s.counts[path])
				s.counts[path]++
				s.arrays[path] = elem
				path = elem
			} else if path == "peer" || path == "folder" {
				return s.keys, &misuse{line, path, fmt.Sprintf("write [[%s]] (double brackets) to start each %s, not [%s]", path, path, path)}
			}
			s.add(path, line)
			table = path
		case unstable.KeyValue:
			if m := s.keyValue(table, n); m != nil {
				return s.keys, m
			}
		}
	}
	return s.keys, nil
}

type scanner struct {
	p      unstable.Parser
	keys   []keyLine
	arrays map[string]string // array of tables -> path of its last element
	counts map[string]int    // array of tables -> number of elements
	// newlines holds the offset of every '\n', to turn offsets into lines.
	newlines []int
}

func (s *scanner) add(path string, line int) { s.keys = append(s.keys, keyLine{path, line}) }

// key returns the parts of a table header's or key-value's key and the line
// of its first part.
func (s *scanner) key(n *unstable.Node) ([]string, int) {
	var parts []string
	line := 0
	it := n.Key()
	for it.Next() {
		k := it.Node()
		if line == 0 {
			line = s.line(k)
		}
		parts = append(parts, string(k.Data))
	}
	return parts, line
}

// line returns the 1-based line where n starts.
func (s *scanner) line(n *unstable.Node) int {
	i, _ := slices.BinarySearch(s.newlines, int(n.Raw.Offset))
	return i + 1
}

// resolve maps header key parts to a path, entering the last element of
// every array of tables on the way: [folder.x] after [[folder]] is
// folder[N].x.
func (s *scanner) resolve(parts []string) string {
	path := ""
	for _, part := range parts {
		path = join(path, part)
		if elem, ok := s.arrays[path]; ok {
			path = elem
		}
	}
	return path
}

func (s *scanner) keyValue(prefix string, n *unstable.Node) *misuse {
	parts, line := s.key(n)
	path := join(prefix, strings.Join(parts, "."))
	s.add(path, line)
	v := n.Value()
	if prefix == "" && (path == "peer" || path == "folder") && v.Kind == unstable.InlineTable {
		return &misuse{line, path, fmt.Sprintf("must be a list of tables: write [[%s]] sections (or %s = [{...}])", path, path)}
	}
	return s.value(path, v, line)
}

func (s *scanner) value(path string, v *unstable.Node, line int) *misuse {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				if m := s.keyValue(path, kv); m != nil {
					return m
				}
			}
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); {
			elem := it.Node()
			if elem.Kind == unstable.Comment {
				continue
			}
			ep := fmt.Sprintf("%s[%d]", path, i)
			i++
			if elem.Kind == unstable.InlineTable {
				s.add(ep, s.line(elem))
			}
			if m := s.value(ep, elem, line); m != nil {
				return m
			}
		}
	}
	return nil
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

var indexRe = regexp.MustCompile(`\[[0-9]+\]`)

// stripIndexes turns "folder[0].path" into "folder.path".
func stripIndexes(path string) string { return indexRe.ReplaceAllString(path, "") }

// parent returns the enclosing table of a key path: "folder[0].path" ->
// "folder[0]", "folder[0]" -> "folder", "listen" -> "".
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// line returns the line of key path, or of its closest enclosing table
// that appears in the file (a missing key points at its [[table]] header).
func (p *parser) line(path string) int {
	if p.lines == nil {
		p.lines = map[string]int{}
		for _, k := range p.keys {
			if _, ok := p.lines[k.path]; !ok {
				p.lines[k.path] = k.line
			}
		}
	}
	for ; path != ""; path = parent(path) {
		if l, ok := p.lines[path]; ok {
			return l
		}
	}
	return 1
}

// find names the key go-toml reported at row, with list indexes: go-toml
// says ["folder" "path"], the error says folder[2].path.
func (p *parser) find(key toml.Key, row int) string {
	want := strings.Join(key, ".")
	for _, k := range p.keys {
		if s := stripIndexes(k.path); k.line == row && (s == want || strings.HasSuffix(s, "."+want)) {
			return k.path
		}
	}
	return want
}

package folder

import (
	"regexp"
	"strings"
	"time"

	"tandem/internal/record"
)

// conflictRe matches the conflict part of a name: .conflict-<stamp>-<short>.
var conflictRe = regexp.MustCompile(`\.conflict-(\d{8}-\d{6})-([A-Z2-7]{7})(\.\d+)?`)

const stampLayout = "20060102-150405"

// ConflictName returns the conflict copy name of rel:
// <name>.conflict-<stamp>-<short><.ext>. A name that already is a
// conflict copy gets a fresh conflict part instead of a second one, so
// conflicts of conflict copies do not cascade into copies of copies.
func ConflictName(rel, stamp, short string) string {
	dir, base := record.Parent(rel), rel[strings.LastIndexByte(rel, '/')+1:]
	base = conflictRe.ReplaceAllString(base, "")
	ext := ""
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		ext = base[i:]
	}
	name := strings.TrimSuffix(base, ext) + ".conflict-" + stamp + "-" + short + ext
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Conflict describes a conflict copy found in a folder.
type Conflict struct {
	Path     string    `json:"path"`
	Original string    `json:"original"`
	Time     time.Time `json:"time"` // mtime of the version that lost
	Node     string    `json:"node"` // short ID of the node that made it
}

// ParseConflict recognises a conflict copy name.
func ParseConflict(rel string) (Conflict, bool) {
	base := rel[strings.LastIndexByte(rel, '/')+1:]
	m := conflictRe.FindStringSubmatchIndex(base)
	if m == nil {
		return Conflict{}, false
	}
	t, err := time.Parse(stampLayout, base[m[2]:m[3]])
	if err != nil {
		return Conflict{}, false
	}
	orig := base[:m[0]] + base[m[1]:]
	if dir := record.Parent(rel); dir != "" {
		orig = dir + "/" + orig
	}
	return Conflict{Path: rel, Original: orig, Time: t, Node: base[m[4]:m[5]]}, true
}

// countConflict counts one conflict in the folder's statistics.
func (f *Folder) countConflict() {
	f.stMu.Lock()
	f.stats.Conflicts++
	f.stMu.Unlock()
}

// Package version implements version vectors: per-node counters that tell
// whether one version of a path saw another (dominates it), is the same, or
// was made concurrently. It is pure and free of I/O.
package version

import (
	"fmt"
	"sort"
	"strings"
)

// Counter is one node's counter in a vector.
type Counter struct {
	_     struct{} `cbor:",toarray"`
	ID    uint64   // the node's short ID (identity.ID.Short64)
	Value uint64
}

// Vector is a set of counters sorted by ID with no zero values. The zero
// Vector (nil) is the version of "never existed".
type Vector []Counter

// Ordering is the result of comparing two vectors.
type Ordering int

const (
	Equal      Ordering = iota // same version
	Greater                    // the receiver saw everything in the argument, and more
	Lesser                     // the argument saw everything in the receiver, and more
	Concurrent                 // neither saw the other: a conflict
)

func (o Ordering) String() string {
	return [...]string{"equal", "greater", "lesser", "concurrent"}[o]
}

// Get returns the counter of node id (0 if absent).
func (v Vector) Get(id uint64) uint64 {
	i := sort.Search(len(v), func(i int) bool { return v[i].ID >= id })
	if i < len(v) && v[i].ID == id {
		return v[i].Value
	}
	return 0
}

// Update returns a copy of v with node id's counter advanced to
// max(old+1, now). Using the clock as a floor means a node that lost its
// index produces versions that conflict with, rather than look older than,
// what it made before.
func (v Vector) Update(id uint64, now uint64) Vector {
	out := make(Vector, 0, len(v)+1)
	done := false
	for _, c := range v {
		if !done && c.ID > id {
			out = append(out, Counter{ID: id, Value: max(1, now)})
			done = true
		}
		if c.ID == id {
			out = append(out, Counter{ID: id, Value: max(c.Value+1, now)})
			done = true
			continue
		}
		out = append(out, Counter{ID: c.ID, Value: c.Value})
	}
	if !done {
		out = append(out, Counter{ID: id, Value: max(1, now)})
	}
	return out
}

// Merge returns the element-wise maximum of v and o: a vector that
// dominates or equals both.
func (v Vector) Merge(o Vector) Vector {
	out := make(Vector, 0, max(len(v), len(o)))
	i, j := 0, 0
	for i < len(v) || j < len(o) {
		switch {
		case j >= len(o) || (i < len(v) && v[i].ID < o[j].ID):
			out = append(out, Counter{ID: v[i].ID, Value: v[i].Value})
			i++
		case i >= len(v) || o[j].ID < v[i].ID:
			out = append(out, Counter{ID: o[j].ID, Value: o[j].Value})
			j++
		default:
			out = append(out, Counter{ID: v[i].ID, Value: max(v[i].Value, o[j].Value)})
			i++
			j++
		}
	}
	return out
}

// Compare orders v against o.
func (v Vector) Compare(o Vector) Ordering {
	greater, lesser := false, false
	i, j := 0, 0
	for i < len(v) || j < len(o) {
		var a, b uint64
		switch {
		case j >= len(o) || (i < len(v) && v[i].ID < o[j].ID):
			a = v[i].Value
			i++
		case i >= len(v) || o[j].ID < v[i].ID:
			b = o[j].Value
			j++
		default:
			a, b = v[i].Value, o[j].Value
			i++
			j++
		}
		if a > b {
			greater = true
		} else if b > a {
			lesser = true
		}
	}
	switch {
	case greater && lesser:
		return Concurrent
	case greater:
		return Greater
	case lesser:
		return Lesser
	}
	return Equal
}

// Dominates reports whether v saw o (v >= o).
func (v Vector) Dominates(o Vector) bool {
	c := v.Compare(o)
	return c == Greater || c == Equal
}

// Valid reports whether v is sorted by ID without duplicates or zero
// values; vectors from peers are checked with it.
func (v Vector) Valid() bool {
	for i, c := range v {
		if c.Value == 0 || (i > 0 && v[i-1].ID >= c.ID) {
			return false
		}
	}
	return true
}

func (v Vector) String() string {
	parts := make([]string, len(v))
	for i, c := range v {
		parts[i] = fmt.Sprintf("%x:%d", c.ID>>32, c.Value)
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Order is an arbitrary but total order on vectors (lexicographic on
// (ID, Value) pairs), for deterministic tie-breaks: -1, 0 or +1.
func Order(a, b Vector) int {
	for i := range min(len(a), len(b)) {
		x, y := a[i], b[i]
		switch {
		case x.ID != y.ID && x.ID < y.ID:
			return -1
		case x.ID != y.ID:
			return 1
		case x.Value < y.Value:
			return -1
		case x.Value > y.Value:
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

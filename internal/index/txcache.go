package index

import (
	"bytes"

	bolt "go.etcd.io/bbolt"
)

// opened is one of a folder's buckets, opened once per transaction, and
// a cursor on it for lookups.
type opened struct {
	name []byte
	b    *bolt.Bucket
	c    *bolt.Cursor
}

// sub returns the folder's bucket name. It is opened once per
// transaction: in a read transaction bbolt opens a nested bucket anew,
// with a search from the root, on every call. The folder's buckets are
// made when the folder is opened and never dropped, so one opened here
// stays valid for the whole transaction.
func (t *Tx) sub(name []byte) *bolt.Bucket { return t.open(name).b }

func (t *Tx) open(name []byte) *opened {
	for _, o := range t.opened {
		if bytes.Equal(o.name, name) {
			return o
		}
	}
	o := &opened{name: name, b: t.b.Bucket(name)}
	t.opened = append(t.opened, o)
	return o
}

// lookup is Get on the folder's bucket name through a cursor kept for
// the transaction: bbolt's Get makes a cursor, and grows its search
// stack, for every lookup (a small file placed costs a dozen).
func (t *Tx) lookup(name, key []byte) []byte {
	o := t.open(name)
	if o.c == nil {
		o.c = o.b.Cursor()
	}
	return seekExact(o.c, key)
}

// seekExact returns the value of key through c, or nil where key is
// absent or names a nested bucket, as Bucket.Get does. A cursor seeks
// from the bucket's root every time, so it stays right after the
// transaction's own writes to the bucket.
func seekExact(c *bolt.Cursor, key []byte) []byte {
	k, v := c.Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil
	}
	return v
}

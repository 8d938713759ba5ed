package index

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSeekExactIsGet checks the cursor lookup against bbolt's Get in one
// write transaction, before and after the transaction's own puts and
// deletes (the cursor is kept across them): absent keys, keys between,
// before and after the stored ones, a prefix of a stored key, and a key
// naming a nested bucket.
func TestSeekExactIsGet(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "x.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys := []string{"", "a", "ab", "abc", "b", "m", "nested", "z", "zz"}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		if _, err := b.CreateBucket([]byte("nested")); err != nil {
			return err
		}
		c := b.Cursor()
		check := func(stage string) {
			for _, k := range keys {
				if k == "" {
					continue // bbolt refuses empty keys
				}
				want, got := b.Get([]byte(k)), seekExact(c, []byte(k))
				if string(want) != string(got) || (want == nil) != (got == nil) {
					t.Errorf("%s: key %q: seekExact %q, Get %q", stage, k, got, want)
				}
			}
		}
		check("empty")
		for _, k := range []string{"ab", "m", "zz"} {
			if err := b.Put([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		check("after puts")
		for i := range 3000 { // enough to split pages at commit of the next tx
			if err := b.Put([]byte{'m', byte(i >> 8), byte(i)}, []byte("filler")); err != nil {
				return err
			}
		}
		if err := b.Delete([]byte("m")); err != nil {
			return err
		}
		if err := b.Put([]byte("a"), []byte("va")); err != nil {
			return err
		}
		check("after deletes")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		c := b.Cursor()
		for _, k := range append(keys, "m\x00\x05", "m\x0b\xb7", "m\x0b\xb8") {
			if k == "" {
				continue
			}
			want, got := b.Get([]byte(k)), seekExact(c, []byte(k))
			if string(want) != string(got) || (want == nil) != (got == nil) {
				t.Errorf("read: key %q: seekExact %q, Get %q", k, got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

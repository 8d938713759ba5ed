package index

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped tells the kernel that the process no longer needs the
// index pages it has touched. bbolt reads the database through a
// read-only shared mapping, so every page a scan or a sync has read
// stays mapped and counts in the process's RSS, though it is only page
// cache. MADV_DONTNEED drops the mapping of those pages; they stay in the
// page cache and come back on the next access with a minor fault. The
// read transaction holds bbolt's mmap lock, so the mapping cannot move
// meanwhile.
func (db *DB) ReleaseMapped() error {
	return db.bolt.View(func(tx *bolt.Tx) error {
		data, size := db.bolt.Info().Data, tx.Size()
		if data == 0 || size <= 0 {
			return nil
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, data, uintptr(size), unix.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("index: release mapped pages: %w", e)
		}
		return nil
	})
}

// ReleaseIfUsed is ReleaseMapped if any transaction ran since the last
// call (with *last holding the count then); an idle node does nothing.
func (db *DB) ReleaseIfUsed(last *uint64) error {
	n := db.txs.Load()
	if n == *last {
		return nil
	}
	*last = n
	return db.ReleaseMapped()
}

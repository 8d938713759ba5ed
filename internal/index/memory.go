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
	db.touched.Store(0)
	return db.bolt.View(func(tx *bolt.Tx) error {
		return madviseDontNeed(db.bolt.Info().Data, tx.Size())
	})
}

// releaseFloor is the mapped size below which a transaction's page
// accesses never release the mapping: the mapping then adds at most that
// much to the RSS, while every release costs a system call and the next
// accesses page faults (for a small index, nearly one per access).
var releaseFloor int64 = 64 << 20

// touchBudget is how many random page accesses (each may map up to 64
// KiB: the kernel maps the neighbours of a faulted page too) may happen
// before the mapping is released again: 16 to 32 MiB.
const touchBudget = 256

// touch counts n random page accesses; when the budget is spent, the
// mapping is released right away, inside the transaction (which holds
// the mmap lock; the pages come back unchanged from the page cache when
// bbolt reads them again, as bbolt never rewrites a page in place).
func (t *Tx) touch(n int) {
	if t.db.touched.Add(int64(n)) < touchBudget {
		return
	}
	t.db.touched.Store(0)
	if t.tx.Size() < releaseFloor {
		return
	}
	t.db.releases.Add(1)
	_ = madviseDontNeed(t.db.bolt.Info().Data, t.tx.Size())
}

func madviseDontNeed(data uintptr, size int64) error {
	if data == 0 || size <= 0 {
		return nil
	}
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, data, uintptr(size), unix.MADV_DONTNEED); e != 0 {
		return fmt.Errorf("index: release mapped pages: %w", e)
	}
	return nil
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

// release drops the mapping's pages now, as touch does once its budget is
// spent, for a transaction that reads a whole bucket (a filter build).
func (t *Tx) release() { t.touch(touchBudget) }

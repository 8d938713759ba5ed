// Package crashpoint lets tests kill the daemon at a named point of its
// pipeline, to prove crash safety at exactly that moment. It is inert
// unless the environment variable TANDEM_CRASHPOINT names a point:
//
//	TANDEM_CRASHPOINT=apply-after-rename      crash the first time
//	TANDEM_CRASHPOINT=apply-after-rename:3    crash the third time
//
// A hit sends SIGKILL to the process itself: no deferred function, no
// flush, exactly like a power cut of the process.
package crashpoint

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// The points, in pipeline order.
const (
	ScanBeforeCommit     = "scan-before-commit"  // a local change hashed, not yet in the index
	IndexAfterReceive    = "index-after-receive" // a peer's index message received, not yet stored
	FetchMidTransfer     = "fetch-mid-transfer"  // part of a file's blocks written to the temporary file
	ApplyAfterPending    = "apply-after-pending" // pending record committed, file not yet renamed into place
	ApplyAfterRename     = "apply-after-rename"  // file renamed into place, index not yet updated
	DeleteAfterRemove    = "delete-after-remove" // file moved to the trash, tombstone not yet stored
	ConflictAfterCopy    = "conflict-after-copy" // local version linked to its conflict name, neither indexed nor replaced
	ApplyAfterCommit     = "apply-after-commit"  // everything committed, peers not yet told
	ScanAfterCommitBatch = "scan-after-commit"   // a local change committed to the index
)

var (
	name  string
	after int64 = 1
	hits  atomic.Int64
)

func init() {
	v := os.Getenv("TANDEM_CRASHPOINT")
	if v == "" {
		return
	}
	n, count, ok := strings.Cut(v, ":")
	name = n
	if ok {
		if c, err := strconv.ParseInt(count, 10, 64); err == nil && c > 0 {
			after = c
		}
	}
}

// Hit kills the process if point is the configured crash point and this
// is the configured occurrence.
func Hit(point string) {
	if name == "" || point != name {
		return
	}
	if hits.Add(1) == after {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // wait for the signal
	}
}

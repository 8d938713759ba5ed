// Package fault is a randomized fault-injection suite: real tandem
// processes on loopback, every link between two nodes going through a
// cluster.Proxy that can be cut, random file operations on random nodes
// interleaved with SIGKILLs, restarts, partitions and heals. After every
// round the faults are healed, the cluster must settle (all nodes report
// in sync and hold identical trees) and a checker verifies the promises
// with unique content tokens:
//
//   - no lost write: every token that was written and not superseded by a
//     later operation is somewhere in the tree (at its name or in a
//     conflict copy);
//   - no resurrection: every token that was superseded (overwritten or
//     deleted) by the only operation that ever touched it is gone;
//   - no junk: every name in the tree is one the operations use, or a
//     conflict copy of one.
//
// Environment:
//
//	TANDEM_FAULT_SEED=N    seed of the random schedule (default: time
//	                       based). It is logged at the start of every test
//	                       and in every failure; a failure can be replayed
//	                       with the same seed (timing differs, so a race
//	                       may need a few tries).
//	TANDEM_FAULT_ROUNDS=N  rounds per cluster size (default 100, on a
//	                       2-node and on a 3-node cluster).
//	TANDEM_TEST_RACE=1     build the daemon with the race detector.
//
// A long run:
//
//	TANDEM_FAULT_ROUNDS=1000 go test -count=1 -timeout 0 -v ./test/fault/
package fault

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"tandem/internal/cluster"
)

// seed is the run's seed, from TANDEM_FAULT_SEED or the clock.
var seed uint64

// rounds is the number of rounds per cluster size.
var rounds = 100

// TestMain reads the suite's settings and builds the tandem binary once
// (cluster.Main; TANDEM_TEST_RACE=1 builds it with the race detector).
func TestMain(m *testing.M) {
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("TANDEM_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TANDEM_FAULT_SEED=%q: %v\n", s, err)
			os.Exit(2)
		}
		seed = v
	}
	if s := os.Getenv("TANDEM_FAULT_ROUNDS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			fmt.Fprintf(os.Stderr, "TANDEM_FAULT_ROUNDS=%q: want a positive number\n", s)
			os.Exit(2)
		}
		rounds = v
	}
	cluster.Main(m)
}

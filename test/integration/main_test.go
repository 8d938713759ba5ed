// Package integration runs real tandem processes on loopback and checks
// the promises end to end: no lost writes, no resurrection, convergence,
// atomic visibility, crash safety, missing-disk safety, no echo.
package integration

import (
	"testing"

	"tandem/internal/cluster"
)

// TestMain builds the tandem binary once. TANDEM_TEST_RACE=1 builds it
// with the race detector, so that daemon races fail the suite too.
func TestMain(m *testing.M) {
	cluster.Main(m)
}

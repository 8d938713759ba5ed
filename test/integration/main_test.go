// Package integration runs real tandem processes on loopback and checks
// the promises end to end: no lost writes, no resurrection, convergence,
// atomic visibility, crash safety, missing-disk safety, no echo.
package integration

import (
	"fmt"
	"os"
	"testing"

	"tandem/internal/cluster"
)

// TestMain builds the tandem binary once. TANDEM_TEST_RACE=1 builds it
// with the race detector, so that daemon races fail the suite too.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := cluster.Build(dir, os.Getenv("TANDEM_TEST_RACE") != ""); err != nil {
		fmt.Fprintln(os.Stderr, "build tandem:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

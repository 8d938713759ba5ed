package record

import "testing"

// ValidName runs for every path a scan meets and every name a peer sends:
// checking a valid name allocates nothing.
func TestValidNameAllocates(t *testing.T) {
	n := testing.AllocsPerRun(100, func() { _ = ValidName("dir001/sub/file01234.dat") })
	if n != 0 {
		t.Fatalf("ValidName of a valid name allocates %v times", n)
	}
}

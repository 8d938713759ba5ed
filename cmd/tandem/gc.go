package main

import (
	"os"
	"runtime/debug"
)

// daemonGCPercent is the daemon's garbage collector target (GOGC). The
// heap is small (the index lives on disk: about 40 MiB of Go heap with a
// million files indexed), and a transfer of many small files allocates
// per file; collecting at 200% instead of 100% growth took about a tenth
// of the time of 20 000 small files (bench smallfiles), for a few MiB
// more RSS.
const daemonGCPercent = 200

// setGC applies daemonGCPercent unless GOGC is set in the environment.
func setGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
}

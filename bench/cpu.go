package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"tandem/internal/cluster"
)

// CPU time, next to wall time. On a machine whose cores tandem keeps busy
// (the bench's two nodes share it), wall time follows CPU time, and the
// CPU ratio says how much work tandem does per file against rsync. CPU
// times drift with the machine's speed too, so compare them within a run.

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, fixed at 100
// in Linux's interface to user space.
const userHZ = 100

// procCPU returns the user and system CPU time process pid has used; with
// children, also that of the children it has waited for.
func procCPU(pid int, children bool) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	last := 15                   // stime
	if children {
		last = 17 // cstime
	}
	if len(f) < last-2 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var ticks int64
	for field := 14; field <= last; field++ {
		v, err := strconv.ParseInt(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %w", pid, field, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// clusterCPU returns the CPU time c's running nodes have used.
func clusterCPU(t *tb, c *cluster.Cluster) time.Duration {
	var sum time.Duration
	for _, nd := range c.Nodes {
		if nd.Cmd == nil || nd.Cmd.Process == nil {
			continue
		}
		d, err := procCPU(nd.Cmd.Process.Pid, false)
		if err != nil {
			t.Fatalf("CPU time of node %s: %v", nd.Name, err)
		}
		sum += d
	}
	return sum
}

// hasChildren reports whether process pid has children that were not
// waited for yet.
func hasChildren(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(b))) > 0
}

// cpuSecs formats a CPU time.
func cpuSecs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

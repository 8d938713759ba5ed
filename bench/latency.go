package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"tandem/internal/cluster"
)

// latency writes small files on node a, one at a time, and measures how
// long until each is readable with its full content on node b.
func latency(t *tb, full bool) []row {
	samples, sizes := 200, []int{0}
	if full {
		samples, sizes = 500, []int{0, 100000}
	}
	var rows []row
	for _, tf := range sizes {
		c := newCluster(t, 2, fmt.Sprintf("latency-%d", tf))
		a, b := c.Nodes[0], c.Nodes[1]
		if tf > 0 {
			populate(t, a.Dir, tf)
		}
		c.Start()
		c.Connected(time.Minute)
		if tf > 0 {
			cluster.WaitFor(t, 30*time.Minute, "initial tree on b", func() (bool, string) {
				failIfExited(t, c)
				_, err := os.Stat(filepath.Join(b.Dir, fmt.Sprintf("tree/d%03d/f%05d", (tf-1)%200, tf-1)))
				return err == nil, ""
			})
			c.Converged(30 * time.Minute)
		}
		var ds []time.Duration
		for i := range samples {
			name := fmt.Sprintf("lat-%04d.txt", i)
			content := fmt.Sprintf("sample %d written at %d\n", i, time.Now().UnixNano())
			start := time.Now()
			if err := os.WriteFile(filepath.Join(a.Dir, name), []byte(content), 0o644); err != nil {
				t.Fatalf("%v", err)
			}
			dst := filepath.Join(b.Dir, name)
			for {
				if got, err := os.ReadFile(dst); err == nil && string(got) == content {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("sample %d did not arrive within 10s", i)
				}
				time.Sleep(100 * time.Microsecond)
			}
			ds = append(ds, time.Since(start))
		}
		label := "latency, small file"
		if tf > 0 {
			label = fmt.Sprintf("latency, %d files in tree", tf)
		}
		rows = append(rows, row{name: label + " p50", tandem: ms(percentile(ds, 50)), note: fmt.Sprintf("%d samples", samples)})
		rows = append(rows, row{name: label + " p90", tandem: ms(percentile(ds, 90))})
		rows = append(rows, row{name: label + " p99", tandem: ms(percentile(ds, 99))})
		a.Stop()
		b.Stop()
	}
	return rows
}

// populate creates n small files spread over 200 directories under
// dir/tree.
func populate(t *tb, dir string, n int) { populateIn(t, dir, n, 200) }

// populateIn creates n small files spread over dirs directories under
// dir/tree.
func populateIn(t *tb, dir string, n, dirs int) {
	for i := range n {
		d := filepath.Join(dir, "tree", fmt.Sprintf("d%03d", i%dirs))
		if i < dirs {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatalf("%v", err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			t.Fatalf("%v", err)
		}
	}
}

// Command bench measures tandem on loopback against rsync in the same run
// and prints a table: case, tandem, rsync, ratio, bytes on the wire, peak
// RSS. Run it from the repository root:
//
//	go run ./bench                 # all cases
//	go run ./bench -case latency   # one case
//	go run ./bench -full -repeat 3 # full size, median of three runs
//
// It builds tandem, creates the trees in a temporary directory, and
// installs nothing itself: rsync must be on PATH for the rsync columns.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"tandem/internal/cluster"
)

// tb lets the cluster harness run outside `go test`.
type tb struct {
	dirs     []string
	cleanups []func()
	failed   bool
}

func (t *tb) Helper() {}
func (t *tb) Fatalf(f string, a ...any) {
	t.failed = true
	panic(fatal{fmt.Sprintf(f, a...)})
}
func (t *tb) Errorf(f string, a ...any) {
	t.failed = true
	fmt.Fprintf(os.Stderr, "error: "+f+"\n", a...)
}
func (t *tb) Logf(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
func (t *tb) Cleanup(fn func())       { t.cleanups = append(t.cleanups, fn) }
func (t *tb) Failed() bool            { return t.failed }
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.dirs = append(t.dirs, d)
	return d
}

// done runs the case's cleanups. Its directories stay until the whole
// run ends (removeTrees): on ext4 without a journal, files created within
// about a minute of a large removal cost several times the CPU (see
// quiesceFresh), and the next case's first timed phase would pay for this
// case's trees.
func (t *tb) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	leftTrees = append(leftTrees, t.dirs...)
}

// leftTrees are the directories of finished cases.
var leftTrees []string

// removeTrees removes the directories of every finished case.
func removeTrees() {
	for _, d := range leftTrees {
		os.RemoveAll(d)
	}
	leftTrees = nil
}

type fatal struct{ msg string }

// row is one line of the result table.
type row struct {
	name          string
	tandem, rsync string
	ratio         string
	wire          string
	rss           string
	note          string
}

type benchCase struct {
	name string
	run  func(t *tb, full bool) []row
}

var cases = []benchCase{
	{"latency", latency},
	{"smallfiles", smallFiles},
	{"large", large},
	{"delta", delta},
	{"rescan", rescan},
	{"memory", memory},
}

func main() {
	only := flag.String("case", "", "run only this case ("+names()+")")
	full := flag.Bool("full", false, "full-size runs (default: reduced sizes)")
	flag.StringVar(&profileDir, "cpuprofile", "", "write a CPU profile of every tandem node to this directory")
	repeat := flag.Int("repeat", 1, "run every case this many times and report, for each row, the run with the median ratio (this machine's disk and CPU vary from minute to minute)")
	flag.BoolVar(&showProgress, "progress", false, "print every node's indexed and needed counts every 100 ms (diagnosis; the polling costs a little CPU)")
	flag.Parse()
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "tandem-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	if err := cluster.Build(dir, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var rows []row
	failed := false
	for _, c := range cases {
		if *only != "" && c.name != *only {
			continue
		}
		var runs [][]row
		for i := range max(*repeat, 1) {
			fmt.Fprintf(os.Stderr, "== %s (run %d of %d)\n", c.name, i+1, max(*repeat, 1))
			r, err := runCase(c, *full)
			if err != nil {
				fmt.Fprintf(os.Stderr, "case %s failed: %v\n", c.name, err)
				failed = true
				break
			}
			runs = append(runs, r)
		}
		if len(runs) == max(*repeat, 1) {
			rows = append(rows, medianRows(runs)...)
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "case\ttandem\trsync\tratio\twire bytes\tpeak RSS\tnote")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, or(r.tandem), or(r.rsync), or(r.ratio), or(r.wire), or(r.rss), r.note)
	}
	w.Flush()
	removeTrees()
	if failed {
		os.Exit(1)
	}
}

// medianRows picks, for every row of a case, the run whose ratio is the
// median of all runs (rows without a ratio: the first run), and lists
// every run's ratio in its note.
func medianRows(runs [][]row) []row {
	if len(runs) == 1 {
		return runs[0]
	}
	var out []row
	for k := range runs[0] {
		type rr struct {
			r     row
			ratio float64
		}
		var all []rr
		var ratios []string
		for _, run := range runs {
			if k >= len(run) {
				continue
			}
			v, err := strconv.ParseFloat(run[k].ratio, 64)
			if err != nil {
				v = 0
			}
			all = append(all, rr{run[k], v})
			ratios = append(ratios, or(run[k].ratio))
		}
		pick := all[0].r
		if all[0].r.ratio != "" {
			sort.SliceStable(all, func(i, j int) bool { return all[i].ratio < all[j].ratio })
			pick = all[len(all)/2].r
		}
		pick.note = strings.TrimSpace(pick.note + fmt.Sprintf(" [median of %d runs; ratios %s]", len(all), strings.Join(ratios, " ")))
		out = append(out, pick)
	}
	return out
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func names() string {
	var n []string
	for _, c := range cases {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}

func runCase(c benchCase, full bool) (rows []row, err error) {
	t := &tb{}
	defer t.done()
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				err = errors.New(f.msg)
				return
			}
			panic(r)
		}
	}()
	return c.run(t, full), nil
}

var (
	profileDir   string
	showProgress bool
)

// newCluster is cluster.New for benchmarks: nodes log at info level, as in
// production, and with -cpuprofile each writes a CPU profile, stopped
// cleanly when the case ends.
func newCluster(t *tb, n int, label string) *cluster.Cluster {
	c := cluster.New(t, n)
	c.LogLevel = "info"
	if showProgress {
		progress(t, c, label)
	}
	if profileDir != "" {
		for _, nd := range c.Nodes {
			nd.Env = append(nd.Env, "TANDEM_CPUPROFILE="+filepath.Join(profileDir, label+"-"+nd.Name+".prof"))
		}
		t.Cleanup(func() {
			for _, nd := range c.Nodes {
				nd.Stop()
			}
		})
	}
	return c
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

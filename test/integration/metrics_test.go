package integration

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"tandem/internal/cluster"
)

// TestMetrics scrapes a node's /metrics after a few files were synced and
// checks the series an operator alerts on, with their values.
func TestMetrics(t *testing.T) {
	c := cluster.New(t, 2)
	b := c.Nodes[1]
	addr := cluster.FreeAddr(t)
	b.Top = fmt.Sprintf("metrics = %q\n", addr)
	c.WriteConfig(b, "")
	c.Start()
	for i := range 3 {
		c.Nodes[0].Write(fmt.Sprintf("m%d.txt", i), "metrics")
	}
	c.Converged(settle)
	inSync(t, c)
	want := []string{
		`tandem_folder_ok{folder="data"} 1`,
		`tandem_folder_files{folder="data"} 3`,
		`tandem_folder_needed_items{folder="data"} 0`,
		`tandem_folder_item_errors{folder="data"} 0`,
		`tandem_folder_applied_total{folder="data"} 3`,
		`tandem_folder_scan_hashed_bytes_total{folder="data"} 0`,
		`tandem_peer_connected{peer="` + c.Nodes[0].ID + `"} 1`,
	}
	cluster.WaitFor(t, settle, "metrics", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, w := range want {
			if !strings.Contains(string(body), w+"\n") {
				return false, "missing " + w
			}
		}
		return true, ""
	})
}

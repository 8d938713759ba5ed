package daemon

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	mFiles     = prometheus.NewDesc("tandem_folder_files", "Live (not deleted) paths in the folder's index.", []string{"folder"}, nil)
	mNeeded    = prometheus.NewDesc("tandem_folder_needed_items", "Remote changes not yet applied.", []string{"folder"}, nil)
	mErrors    = prometheus.NewDesc("tandem_folder_item_errors", "Paths that failed to apply and are being retried.", []string{"folder"}, nil)
	mUp        = prometheus.NewDesc("tandem_folder_ok", "1 if the folder runs, 0 if it is stopped by an error (missing disk or marker).", []string{"folder"}, nil)
	mApplied   = prometheus.NewDesc("tandem_folder_applied_total", "Remote changes applied.", []string{"folder"}, nil)
	mFetched   = prometheus.NewDesc("tandem_folder_bytes_fetched_total", "Block bytes received from peers.", []string{"folder"}, nil)
	mReused    = prometheus.NewDesc("tandem_folder_bytes_reused_total", "Block bytes found locally instead of fetched.", []string{"folder"}, nil)
	mConflicts = prometheus.NewDesc("tandem_folder_conflicts_total", "Conflict copies created.", []string{"folder"}, nil)
	mHashed    = prometheus.NewDesc("tandem_folder_scan_hashed_bytes_total", "Bytes read and hashed by scans (files whose size, mtime, inode or ctime changed).", []string{"folder"}, nil)
	mPeerUp    = prometheus.NewDesc("tandem_peer_connected", "1 if the peer is connected.", []string{"peer"}, nil)
	mPeerIn    = prometheus.NewDesc("tandem_peer_bytes_received_total", "Bytes received on the current connection.", []string{"peer"}, nil)
	mPeerOut   = prometheus.NewDesc("tandem_peer_bytes_sent_total", "Bytes sent on the current connection.", []string{"peer"}, nil)
)

type collector struct{ d *Daemon }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mFiles, mNeeded, mErrors, mUp, mApplied, mFetched, mReused, mConflicts, mHashed, mPeerUp, mPeerIn, mPeerOut} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.d.Status()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, f := range st.Folders {
		ch <- prometheus.MustNewConstMetric(mFiles, prometheus.GaugeValue, float64(f.Files), f.ID)
		ch <- prometheus.MustNewConstMetric(mNeeded, prometheus.GaugeValue, float64(f.Needed), f.ID)
		ch <- prometheus.MustNewConstMetric(mErrors, prometheus.GaugeValue, float64(len(f.ItemError)), f.ID)
		ch <- prometheus.MustNewConstMetric(mUp, prometheus.GaugeValue, b(f.State != "error"), f.ID)
		ch <- prometheus.MustNewConstMetric(mApplied, prometheus.CounterValue, float64(f.Stats.FilesApplied), f.ID)
		ch <- prometheus.MustNewConstMetric(mFetched, prometheus.CounterValue, float64(f.Stats.BytesFetched), f.ID)
		ch <- prometheus.MustNewConstMetric(mReused, prometheus.CounterValue, float64(f.Stats.BytesReused), f.ID)
		ch <- prometheus.MustNewConstMetric(mConflicts, prometheus.CounterValue, float64(f.Stats.Conflicts), f.ID)
		ch <- prometheus.MustNewConstMetric(mHashed, prometheus.CounterValue, float64(f.Stats.BytesHashed), f.ID)
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(mPeerUp, prometheus.GaugeValue, b(p.Connected), p.ID)
		ch <- prometheus.MustNewConstMetric(mPeerIn, prometheus.CounterValue, float64(p.BytesIn), p.ID)
		ch <- prometheus.MustNewConstMetric(mPeerOut, prometheus.CounterValue, float64(p.BytesOut), p.ID)
	}
}

func metricsHandler(d *Daemon) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

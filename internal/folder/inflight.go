package folder

// markInflight records that jobs' paths are being placed.
func (f *Folder) markInflight(jobs []*job) {
	f.flMu.Lock()
	defer f.flMu.Unlock()
	if f.inflight == nil {
		f.inflight = make(map[string]bool, len(jobs))
	}
	for _, j := range jobs {
		f.inflight[j.path] = false
	}
}

// unmarkInflight ends the placing of jobs' paths (after their commit, or
// failure) and scans those the watcher reported meanwhile.
func (f *Folder) unmarkInflight(jobs []*job) {
	var again []string
	f.flMu.Lock()
	for _, j := range jobs {
		if f.inflight[j.path] {
			again = append(again, j.path)
		}
		delete(f.inflight, j.path)
	}
	f.flMu.Unlock()
	if len(again) > 0 {
		f.requestScan(again, false)
	}
}

// postponeInflight returns paths without those being placed right now,
// which are scanned when their batch is committed.
func (f *Folder) postponeInflight(paths []string) []string {
	f.flMu.Lock()
	defer f.flMu.Unlock()
	if len(f.inflight) == 0 {
		return paths
	}
	out := paths[:0]
	for _, p := range paths {
		if !f.postponeLocked(p) {
			out = append(out, p)
		}
	}
	return out
}

// postponeIfInflight is postponeInflight for one path met by a directory
// walk: it reports whether the path is being placed right now (and is
// then scanned when its batch is committed). A scan of a directory that
// a batch is filling would otherwise read and hash every file placed but
// not yet committed, as new to the index, only for the commit to record
// the same content.
func (f *Folder) postponeIfInflight(rel string) bool {
	f.flMu.Lock()
	defer f.flMu.Unlock()
	return f.postponeLocked(rel)
}

// postponeLocked marks rel for a scan after its batch's commit if it is
// being placed, and reports whether it is. Caller holds f.flMu.
func (f *Folder) postponeLocked(rel string) bool {
	if _, ok := f.inflight[rel]; !ok {
		return false
	}
	f.inflight[rel] = true
	return true
}

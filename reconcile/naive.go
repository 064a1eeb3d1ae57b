package reconcile

// NaiveScanLimit is the page size of the naive session's listings unless
// SessionConfig.ScanLimit is set.
const NaiveScanLimit = 1 << 16

// NewNaiveSession returns the O(N) baseline session: it lists every (key,
// digest) of the partition on both sides (RangeScan without records, pages
// of NaiveScanLimit entries unless cfg.ScanLimit is set), compares the
// lists, and then fetches, resolves, applies and confirms exactly as the
// tree-based Session does, with the same validation and the same Stats, so
// benchmarks compare like with like. SyncOptions.Session.Method MethodNaive selects it
// in SyncPartition and SyncAll.
func NewNaiveSession(cfg SessionConfig) (*Session, error) {
	cfg.Method = MethodNaive
	if cfg.ScanLimit == 0 {
		cfg.ScanLimit = NaiveScanLimit
	}
	return NewSession(cfg)
}

// startNaive queues the listing of the whole partition.
func (s *Session) startNaive() {
	s.phase = phaseDescend
	s.toList = append(s.toList, &listItem{r: s.part, need: [2]bool{true, true}, count: [2]int64{-1, -1}})
}

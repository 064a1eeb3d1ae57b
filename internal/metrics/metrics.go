// Package metrics exports the repair loop's figures as Prometheus metrics
// (client_golang): sessions by outcome and their duration, round trips,
// bytes by kind, keys repaired, divergence found, complete rounds, throttle
// rates, admission control state, rebuild progress, scrubs and tombstones
// purged. `pebble-ae serve` mounts Handler on /metrics.
//
// A Metrics has its own registry (no process-wide state). Feed it by
// passing its Observe* methods to repair.LoopConfig (OnSession,
// OnFullRound, OnTask), engine.GCOptions.OnPurge and the rebuild progress
// callbacks, and let it read throttles and admission control at scrape time
// with WatchThrottles and WatchAdmission. All methods are safe for
// concurrent use.
package metrics

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "pebbleae"

// Metrics holds the collectors.
type Metrics struct {
	reg *prometheus.Registry

	sessions        *prometheus.CounterVec
	sessionDuration *prometheus.HistogramVec
	sessionMethods  *prometheus.CounterVec
	roundTrips      prometheus.Counter
	bytes           *prometheus.CounterVec
	keysRepaired    prometheus.Counter
	keysCompared    prometheus.Counter
	keysDiverged    prometheus.Counter
	drains          prometheus.Counter
	largeDiffs      prometheus.Counter
	peakPending     prometheus.Gauge
	fullRounds      *prometheus.CounterVec
	tasks           *prometheus.CounterVec
	taskDuration    *prometheus.HistogramVec
	rebuildKeys     *prometheus.GaugeVec
	purged          *prometheus.CounterVec
	clockSkew       *prometheus.GaugeVec
	skewedSessions  *prometheus.CounterVec
	quarantined     *prometheus.CounterVec

	mu struct {
		sync.Mutex
		throttles []*repair.Throttle
		admission *repair.Admission
	}
}

// New returns metrics registered in a fresh registry, with the Go and
// process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sessions_total",
		Help: "Anti-entropy sessions by outcome (in-sync, repaired, failed, not-ready, deferred)."}, []string{"outcome"})
	m.sessionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "session_duration_seconds",
		Help: "Duration of anti-entropy sessions by outcome.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"outcome"})
	m.sessionMethods = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "session_methods_total",
		Help: "Anti-entropy sessions that ran, by the method that localized their differences (none, symbols, sketch, descent, naive; +descent after a fallback)."}, []string{"method"})
	m.roundTrips = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "session_round_trips_total",
		Help: "Round trips of anti-entropy sessions."})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "session_bytes_total",
		Help: "Bytes exchanged by anti-entropy sessions, by kind (fingerprints, key_lists, sketches, records, record_keys, overhead)."}, []string{"kind"})
	m.keysRepaired = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "keys_repaired_total",
		Help: "Keys written by anti-entropy sessions, both sides."})
	m.keysCompared = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "keys_compared_total",
		Help: "Keys whose digests sessions compared."})
	m.keysDiverged = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "keys_diverged_total",
		Help: "Keys found to differ (records transferred) by sessions."})
	m.drains = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "session_drains_total",
		Help: "Times sessions applied their queued writes before their end because they reached the session memory budget (--session-memory)."})
	m.largeDiffs = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "session_large_differences_total",
		Help: "Sketch or symbol differences too large to fetch in one round, fetched in pairs a chunk a round."})
	m.peakPending = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "session_peak_pending_bytes",
		Help: "The most bytes of resolved writes the last session held at once."})
	m.fullRounds = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "full_rounds_total",
		Help: "Complete repair rounds (every replica of the preference list) by partition."}, []string{"partition"})
	m.tasks = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "background_tasks_total",
		Help: "Background task runs (rebuild, scrub, gc) by task and result."}, []string{"task", "result"})
	m.taskDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "background_task_duration_seconds",
		Help: "Duration of background task runs.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"task"})
	m.rebuildKeys = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "rebuild_keys_scanned",
		Help: "Keys scanned so far by the running (or last) rebuild of each partition."}, []string{"partition"})
	m.purged = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tombstones_purged_total",
		Help: "Tombstones purged by the tombstone GC, by partition."}, []string{"partition"})
	m.clockSkew = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "peer_clock_skew_seconds",
		Help: "The peer's physical clock minus this node's, measured by the last session's Info exchange."}, []string{"peer"})
	m.skewedSessions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "clock_skew_sessions_total",
		Help: "Sessions refused because the two clocks differ by more than the maximum clock offset (no records exchanged), by peer."}, []string{"peer"})
	m.quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "records_quarantined_total",
		Help: "Records sessions did not apply because they are stamped beyond the receiving replica's clock plus its maximum offset, by peer."}, []string{"peer"})
	m.reg.MustRegister(m.clockSkew, m.skewedSessions, m.quarantined)
	m.reg.MustRegister(m.sessions, m.sessionDuration, m.sessionMethods, m.roundTrips, m.bytes, m.keysRepaired, m.keysCompared, m.keysDiverged,
		m.drains, m.largeDiffs, m.peakPending,
		m.fullRounds, m.tasks, m.taskDuration, m.rebuildKeys, m.purged, statusCollector{m},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, to add the application's own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveSession records a session (repair.LoopConfig.OnSession).
func (m *Metrics) ObserveSession(r repair.SessionReport) {
	m.sessions.WithLabelValues(r.Outcome).Inc()
	peer := string(r.Peer)
	if r.Stats.ClockSkew != 0 {
		m.clockSkew.WithLabelValues(peer).Set(r.Stats.ClockSkew.Seconds())
	}
	if errors.Is(r.Err, reconcile.ErrClockSkew) {
		m.skewedSessions.WithLabelValues(peer).Inc()
	}
	if r.Stats.Quarantined > 0 {
		m.quarantined.WithLabelValues(peer).Add(float64(r.Stats.Quarantined))
	}
	if r.Outcome == "not-ready" || r.Outcome == "deferred" {
		return
	}
	m.sessionDuration.WithLabelValues(r.Outcome).Observe(r.Stats.Duration.Seconds())
	if r.Stats.Method != "" {
		m.sessionMethods.WithLabelValues(string(r.Stats.Method)).Inc()
	}
	m.roundTrips.Add(float64(r.Stats.Rounds))
	b := r.Stats.Bytes()
	m.bytes.WithLabelValues("fingerprints").Add(float64(b.Fingerprints))
	m.bytes.WithLabelValues("key_lists").Add(float64(b.KeyLists))
	m.bytes.WithLabelValues("sketches").Add(float64(b.Sketches))
	m.bytes.WithLabelValues("records").Add(float64(b.Records))
	m.bytes.WithLabelValues("record_keys").Add(float64(b.RecordKeys))
	m.bytes.WithLabelValues("overhead").Add(float64(b.Overhead))
	m.keysRepaired.Add(float64(r.Stats.KeysRepaired()))
	m.keysCompared.Add(float64(r.Stats.KeysCompared))
	m.keysDiverged.Add(float64(r.Stats.KeysTransferred))
	m.drains.Add(float64(r.Stats.Drains))
	m.largeDiffs.Add(float64(r.Stats.LargeDifferences))
	m.peakPending.Set(float64(r.Stats.PeakPendingBytes))
}

// WatchClockRefusals exports refused() (engine.Engine.ClockOffsetRefusals:
// records Apply refused as stamped beyond the clock plus the maximum
// offset) as a counter read at scrape time.
func (m *Metrics) WatchClockRefusals(refused func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "records_refused_clock_offset_total",
		Help: "Records Apply refused because they are stamped beyond this node's clock plus its maximum offset."},
		func() float64 { return float64(refused()) }))
}

// ObserveFullRound records a complete round (LoopConfig.OnFullRound; chain
// it with the tombstone GC's FullRound).
func (m *Metrics) ObserveFullRound(fr repair.FullRound) {
	m.fullRounds.WithLabelValues(strconv.FormatUint(uint64(fr.Partition), 10)).Inc()
}

// ObserveTask records a background task run (LoopConfig.OnTask).
func (m *Metrics) ObserveTask(r repair.TaskReport) {
	res := "ok"
	if r.Err != nil {
		res = "error"
	}
	m.tasks.WithLabelValues(r.Name, res).Inc()
	m.taskDuration.WithLabelValues(r.Name).Observe(r.End.Sub(r.Start).Seconds())
}

// RebuildProgress records a rebuild's progress (the progress callback of
// engine.RebuildNotReady and engine.Scrub).
func (m *Metrics) RebuildProgress(part int, keys uint64) {
	m.rebuildKeys.WithLabelValues(strconv.Itoa(part)).Set(float64(keys))
}

// TombstonesPurged records a GC run (engine.GCOptions.OnPurge).
func (m *Metrics) TombstonesPurged(part uint32, n int) {
	m.purged.WithLabelValues(strconv.FormatUint(uint64(part), 10)).Add(float64(n))
}

// WatchThrottles exports the rates in force and the totals of throttles.
func (m *Metrics) WatchThrottles(ts ...*repair.Throttle) {
	m.mu.Lock()
	m.mu.throttles = append(m.mu.throttles, ts...)
	m.mu.Unlock()
}

// WatchLoop exports the repair loop's progress (repair.LoopStatus.Repair):
// the keys still to repair as its sessions estimate them, and the repair
// rate.
func (m *Metrics) WatchLoop(l *repair.Loop) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "repair_remaining_keys",
		Help: "Keys still to repair, as the running (else last) session of each (partition, peer) estimates them."},
		func() float64 { return float64(l.Status().Repair.Remaining) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "repair_rate_keys_per_second",
		Help: "Keys repaired per second by the repair loop over the last 10 seconds."},
		func() float64 { return l.Status().Repair.Rate }))
}

// WatchAdmission exports admission control's state.
func (m *Metrics) WatchAdmission(a *repair.Admission) {
	m.mu.Lock()
	m.mu.admission = a
	m.mu.Unlock()
}

var (
	descThrottleRate  = prometheus.NewDesc(namespace+"_throttle_rate", "Rate in force of a background throttle (per second; absent when unlimited).", []string{"throttle", "unit"}, nil)
	descThrottleTaken = prometheus.NewDesc(namespace+"_throttle_taken_total", "Amount that went through a background throttle.", []string{"throttle", "unit"}, nil)
	descThrottleScale = prometheus.NewDesc(namespace+"_throttle_scale", "Multiple of a throttle's configured rates in force.", []string{"throttle"}, nil)
	descAdmScale      = prometheus.NewDesc(namespace+"_admission_scale", "Admission control's scale of background work (1: the configured rates).", nil, nil)
	descAdmOverloaded = prometheus.NewDesc(namespace+"_admission_overloaded", "1 while admission control sees the foreground suffering, by reason.", []string{"reason"}, nil)
	descAdmP99        = prometheus.NewDesc(namespace+"_foreground_p99_seconds", "Foreground p99 latency of the last admission window.", nil, nil)
	descAdmBaseline   = prometheus.NewDesc(namespace+"_foreground_p99_baseline_seconds", "Baseline foreground p99 of the relative latency target.", nil, nil)
	descAdmTarget     = prometheus.NewDesc(namespace+"_foreground_latency_target_seconds", "Foreground latency target in force (the p99 should stay below it).", nil, nil)
	descAdmQuiet      = prometheus.NewDesc(namespace+"_admission_quiet", "1 when the last admission window was quiet (no background work) and taught the baseline.", nil, nil)
	descAdmL0         = prometheus.NewDesc(namespace+"_pebble_l0_sublevels", "Pebble L0 sublevels at the last admission window.", nil, nil)
	descAdmDebt       = prometheus.NewDesc(namespace+"_pebble_compaction_debt_bytes", "Pebble's estimated compaction debt at the last admission window.", nil, nil)
	descAdmStalls     = prometheus.NewDesc(namespace+"_pebble_write_stalls_total", "Pebble write stalls.", nil, nil)
	descAdmDiskSlow   = prometheus.NewDesc(namespace+"_disk_slow_events_total", "Slow disk operations reported by the disk-health checker.", nil, nil)
	descAdmDecreases  = prometheus.NewDesc(namespace+"_admission_decreases_total", "Windows in which admission control scaled background work down.", nil, nil)
	descAdmByReason   = prometheus.NewDesc(namespace+"_admission_decreases_by_reason_total", "Windows in which admission control scaled background work down, by the signal that showed the overload.", []string{"reason"}, nil)
	descAdmFloor      = prometheus.NewDesc(namespace+"_admission_min_scale", "The repair floor: the scale admission control never goes below.", nil, nil)
	descAdmCeiling    = prometheus.NewDesc(namespace+"_admission_max_scale", "The ceiling: the scale admission control raises background work to while the foreground leaves room.", nil, nil)
	descAdmCeilingNow = prometheus.NewDesc(namespace+"_admission_ceiling", "The ceiling in force: the max scale, 1 shortly after the foreground ran flat out, the saturated scale while it does.", nil, nil)
	descAdmUtil       = prometheus.NewDesc(namespace+"_foreground_utilization", "Share of the last admission window foreground operations took at their median latency (at least the saturated fraction: flat out, lent nothing, judged on throughput).", nil, nil)
	descAdmNoise      = prometheus.NewDesc(namespace+"_foreground_p99_noise_seconds", "Standard deviation of the quiet windows' foreground p99 (the baseline's own noise).", nil, nil)
	descWriteRate     = prometheus.NewDesc(namespace+"_write_rate", "Foreground writes per second in the last admission window.", nil, nil)
)

var admissionReasons = []string{"l0-sublevels", "compaction-debt", "write-stall", "disk-slow", "latency", "throughput"}

// statusCollector reads throttles and admission control at scrape time.
type statusCollector struct{ m *Metrics }

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descThrottleRate, descThrottleTaken, descThrottleScale, descAdmScale, descAdmOverloaded, descAdmP99,
		descAdmBaseline, descAdmTarget, descAdmQuiet, descAdmL0, descAdmDebt, descAdmStalls, descAdmDiskSlow, descAdmDecreases, descAdmByReason, descAdmFloor, descAdmCeiling, descAdmCeilingNow, descAdmUtil, descAdmNoise, descWriteRate} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	ts, a := append([]*repair.Throttle(nil), c.m.mu.throttles...), c.m.mu.admission
	c.m.mu.Unlock()
	for _, t := range ts {
		st := t.Status()
		if !math.IsInf(st.BytesPerSec, 1) {
			ch <- prometheus.MustNewConstMetric(descThrottleRate, prometheus.GaugeValue, st.BytesPerSec, st.Name, "bytes")
		}
		if !math.IsInf(st.KeysPerSec, 1) {
			ch <- prometheus.MustNewConstMetric(descThrottleRate, prometheus.GaugeValue, st.KeysPerSec, st.Name, "keys")
		}
		ch <- prometheus.MustNewConstMetric(descThrottleTaken, prometheus.CounterValue, float64(st.BytesTaken), st.Name, "bytes")
		ch <- prometheus.MustNewConstMetric(descThrottleTaken, prometheus.CounterValue, float64(st.KeysTaken), st.Name, "keys")
		ch <- prometheus.MustNewConstMetric(descThrottleTaken, prometheus.CounterValue, st.BusyTaken.Seconds(), st.Name, "busy_seconds")
		if !math.IsInf(st.BusyFraction, 1) {
			ch <- prometheus.MustNewConstMetric(descThrottleRate, prometheus.GaugeValue, st.BusyFraction, st.Name, "busy_seconds")
		}
		ch <- prometheus.MustNewConstMetric(descThrottleScale, prometheus.GaugeValue, st.Scale, st.Name)
	}
	if a == nil {
		return
	}
	st := a.Status()
	ch <- prometheus.MustNewConstMetric(descAdmScale, prometheus.GaugeValue, st.Scale)
	for _, r := range admissionReasons {
		v := 0.0
		for _, got := range st.Reasons {
			if got == r {
				v = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(descAdmOverloaded, prometheus.GaugeValue, v, r)
	}
	ch <- prometheus.MustNewConstMetric(descAdmP99, prometheus.GaugeValue, st.P99.Seconds())
	ch <- prometheus.MustNewConstMetric(descAdmBaseline, prometheus.GaugeValue, st.Baseline.Seconds())
	ch <- prometheus.MustNewConstMetric(descAdmTarget, prometheus.GaugeValue, st.Target.Seconds())
	quiet := 0.0
	if st.Quiet {
		quiet = 1
	}
	ch <- prometheus.MustNewConstMetric(descAdmQuiet, prometheus.GaugeValue, quiet)
	ch <- prometheus.MustNewConstMetric(descAdmL0, prometheus.GaugeValue, float64(st.L0Sublevels))
	ch <- prometheus.MustNewConstMetric(descAdmDebt, prometheus.GaugeValue, float64(st.CompactionDebt))
	ch <- prometheus.MustNewConstMetric(descAdmStalls, prometheus.CounterValue, float64(st.WriteStalls))
	ch <- prometheus.MustNewConstMetric(descAdmDiskSlow, prometheus.CounterValue, float64(st.DiskSlowEvents))
	ch <- prometheus.MustNewConstMetric(descAdmDecreases, prometheus.CounterValue, float64(st.Decreases))
	for _, r := range admissionReasons {
		ch <- prometheus.MustNewConstMetric(descAdmByReason, prometheus.CounterValue, float64(st.DecreasesByReason[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(descAdmFloor, prometheus.GaugeValue, st.MinScale)
	ch <- prometheus.MustNewConstMetric(descAdmCeiling, prometheus.GaugeValue, st.MaxScale)
	ch <- prometheus.MustNewConstMetric(descAdmCeilingNow, prometheus.GaugeValue, st.Ceiling)
	ch <- prometheus.MustNewConstMetric(descAdmUtil, prometheus.GaugeValue, st.Utilization)
	ch <- prometheus.MustNewConstMetric(descAdmNoise, prometheus.GaugeValue, st.Noise.Seconds())
	ch <- prometheus.MustNewConstMetric(descWriteRate, prometheus.GaugeValue, st.WriteRate)
}

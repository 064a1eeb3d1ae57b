package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

func TestHandlerExportsLoopFigures(t *testing.T) {
	m := New()
	th, err := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a, err := repair.NewAdmission(repair.AdmissionConfig{Throttles: []*repair.Throttle{th}})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchThrottles(th)
	m.WatchAdmission(a)
	st := reconcile.Stats{Sessions: 1, Rounds: 3, KeysTransferred: 7, Duration: 20 * time.Millisecond, Drains: 2, LargeDifferences: 1, PeakPendingBytes: 4096}
	st.A.KeysRepaired = 5
	st.B.Received.Records = 900
	st.B.Received.RecordKeys = 160
	st.A.Received.Sketches = 450
	m.ObserveSession(repair.SessionReport{ID: 1, Outcome: "repaired", Stats: st})
	m.ObserveSession(repair.SessionReport{ID: 2, Outcome: "not-ready"})
	m.ObserveFullRound(repair.FullRound{Partition: 2})
	m.ObserveTask(repair.TaskReport{Name: "scrub"})
	m.RebuildProgress(1, 4096)
	m.TombstonesPurged(2, 11)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`pebbleae_sessions_total{outcome="repaired"} 1`,
		`pebbleae_sessions_total{outcome="not-ready"} 1`,
		`pebbleae_session_round_trips_total 3`,
		`pebbleae_session_bytes_total{kind="records"} 900`,
		`pebbleae_session_bytes_total{kind="record_keys"} 160`,
		`pebbleae_session_bytes_total{kind="sketches"} 450`,
		`pebbleae_keys_repaired_total 5`,
		`pebbleae_keys_diverged_total 7`,
		`pebbleae_session_drains_total 2`,
		`pebbleae_session_large_differences_total 1`,
		`pebbleae_session_peak_pending_bytes 4096`,
		`pebbleae_full_rounds_total{partition="2"} 1`,
		`pebbleae_background_tasks_total{result="ok",task="scrub"} 1`,
		`pebbleae_rebuild_keys_scanned{partition="1"} 4096`,
		`pebbleae_tombstones_purged_total{partition="2"} 11`,
		`pebbleae_throttle_rate{throttle="scan",unit="bytes"} 1.048576e+06`,
		`pebbleae_admission_scale 1`,
		`pebbleae_admission_ceiling 1`,
		`pebbleae_admission_overloaded{reason="latency"} 0`,
		`pebbleae_session_duration_seconds_count{outcome="repaired"} 1`,
		// The Go runtime's collector (the process collector's figures
		// depend on the platform).
		"go_goroutines ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", body)
	}
}

package engine_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// BenchmarkFillEmptyReplica fills an empty replica from one of 1 000 000 keys
// (16-byte keys, 100-byte values, Pebble on disk) with one SyncAll, under
// session memory budgets side by side: 16 MiB, the default 64 MiB, and
// 1 TiB (no bound: every write held until the end, as sessions did before
// SessionConfig.MaxPendingBytes). It reports the peak Go heap in use
// during the session (sampled every 20 ms), the session's own peak of
// queued writes, its rounds and the bytes it moved.
//
//	go test ./engine -run '^$' -bench FillEmptyReplica -benchtime 1x
func BenchmarkFillEmptyReplica(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	e, err := engine.Open(src, &engine.Options{ReplicaID: "a"})
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 100)
	for i := 0; i < n; i += 1000 {
		batch := e.NewBatch()
		for j := i; j < i+1000; j++ {
			copy(value, fmt.Sprintf("value-%08d", j))
			if err := batch.Put(fmt.Appendf(nil, "user%012d", j), value); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(ctx, engine.NoSync); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	for _, budget := range []int64{16 << 20, reconcile.DefaultMaxPendingBytes, 1 << 40} {
		b.Run(fmt.Sprintf("budget=%dMiB", budget>>20), func(b *testing.B) {
			for i := range b.N {
				a, err := engine.Open(src, &engine.Options{ReplicaID: "a"})
				if err != nil {
					b.Fatal(err)
				}
				dst, err := engine.Open(filepath.Join(dir, fmt.Sprintf("dst-%d-%d", budget, i)), &engine.Options{ReplicaID: "b"})
				if err != nil {
					b.Fatal(err)
				}
				if err := a.WaitReady(ctx); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				var peak atomic.Uint64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						peak.Store(max(peak.Load(), ms.HeapInuse))
						select {
						case <-stop:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
				})
				b.StartTimer()
				all, err := reconcile.SyncAll(ctx, a, dst, reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxPendingBytes: budget}})
				b.StopTimer()
				close(stop)
				wg.Wait()
				if err != nil {
					b.Fatal(err)
				}
				st := all[0]
				if !st.Converged || st.B.KeysRepaired != n {
					b.Fatalf("%s: want convergence and %d keys repaired", st, n)
				}
				b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(st.PeakPendingBytes)/(1<<20), "peak-writes-MiB")
				b.ReportMetric(float64(st.Rounds), "rounds")
				b.ReportMetric(float64(st.BytesTotal())/(1<<20), "moved-MiB")
				_ = a.Close()
				_ = dst.Close()
			}
		})
	}
}

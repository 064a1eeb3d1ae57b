package reconcile_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// benchReplicas returns two memreplicas of n random 16-byte keys with
// 130-byte LWW values that differ in k keys: a third missing on B, a third
// newer on A, a third newer on B.
func benchReplicas(b *testing.B, n, k int) (*memreplica.Replica, *memreplica.Replica) {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(k)))
	ra, _ := memreplica.New(memreplica.Options{ID: "a"})
	rb, _ := memreplica.New(memreplica.Options{ID: "b"})
	val := make([]byte, 130)
	for i := range n {
		key := make([]byte, 16)
		for j := range key {
			key[j] = byte(rng.Uint32())
		}
		rec := record.NewLWW("a", record.Timestamp{WallTime: int64(1000 + i)}, val, false)
		ra.Set(key, rec)
		switch {
		case i >= k:
			rb.Set(key, rec)
		case i%3 == 0: // missing on B
		case i%3 == 1:
			rb.Set(key, rec)
			ra.Set(key, record.NewLWW("a", record.Timestamp{WallTime: int64(1 << 40)}, val, false))
		default:
			rb.Set(key, record.NewLWW("b", record.Timestamp{WallTime: int64(1 << 40)}, val, false))
		}
	}
	return ra, rb
}

// BenchmarkSync measures a session between replicas of N keys that differ in
// K keys (with sketches, and with the tree descent), and the naive baseline. Run with -benchtime=1x; the metrics are per
// session:
//
//	go test ./reconcile -run '^$' -bench BenchmarkSync -benchtime=1x
func BenchmarkSync(b *testing.B) {
	for _, n := range []int{100_000} {
		for _, k := range []int{0, 1, 100, 10_000} {
			for _, method := range []reconcile.Method{reconcile.MethodSketch, reconcile.MethodDescent, reconcile.MethodNaive} {
				name := fmt.Sprintf("N=%d/K=%d/%s", n, k, method)
				b.Run(name, func(b *testing.B) {
					var st reconcile.Stats
					for range b.N {
						b.StopTimer()
						ra, rb := benchReplicas(b, n, k)
						ra.Root(0)
						rb.Root(0)
						// Info is fetched once per peer by a repair loop (and by
						// SyncAll), not per partition session.
						ia, _ := ra.Info(context.Background())
						ib, _ := rb.Info(context.Background())
						b.StartTimer()
						var err error
						st, err = reconcile.SyncPartition(context.Background(), ra, rb, 0, reconcile.SyncOptions{
							Session: reconcile.SessionConfig{Method: method, Strict: true, InfoA: &ia, InfoB: &ib}})
						if err != nil || !st.Converged {
							b.Fatalf("sync: %v %s", err, st)
						}
					}
					b.ReportMetric(float64(st.Rounds), "rounds")
					b.ReportMetric(float64(st.BytesTotal()), "bytes_total")
					b.ReportMetric(float64(st.B.Total().Total()), "bytes_remote_side")
					b.ReportMetric(float64(st.BytesMetadata()), "bytes_metadata")
					if k > 0 {
						b.ReportMetric(float64(st.BytesMetadata())/float64(k), "meta_bytes/diff")
						b.ReportMetric(float64(st.KeysTransferred)/float64(k), "transferred/diff")
					}
				})
			}
		}
	}
}

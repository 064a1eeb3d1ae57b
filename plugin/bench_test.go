package plugin_test

import (
	"fmt"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// BenchmarkSessionTransport times one session between two replicas of N
// keys differing in K keys, with the replicas called directly and through
// gRPC over bufconn, and reports the bytes on the wire per session.
//
//	go test ./plugin -run '^$' -bench SessionTransport -benchtime 20x
func BenchmarkSessionTransport(b *testing.B) {
	const n, k = 20000, 100
	for _, transport := range []string{"direct", "grpc"} {
		b.Run(fmt.Sprintf("transport=%s/N=%d/K=%d", transport, n, k), func(b *testing.B) {
			ctx := testCtx(b)
			ea, eb := openEngine(b, "a", record.ModeLWW), openEngine(b, "b", record.ModeLWW)
			batchFill := func(e *engine.Engine, prefix string, count int) {
				bt := e.NewBatch()
				for i := range count {
					if err := bt.Put(fmt.Appendf(nil, "%s%08d", prefix, i*7919%1000003), fmt.Appendf(nil, "value-%0120d", i)); err != nil {
						b.Fatal(err)
					}
				}
				if err := bt.Commit(ctx, engine.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			// Identical records on both sides: copy a's records into b.
			batchFill(ea, "k", n)
			for res, start := (reconcile.RangeScanResult{More: true}), []byte(nil); res.More; start = res.Next {
				var err error
				res, err = ea.RangeScan(ctx, reconcile.RangeScanRequest{Range: reconcile.KeyRange{Start: start}, WithRecords: true, Limit: 5000})
				if err != nil {
					b.Fatal(err)
				}
				if err := eb.Apply(ctx, 0, res.Entries); err != nil {
					b.Fatal(err)
				}
			}
			var ra, rb reconcile.Replica = ea, eb
			var ca, cb interface{ ResetWireStats() }
			if transport == "grpc" {
				pa, pb := inProcess(b, ea, nil), inProcess(b, eb, nil)
				ra, rb, ca, cb = pa, pb, pa, pb
				defer func() {
					ws := pa.WireStats().Wire() + pb.WireStats().Wire()
					b.ReportMetric(float64(ws)/float64(b.N), "wire-B/op")
				}()
			}
			var modelled uint64
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				// K fresh differing keys on a.
				bt := ea.NewBatch()
				for j := range k {
					_ = bt.Put(fmt.Appendf(nil, "k%08d-%d", (i*k+j)*104729%1000003, i), []byte("new"))
				}
				if err := bt.Commit(ctx, engine.NoSync); err != nil {
					b.Fatal(err)
				}
				if ca != nil && i == 0 {
					ca.ResetWireStats()
					cb.ResetWireStats()
				}
				b.StartTimer()
				st, err := reconcile.SyncPartition(ctx, ra, rb, 0, reconcile.SyncOptions{})
				if err != nil {
					b.Fatal(err)
				}
				modelled += st.BytesTotal()
			}
			b.ReportMetric(float64(modelled)/float64(b.N), "model-B/op")
		})
	}
}

// BenchmarkStoreWrite times one Write of a batch of 100 new keys (NoSync)
// in process and through gRPC over bufconn.
//
//	go test ./plugin -run '^$' -bench StoreWrite
func BenchmarkStoreWrite(b *testing.B) {
	for _, transport := range []string{"direct", "grpc"} {
		b.Run("transport="+transport, func(b *testing.B) {
			ctx := testCtx(b)
			e := openEngine(b, "a", record.ModeLWW)
			var kv engine.KV = e
			if transport == "grpc" {
				kv = inProcess(b, e, nil)
			}
			value := make([]byte, 100)
			var wb engine.WriteBatch
			n := 0
			b.ResetTimer()
			for b.Loop() {
				wb.Reset()
				for range 100 {
					n++
					wb.Put(fmt.Appendf(nil, "k%015d", n*7919%100000007), value)
				}
				if err := kv.Write(ctx, &wb, engine.NoSync); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStoreScan times a full Scan of 200,000 keys in process and
// through gRPC over bufconn, and reports keys/s.
//
//	go test ./plugin -run '^$' -bench StoreScan
func BenchmarkStoreScan(b *testing.B) {
	const n = 200_000
	for _, transport := range []string{"direct", "grpc"} {
		b.Run("transport="+transport, func(b *testing.B) {
			ctx := testCtx(b)
			e := openEngine(b, "a", record.ModeLWW)
			value := make([]byte, 100)
			var wb engine.WriteBatch
			for i := range n {
				wb.Put(fmt.Appendf(nil, "k%015d", i*7919%n), value)
				if wb.Len() == 1000 {
					if err := e.Write(ctx, &wb, engine.NoSync); err != nil {
						b.Fatal(err)
					}
					wb.Reset()
				}
			}
			var kv engine.KV = e
			if transport == "grpc" {
				kv = inProcess(b, e, nil)
			}
			b.ResetTimer()
			for b.Loop() {
				count := 0
				if _, err := kv.Scan(ctx, engine.ScanRequest{}, func(engine.Item) error { count++; return nil }); err != nil || count != n {
					b.Fatal(count, err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkStoreScanShort times a Scan of 10 keys (Limit) in process and
// through gRPC over bufconn: what a short scan costs beyond its keys (a
// Scan's first chunk grows from 64 KiB instead of taking a whole chunk).
//
//	go test ./plugin -run '^$' -bench StoreScanShort
func BenchmarkStoreScanShort(b *testing.B) {
	for _, transport := range []string{"direct", "grpc"} {
		b.Run("transport="+transport, func(b *testing.B) {
			ctx := testCtx(b)
			e := openEngine(b, "a", record.ModeLWW)
			var wb engine.WriteBatch
			for i := range 1000 {
				wb.Put(fmt.Appendf(nil, "k%06d", i), make([]byte, 100))
			}
			if err := e.Write(ctx, &wb, engine.NoSync); err != nil {
				b.Fatal(err)
			}
			var kv engine.KV = e
			if transport == "grpc" {
				kv = inProcess(b, e, nil)
			}
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				if _, err := kv.Scan(ctx, engine.ScanRequest{Limit: 10}, func(engine.Item) error { n++; return nil }); err != nil || n != 10 {
					b.Fatal(n, err)
				}
			}
		})
	}
}

package plugin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// testCtx returns a context bounded so that a hung call fails the test
// instead of hanging it.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openEngine opens a real engine on a temporary directory.
func openEngine(t testing.TB, id record.ReplicaID, mode record.Mode, splits ...string) *engine.Engine {
	t.Helper()
	pn := merkle.SinglePartition()
	if len(splits) > 0 {
		var pts [][]byte
		for _, s := range splits {
			pts = append(pts, []byte(s))
		}
		var err error
		if pn, err = merkle.SplitPoints(pts); err != nil {
			t.Fatal(err)
		}
	}
	e, err := engine.Open(t.TempDir(), &engine.Options{
		ReplicaID:          id,
		Mode:               mode,
		Partitioner:        pn,
		Tree:               merkle.Params{LeafSize: 4},
		CheckpointInterval: -1,
		MaxValueSize:       1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// inProcess returns a client for e over bufconn.
func inProcess(t testing.TB, e *engine.Engine, sopts *plugin.ServerOptions) *plugin.Client {
	t.Helper()
	c, err := plugin.InProcess(e, sopts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fill writes n keys key000..., values of size bytes, without sync.
func fill(t testing.TB, w putter, prefix string, n, size int) {
	fillWith(t, w, prefix, n, size, engine.NoSync)
}

type putter interface {
	Put(ctx context.Context, key, value []byte, wo *engine.WriteOptions) error
}

// fillWith is fill with write options.
func fillWith(t testing.TB, w putter, prefix string, n, size int, wo *engine.WriteOptions) {
	t.Helper()
	for i := range n {
		v := fmt.Appendf(nil, "value-%s-%d-", prefix, i)
		for len(v) < size {
			v = append(v, byte('a'+i%26))
		}
		if err := w.Put(testCtx(t), fmt.Appendf(nil, "%s%04d", prefix, i), v, wo); err != nil {
			t.Fatal(err)
		}
	}
}

// allEntries returns every entry (with record) of partition 0 of r.
func allEntries(t testing.TB, r reconcile.Replica) []reconcile.Entry {
	t.Helper()
	var out []reconcile.Entry
	req := reconcile.RangeScanRequest{WithRecords: true, Limit: engine.MaxKeysPerRequest}
	for {
		res, err := r.RangeScan(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Entries...)
		if !res.More {
			return out
		}
		req.Range.Start = res.Next
	}
}

// rootOf returns the root fingerprint of partition 0 of r.
func rootOf(t testing.TB, r reconcile.Replica) reconcile.Fingerprint {
	t.Helper()
	h, err := r.RangeHash(testCtx(t), reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
	if err != nil {
		t.Fatal(err)
	}
	return h[0].Fingerprint
}

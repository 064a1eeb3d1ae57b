package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	// nil and empty byte slices print alike: the answers must be equal up
	// to that.
	if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
		t.Fatalf("%s through gRPC differs from the engine:\n got %+v\nwant %+v", what, got, want)
	}
}

// TestRPCsMatchEngine calls every anti-entropy RPC through bufconn and
// compares the answers with calling the engine directly.
func TestRPCsMatchEngine(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW, "k0100", "k0200")
	c := inProcess(t, e, &plugin.ServerOptions{ScanChunkBytes: 512, CompressAbove: 4 << 10})
	fill(t, e, "k", 300, 100)
	if err := e.Maintain(ctx); err != nil { // the record estimates exact
		t.Fatal(err)
	}

	gi, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wi, _ := e.Info(ctx)
	var records uint64
	for _, p := range wi.Partitions {
		records += p.Records
	}
	if records != 300 {
		t.Fatalf("the engine's Info estimates %d records, want 300: %+v", records, wi.Partitions)
	}
	if gi.WallTime <= 0 || gi.WallTime > wi.WallTime || gi.MaxClockOffset != wi.MaxClockOffset {
		t.Fatalf("Info clock through gRPC: %d, %s; engine: %d, %s", gi.WallTime, gi.MaxClockOffset, wi.WallTime, wi.MaxClockOffset)
	}
	gi.WallTime = wi.WallTime // read at another instant
	mustEqual(t, "Info", gi, wi)

	for _, req := range []reconcile.RangeHashRequest{
		{Partition: 0, Ranges: []reconcile.KeyRange{{}}},
		{Partition: 1, Ranges: []reconcile.KeyRange{{}}, Fanout: 4, Depth: 3},
		{Partition: 2, Ranges: []reconcile.KeyRange{{Start: []byte("k0200"), End: []byte("k0250")}, {Start: []byte("k0250")}}, Fanout: 3},
		{Partition: 0, Ranges: []reconcile.KeyRange{{End: []byte("k0050")}, {Start: []byte("k0050"), End: []byte("k0099")}}, Fanout: 256, Depth: 4},
	} {
		got, err := c.RangeHash(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := e.RangeHash(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		mustEqual(t, fmt.Sprintf("RangeHash %+v", req), got, want)
	}

	for _, req := range []reconcile.RangeScanRequest{
		{Partition: 0, Range: reconcile.KeyRange{}},
		{Partition: 1, Range: reconcile.KeyRange{}, WithRecords: true},
		{Partition: 1, Range: reconcile.KeyRange{Start: []byte("k0120")}, WithRecords: true, Limit: 7},
		{Partition: 2, Range: reconcile.KeyRange{Start: []byte("k0210"), End: []byte("k0290")}, Limit: 13},
		{Partition: 0, Range: reconcile.KeyRange{}, WithRecords: true, Limit: 1000},
	} {
		// Page through, comparing every page.
		for page := 0; ; page++ {
			got, err := c.RangeScan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.RangeScan(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, fmt.Sprintf("RangeScan %+v page %d", req, page), got, want)
			if !got.More {
				break
			}
			req.Range.Start = got.Next
		}
	}

	keys := [][]byte{[]byte("k0150"), []byte("k0101"), []byte("k0199"), []byte("k0150"), []byte("k0180x")}
	got, err := c.Fetch(ctx, 1, keys)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := e.Fetch(ctx, 1, keys)
	mustEqual(t, "Fetch", got, want)

	// Sketches.
	skReq := reconcile.RangeSketchRequest{Partition: 1, Ranges: []reconcile.KeyRange{{Start: []byte("k0100"), End: []byte("k0150")}, {Start: []byte("k0150"), End: []byte("k0160")}}, Cells: 30, Strata: 4}
	gs, err := c.RangeSketch(ctx, skReq)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := e.RangeSketch(ctx, skReq)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "RangeSketch", gs, ws)
	var ids []uint64
	for _, en := range want[:2] {
		ids = append(ids, reconcile.SketchID(en.Digest))
	}
	fbReq := reconcile.FetchByHashRequest{Partition: 1, Ranges: []reconcile.KeyRange{{}}, IDs: ids}
	gf, err := c.FetchByHash(ctx, fbReq)
	if err != nil {
		t.Fatal(err)
	}
	wf, _ := e.FetchByHash(ctx, fbReq)
	for i := range wf {
		wf[i].Digest = 0 // digests do not travel
	}
	mustEqual(t, "FetchByHash", gf, wf)
	if len(gf) != 2 {
		t.Fatalf("FetchByHash: %d entries", len(gf))
	}

	// Apply through gRPC into b, directly into b2: the same trees.
	b, b2 := openEngine(t, "b", record.ModeLWW, "k0100", "k0200"), openEngine(t, "b2", record.ModeLWW, "k0100", "k0200")
	cb := inProcess(t, b, nil)
	all, err := e.RangeScan(ctx, reconcile.RangeScanRequest{Partition: 1, WithRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	half := len(all.Entries) / 2
	if err := cb.Apply(ctx, 1, all.Entries[:half]); err != nil {
		t.Fatal(err)
	}
	confirm := []reconcile.KeyRange{{}, {Start: []byte("k0110"), End: []byte("k0120")}}
	gotHashes, err := cb.ApplyAndHash(ctx, 1, all.Entries[half:], confirm)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Apply(ctx, 1, all.Entries); err != nil {
		t.Fatal(err)
	}
	root := func(r reconcile.Replica) reconcile.Fingerprint {
		h, err := r.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 1, Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			t.Fatal(err)
		}
		return h[0].Fingerprint
	}
	wantHashes, _ := b2.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 1, Ranges: confirm})
	mustEqual(t, "ApplyAndHash", gotHashes, wantHashes)
	if root(b) != root(b2) || root(b) != root(e) {
		t.Fatalf("roots after Apply: via gRPC %v, direct %v, source %v", root(b), root(b2), root(e))
	}

	// Status.
	st, err := c.Status(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "a" || len(st.Partitions) != 3 {
		t.Fatalf("Status = %+v", st)
	}
	for _, p := range st.Partitions {
		h, _ := e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p.ID, Ranges: []reconcile.KeyRange{{}}})
		if !p.Ready || p.Root == nil || *p.Root != h[0].Fingerprint || p.Leaves == 0 {
			t.Fatalf("Status partition %+v, root want %v", p, h[0].Fingerprint)
		}
	}
	if _, err := c.Repair(ctx, "b", nil, false); !errors.Is(err, plugin.ErrRepairUnavailable) || status.Code(err) != codes.Unimplemented {
		t.Fatalf("Repair without a repairer: %v", err)
	}
	wire := c.WireStats()
	if wire.Calls == 0 || wire.PayloadReceived == 0 || wire.MessagesReceived <= wire.Calls {
		t.Fatalf("wire stats not counted (expected several messages per chunked scan): %+v", wire)
	}
}

// TestKV runs Put/Get/Delete and the causal calls through gRPC.
func TestKV(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	c := inProcess(t, e, nil)
	if err := c.Put(ctx, []byte("x"), []byte("1"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, []byte("x")); err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := e.Get(ctx, []byte("x")); err != nil || string(v) != "1" {
		t.Fatalf("engine Get = %q, %v", v, err)
	}
	if err := c.Put(ctx, []byte("empty"), nil, engine.NoSync); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, []byte("empty")); err != nil || len(v) != 0 {
		t.Fatalf("Get(empty) = %q, %v", v, err)
	}
	if err := c.Delete(ctx, []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(ctx, []byte("x"))
	if !errors.Is(err, engine.ErrNotFound) || status.Code(err) != codes.NotFound {
		t.Fatalf("Get after Delete: %v (code %v)", err, status.Code(err))
	}
	if _, err := c.GetVersions(ctx, []byte("x")); !errors.Is(err, engine.ErrWrongMode) || status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("GetVersions in LWW mode: %v", err)
	}

	ce := openEngine(t, "c", record.ModeCausal)
	cc := inProcess(t, ce, nil)
	if err := cc.Put(ctx, []byte("k"), []byte("v1"), nil); err != nil {
		t.Fatal(err)
	}
	if err := ce.Put(ctx, []byte("k"), []byte("v2"), nil); err != nil {
		t.Fatal(err)
	}
	vs, err := cc.GetVersions(ctx, []byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ce.GetVersions(ctx, []byte("k"))
	mustEqual(t, "GetVersions", vs, want)
	if len(vs.Values) != 2 {
		t.Fatalf("want two siblings, got %q", vs.Values)
	}
	if err := cc.PutContext(ctx, []byte("k"), []byte("v3"), vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	vs, _ = cc.GetVersions(ctx, []byte("k"))
	if len(vs.Values) != 1 || string(vs.Values[0]) != "v3" {
		t.Fatalf("after PutContext: %q", vs.Values)
	}
	if err := cc.DeleteContext(ctx, []byte("k"), vs.Context, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Get(ctx, []byte("k")); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Get after DeleteContext: %v", err)
	}
	err = cc.PutContext(ctx, []byte("k"), []byte("v"), []byte("garbage"), nil)
	if !errors.Is(err, record.ErrMalformedContext) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("PutContext with a garbage context: %v", err)
	}
}

// TestBadRequests sends malformed requests: each gets the right code and
// typed error, changes nothing, and the server keeps serving.
func TestBadRequests(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	c := inProcess(t, e, &plugin.ServerOptions{MaxMessageSize: 4 << 20})
	fill(t, e, "k", 50, 20)
	rootOf := func() reconcile.Fingerprint {
		h, err := e.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			t.Fatal(err)
		}
		return h[0].Fingerprint
	}
	before := rootOf()
	good, err := e.Fetch(ctx, 0, [][]byte{[]byte("k0001")})
	if err != nil || len(good) != 1 {
		t.Fatal(err)
	}
	lww := record.NewLWW("z", record.Timestamp{WallTime: time.Now().UnixNano()}, []byte("v"), false).Encode()
	tooManyKeys := make([][]byte, engine.MaxKeysPerRequest+1)
	for i := range tooManyKeys {
		tooManyKeys[i] = fmt.Appendf(nil, "k%06d", i)
	}
	inverted := reconcile.KeyRange{Start: []byte("z"), End: []byte("a")}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		is   []error
	}{
		{"inverted range hash", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{inverted}})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"inverted range scan", func() error {
			_, err := c.RangeScan(ctx, reconcile.RangeScanRequest{Range: inverted})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"unknown partition hash", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 7, Ranges: []reconcile.KeyRange{{}}})
			return err
		}, codes.NotFound, []error{engine.ErrBadRequest, merkle.ErrUnknownPartition}},
		{"unknown partition scan", func() error {
			_, err := c.RangeScan(ctx, reconcile.RangeScanRequest{Partition: 9})
			return err
		}, codes.NotFound, []error{merkle.ErrUnknownPartition}},
		{"unknown partition apply", func() error { return c.Apply(ctx, 3, good) }, codes.NotFound, []error{merkle.ErrUnknownPartition}},
		{"fanout 1", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: 1})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"fanout 257", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: 257})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"negative fanout (refused locally)", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: -2})
			return err
		}, codes.Unknown, []error{engine.ErrBadRequest}},
		{"depth 5", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Fanout: 4, Depth: 5})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"depth without fanout", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}, Depth: 2})
			return err
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"too many ranges", func() error {
			_, err := c.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: make([]reconcile.KeyRange, engine.MaxRanges+1)})
			return err
		}, codes.ResourceExhausted, []error{engine.ErrBadRequest, plugin.ErrLimitExceeded}},
		{"too many keys fetch", func() error {
			_, err := c.Fetch(ctx, 0, tooManyKeys)
			return err
		}, codes.ResourceExhausted, []error{engine.ErrBadRequest, plugin.ErrLimitExceeded}},
		{"scan limit too large", func() error {
			_, err := c.RangeScan(ctx, reconcile.RangeScanRequest{Limit: engine.MaxKeysPerRequest + 1})
			return err
		}, codes.ResourceExhausted, []error{engine.ErrBadRequest}},
		{"empty key fetch", func() error {
			_, err := c.Fetch(ctx, 0, [][]byte{nil})
			return err
		}, codes.InvalidArgument, []error{engine.ErrEmptyKey}},
		{"reserved key fetch", func() error {
			_, err := c.Fetch(ctx, 0, [][]byte{[]byte("\xff\xffae\x00x")})
			return err
		}, codes.InvalidArgument, []error{engine.ErrReservedKey}},
		{"apply empty record", func() error {
			return c.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("k0001")}})
		}, codes.InvalidArgument, []error{record.ErrMalformedRecord}},
		{"apply truncated record", func() error {
			// Cut inside the timestamp (an LWW record's value is the rest
			// of the record, so a cut inside it is another valid record).
			return c.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("k0001"), Record: good[0].Record[:6]}})
		}, codes.InvalidArgument, []error{engine.ErrBadRequest, record.ErrMalformedRecord}},
		{"apply nil key", func() error {
			return c.Apply(ctx, 0, []reconcile.Entry{{Record: lww}})
		}, codes.InvalidArgument, []error{engine.ErrBadRequest}},
		{"apply good then bad (nothing written)", func() error {
			return c.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("new"), Record: lww}, {Key: []byte("k0002"), Record: []byte{0xee}}})
		}, codes.InvalidArgument, []error{engine.ErrBadRequest, record.ErrUnsupportedRecordVersion}},
		{"apply causal record into LWW", func() error {
			rec := record.CausalPut(record.Record{}, nil, "z", record.Timestamp{WallTime: 1}, []byte("v"), false).Encode()
			return c.Apply(ctx, 0, []reconcile.Entry{{Key: []byte("k0003"), Record: rec}})
		}, codes.InvalidArgument, []error{record.ErrModeMismatch}},
		{"oversized value put", func() error {
			return c.Put(ctx, []byte("big"), make([]byte, 2<<20), nil)
		}, codes.ResourceExhausted, []error{engine.ErrValueTooLarge}},
		{"message over the server limit", func() error {
			return c.Put(ctx, []byte("huge"), make([]byte, 5<<20), nil)
		}, codes.ResourceExhausted, []error{plugin.ErrLimitExceeded}},
		{"empty key put", func() error { return c.Put(ctx, nil, []byte("v"), nil) }, codes.InvalidArgument, []error{engine.ErrEmptyKey}},
		{"key too large", func() error { return c.Put(ctx, make([]byte, 5000), []byte("v"), nil) }, codes.InvalidArgument, []error{engine.ErrKeyTooLarge}},
		{"get reserved", func() error {
			_, err := c.Get(ctx, []byte("\xff\xffae\x00"))
			return err
		}, codes.InvalidArgument, []error{engine.ErrReservedKey}},
		{"expired deadline", func() error {
			dctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
			defer cancel()
			<-dctx.Done()
			_, err := c.Info(dctx)
			return err
		}, codes.Unknown, []error{context.DeadlineExceeded}},
		{"deadline during the call", func() error {
			dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			_, err := c.RangeScan(dctx, reconcile.RangeScanRequest{Range: reconcile.KeyRange{Start: []byte("k")}, Limit: 1})
			for err == nil && dctx.Err() == nil {
				_, err = c.RangeScan(dctx, reconcile.RangeScanRequest{Range: reconcile.KeyRange{Start: []byte("k")}, Limit: 1})
			}
			if err == nil {
				// The deadline passed between two calls: the next one must
				// fail with it.
				_, err = c.RangeScan(dctx, reconcile.RangeScanRequest{Range: reconcile.KeyRange{Start: []byte("k")}, Limit: 1})
			}
			return err
		}, codes.Unknown, []error{context.DeadlineExceeded}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tc.code != codes.Unknown && status.Code(err) != tc.code {
				t.Errorf("code %v, want %v: %v", status.Code(err), tc.code, err)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not match %v", err, want)
				}
			}
			if after := rootOf(); after != before {
				t.Errorf("the data changed: root %v -> %v", before, after)
			}
			if _, err := c.Get(ctx, []byte("k0001")); err != nil {
				t.Errorf("server no longer serving: %v", err)
			}
		})
	}
	if _, err := e.Get(ctx, []byte("new")); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a rejected Apply wrote: %v", err)
	}
}

// TestClosedEngine: calls on a closed engine fail with UNAVAILABLE matching
// engine.ErrClosed.
func TestClosedEngine(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	c := inProcess(t, e, nil)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Info(ctx)
	if !errors.Is(err, engine.ErrClosed) || !errors.Is(err, plugin.ErrUnavailable) || status.Code(err) != codes.Unavailable {
		t.Fatalf("Info on a closed engine: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx); !errors.Is(err, plugin.ErrClosed) {
		t.Fatalf("Info on a closed client: %v", err)
	}
}

// TestCompression: record answers above the threshold are compressed, and
// the counters show it.
func TestCompression(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	c := inProcess(t, e, &plugin.ServerOptions{CompressAbove: 8 << 10})
	fill(t, e, "k", 200, 1000) // compressible values
	c.ResetWireStats()
	res, err := c.RangeScan(ctx, reconcile.RangeScanRequest{WithRecords: true})
	if err != nil || len(res.Entries) != 200 {
		t.Fatalf("scan: %d entries, %v", len(res.Entries), err)
	}
	ws := c.WireStats()
	if ws.CompressedReceived == 0 || ws.WireReceived*2 > ws.PayloadReceived {
		t.Fatalf("record stream not compressed: %+v", ws)
	}
	// Small answers stay plain.
	c.ResetWireStats()
	if _, err := c.Fetch(ctx, 0, [][]byte{[]byte("k0001")}); err != nil {
		t.Fatal(err)
	}
	if ws := c.WireStats(); ws.CompressedReceived != 0 {
		t.Fatalf("small answer compressed: %+v", ws)
	}
	// Apply with a big request is compressed on the way out.
	b := openEngine(t, "b", record.ModeLWW)
	cb := inProcess(t, b, nil)
	cb.ResetWireStats()
	if err := cb.Apply(ctx, 0, res.Entries); err != nil {
		t.Fatal(err)
	}
	if ws := cb.WireStats(); ws.CompressedSent != 1 || ws.WireSent*2 > ws.PayloadSent {
		t.Fatalf("Apply not compressed: %+v", ws)
	}
	got, _ := b.RangeScan(ctx, reconcile.RangeScanRequest{WithRecords: true})
	if len(got.Entries) != 200 || !bytes.Equal(got.Entries[199].Record, res.Entries[199].Record) {
		t.Fatal("compressed Apply lost records")
	}
}

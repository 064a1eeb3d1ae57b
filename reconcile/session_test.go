package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestSessionDataDriven runs the scripts of testdata/session: stepwise
// sessions between two memreplicas. Commands:
//
//	init [leaf=N] [mode=lww|causal]        fresh replicas a and b
//	put side=a|b key=K ts=T [writer=W] [value=V] [del]   raw LWW write
//	sync [fanout=N] [depth=N] [naive]      run a strict session, print rounds
//	dump                                   both replicas' records
func TestSessionDataDriven(t *testing.T) {
	var reps [2]*memreplica.Replica
	datadriven.RunTest(t, "testdata/session", func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "init":
			leaf := 4
			if d.HasArg("leaf") {
				d.ScanArgs(t, "leaf", &leaf)
			}
			for i, id := range []record.ReplicaID{"a", "b"} {
				reps[i], _ = memreplica.New(memreplica.Options{ID: id, LeafSize: uint32(leaf)})
			}
			return ""
		case "put":
			var side, key string
			var ts int
			d.ScanArgs(t, "side", &side)
			d.ScanArgs(t, "key", &key)
			d.ScanArgs(t, "ts", &ts)
			writer, value := side, "v"+strconv.Itoa(ts)
			if d.HasArg("writer") {
				d.ScanArgs(t, "writer", &writer)
			}
			if d.HasArg("value") {
				d.ScanArgs(t, "value", &value)
			}
			r := reps[0]
			if side == "b" {
				r = reps[1]
			}
			r.Set([]byte(key), record.NewLWW(record.ReplicaID(writer), record.Timestamp{WallTime: int64(ts)}, []byte(value), d.HasArg("del")))
			return ""
		case "sync":
			// The scripts test the descent (or the naive baseline).
			cfg := reconcile.SessionConfig{Strict: true, Method: reconcile.MethodDescent}
			if d.HasArg("naive") {
				cfg.Method = reconcile.MethodNaive
			}
			if d.HasArg("fanout") {
				d.ScanArgs(t, "fanout", &cfg.Fanout)
			}
			if d.HasArg("depth") {
				d.ScanArgs(t, "depth", &cfg.MaxDepth)
			}
			ctx := context.Background()
			ia, _ := reps[0].Info(ctx)
			ib, _ := reps[1].Info(ctx)
			cfg.InfoA, cfg.InfoB = &ia, &ib
			newSession := reconcile.NewSession
			if cfg.Method == reconcile.MethodNaive {
				newSession = reconcile.NewNaiveSession
			}
			s, err := newSession(cfg)
			if err != nil {
				return err.Error()
			}
			var b strings.Builder
			for step, round := s.Next(), 1; !step.Done; step, round = s.Next(), round+1 {
				var resps []reconcile.Response
				for _, req := range step.Requests {
					fmt.Fprintf(&b, "%d %s %s\n", round, req.Side, describe(req))
					resps = append(resps, reconcile.Call(ctx, [2]reconcile.Replica{reps[0], reps[1]}[req.Side], req))
				}
				s.Deliver(resps...)
			}
			st := s.Stats()
			fmt.Fprintf(&b, "rounds=%d compared=%d transferred=%d repaired=a:%d,b:%d converged=%t err=%v\n",
				st.Rounds, st.KeysCompared, st.KeysTransferred, st.A.KeysRepaired, st.B.KeysRepaired, st.Converged, s.Err())
			return b.String()
		case "dump":
			var b strings.Builder
			for i, r := range reps {
				for _, e := range r.Dump() {
					rec, _ := record.DecodeRecord(e.Record)
					w := rec.Winner()
					v := string(w.Value)
					if w.Tombstone {
						v = "<deleted>"
					}
					fmt.Fprintf(&b, "%s %s %s@%d %s\n", []string{"a", "b"}[i], e.Key, w.Dot.Replica, w.Timestamp.WallTime, v)
				}
			}
			return b.String()
		}
		return "unknown command " + d.Cmd
	})
}

func describe(req reconcile.Request) string {
	switch req.Kind {
	case reconcile.RequestRangeHash:
		var rs []string
		for _, r := range req.RangeHash.Ranges {
			rs = append(rs, r.String())
		}
		return fmt.Sprintf("RangeHash fanout=%d depth=%d %s", req.RangeHash.Fanout, req.RangeHash.Depth, strings.Join(rs, " "))
	case reconcile.RequestRangeScan:
		return fmt.Sprintf("RangeScan records=%t %s", req.RangeScan.WithRecords, req.RangeScan.Range)
	case reconcile.RequestFetch:
		return fmt.Sprintf("Fetch %q", req.Keys)
	case reconcile.RequestApply:
		var ks []string
		for _, e := range req.Entries {
			ks = append(ks, string(e.Key))
		}
		return fmt.Sprintf("Apply %q", ks)
	}
	return req.Kind.String()
}

// TestSessionHashRangesLimit checks that a descent with more differing
// ranges than HashRangesLimit hashes them over several rounds, never asking
// a replica for more ranges than it accepts, and still converges.
func TestSessionHashRangesLimit(t *testing.T) {
	ctx := context.Background()
	var reps [2]*memreplica.Replica
	for i, id := range []record.ReplicaID{"a", "b"} {
		reps[i], _ = memreplica.New(memreplica.Options{ID: id, LeafSize: 2})
	}
	for i := range 400 {
		rec := record.NewLWW("a", record.Timestamp{WallTime: int64(i + 1)}, []byte("v"), false)
		key := fmt.Appendf(nil, "k%04d", i)
		reps[0].Set(key, rec)
		if i%7 != 0 {
			reps[1].Set(key, rec)
		}
	}
	ia, _ := reps[0].Info(ctx)
	ib, _ := reps[1].Info(ctx)
	const limit = 3
	s, err := reconcile.NewSession(reconcile.SessionConfig{Strict: true, InfoA: &ia, InfoB: &ib, Fanout: 4, MaxDepth: 1, HashRangesLimit: limit, Method: reconcile.MethodDescent})
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	for step := s.Next(); !step.Done; step = s.Next() {
		var resps []reconcile.Response
		for _, req := range step.Requests {
			if req.Kind == reconcile.RequestRangeHash {
				if n := len(req.RangeHash.Ranges); n > limit {
					t.Fatalf("RangeHash of %d ranges > limit %d", n, limit)
				} else {
					most = max(most, n)
				}
			}
			resps = append(resps, reconcile.Call(ctx, [2]reconcile.Replica{reps[0], reps[1]}[req.Side], req))
		}
		s.Deliver(resps...)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if !st.Converged || st.B.KeysRepaired != 58 || most != limit {
		t.Fatalf("converged %t, repaired %d on B (want 58), largest RangeHash %d ranges (want %d)", st.Converged, st.B.KeysRepaired, most, limit)
	}
	t.Logf("%d rounds", st.Rounds)
}

// TestNewSessionRefusesBadConfig: each configuration NewSession cannot run
// is an error wrapping ErrInvalidSessionConfig.
func TestNewSessionRefusesBadConfig(t *testing.T) {
	for _, cfg := range []reconcile.SessionConfig{
		{Fanout: 1},
		{Fanout: -3},
		{MaxDepth: -1},
		{ScanLimit: -1},
		{MaxPendingBytes: -1},
		{Method: "fast"},
		{Method: reconcile.MethodNone},
	} {
		if _, err := reconcile.NewSession(cfg); !errors.Is(err, reconcile.ErrInvalidSessionConfig) {
			t.Errorf("%+v: err %v, want one wrapping ErrInvalidSessionConfig", cfg, err)
		}
	}
	if _, err := reconcile.NewSession(reconcile.SessionConfig{}); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}

// TestSessionMethodFollowsCapabilities: a session uses what both replicas
// declare in Info.Capabilities (memreplica declares only CapSketch: auto
// picks sketches), a method asked for and not declared by both fails with
// ErrUnsupported before anything moves, and a declared one is used.
func TestSessionMethodFollowsCapabilities(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		method  reconcile.Method
		want    reconcile.Method
		wantErr error
	}{
		{reconcile.MethodAuto, reconcile.MethodSketch, nil},
		{reconcile.MethodSketch, reconcile.MethodSketch, nil},
		{reconcile.MethodDescent, reconcile.MethodDescent, nil},
		{reconcile.MethodSymbols, "", reconcile.ErrUnsupported},
	} {
		var reps [2]*memreplica.Replica
		for i, id := range []record.ReplicaID{"a", "b"} {
			reps[i], _ = memreplica.New(memreplica.Options{ID: id, LeafSize: 4})
		}
		for i := range 200 {
			rec := record.NewLWW("a", record.Timestamp{WallTime: int64(i + 1)}, []byte("v"), false)
			reps[0].Set(fmt.Appendf(nil, "k%03d", i), rec)
			if i%10 != 0 {
				reps[1].Set(fmt.Appendf(nil, "k%03d", i), rec)
			}
		}
		st, err := reconcile.SyncPartition(ctx, reps[0], reps[1], 0, reconcile.SyncOptions{Session: reconcile.SessionConfig{Method: tc.method, Strict: true}})
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || st.KeysRepaired() != 0 || reps[1].Len() != 180 {
				t.Errorf("method %q: err %v, %d repaired, B holds %d; want %v and nothing moved", tc.method, err, st.KeysRepaired(), reps[1].Len(), tc.wantErr)
			}
			continue
		}
		if err != nil || !st.Converged || st.Method != tc.want || st.KeysRepaired() != 20 {
			t.Errorf("method %q: err %v, converged %t, used %q (want %q), %d repaired", tc.method, err, st.Converged, st.Method, tc.want, st.KeysRepaired())
		}
	}
}

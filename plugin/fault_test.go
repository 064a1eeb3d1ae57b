package plugin_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/plugin/mock"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"go.uber.org/mock/gomock"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// delegate makes m answer every read like real, over gRPC. It declares
// none of the contract's optional calls (the tests script only the basic
// ones).
func delegate(m *mock.MockReplica, real reconcile.Replica) {
	m.EXPECT().Info(gomock.Any()).DoAndReturn(func(ctx context.Context) (reconcile.Info, error) {
		info, err := real.Info(ctx)
		info.Capabilities = 0
		return info, err
	}).AnyTimes()
	m.EXPECT().RangeHash(gomock.Any(), gomock.Any()).DoAndReturn(real.RangeHash).AnyTimes()
	m.EXPECT().RangeScan(gomock.Any(), gomock.Any()).DoAndReturn(real.RangeScan).AnyTimes()
}

// TestSessionApplyFailsAfterFetch: replica B answers every read for real
// (through gRPC), then its Apply fails as a dead plugin's would. The
// session driver reports the typed error, B is unchanged, and A received
// only what was resolved before the failure (the session's contract:
// nothing after the error).
func TestSessionApplyFailsAfterFetch(t *testing.T) {
	ctx := testCtx(t)
	ea, eb := openEngine(t, "a", record.ModeLWW), openEngine(t, "b", record.ModeLWW)
	// The same keys on both sides, written later (so winning) on A: the
	// session lists digests, fetches the differing records and applies to B.
	fill(t, eb, "k", 200, 30)
	fill(t, ea, "k", 200, 31)
	cb := inProcess(t, eb, nil)
	rootB := func() reconcile.Fingerprint {
		h, err := eb.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			t.Fatal(err)
		}
		return h[0].Fingerprint
	}
	before := rootB()

	ctrl := gomock.NewController(t)
	mb := mock.NewMockReplica(ctrl)
	delegate(mb, cb)
	fetched := false
	mb.EXPECT().Fetch(gomock.Any(), gomock.Any(), gomock.Any()).DoAndReturn(func(ctx context.Context, p uint32, keys [][]byte) ([]reconcile.Entry, error) {
		fetched = true
		return cb.Fetch(ctx, p, keys)
	}).AnyTimes()
	dead := status.Error(codes.Unavailable, "plugin process exited")
	mb.EXPECT().Apply(gomock.Any(), uint32(0), gomock.Any()).Return(&plugin.Error{Code: codes.Unavailable, Message: status.Convert(dead).Message(), Op: "Apply"}).MinTimes(1)

	_, err := reconcile.SyncPartition(ctx, ea, mb, 0, descentOnly)
	if err == nil {
		t.Fatal("session succeeded with a failing Apply")
	}
	if !fetched {
		t.Fatal("the session never fetched: the fault was not after Fetch")
	}
	var pe *plugin.Error
	if !errors.As(err, &pe) || pe.Op != "Apply" {
		t.Fatalf("session error %v does not carry the Apply failure", err)
	}
	if after := rootB(); after != before {
		t.Fatalf("B changed although its Apply failed: %v -> %v", before, after)
	}
	t.Logf("session error: %v", err)

	// The same session with a healthy B converges.
	st, err := reconcile.SyncPartition(ctx, ea, cb, 0, reconcile.SyncOptions{Session: reconcile.SessionConfig{Strict: true}})
	if err != nil || !st.Converged {
		t.Fatalf("retry: %v (%v)", err, st)
	}
}

// TestSessionReplicaDiesMidway: B's reads fail with UNAVAILABLE after the
// root comparison (a plugin dying between rounds): the session ends with
// an error matching plugin.ErrUnavailable and applies nothing to A.
func TestSessionReplicaDiesMidway(t *testing.T) {
	ctx := testCtx(t)
	ea, eb := openEngine(t, "a", record.ModeLWW), openEngine(t, "b", record.ModeLWW)
	fill(t, ea, "a", 40, 30)
	fill(t, eb, "b", 40, 30)
	cb := inProcess(t, eb, nil)
	rootA := func() reconcile.Fingerprint {
		h, _ := ea.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
		return h[0].Fingerprint
	}
	before := rootA()

	ctrl := gomock.NewController(t)
	mb := mock.NewMockReplica(ctrl)
	mb.EXPECT().Info(gomock.Any()).DoAndReturn(cb.Info).AnyTimes()
	first := mb.EXPECT().RangeHash(gomock.Any(), gomock.Any()).DoAndReturn(cb.RangeHash).Times(1)
	unavailable := &plugin.Error{Code: codes.Unavailable, Message: "connection refused", Op: "RangeHash"}
	mb.EXPECT().RangeHash(gomock.Any(), gomock.Any()).Return(nil, unavailable).After(first).AnyTimes()
	mb.EXPECT().RangeScan(gomock.Any(), gomock.Any()).Return(reconcile.RangeScanResult{}, unavailable).AnyTimes()
	mb.EXPECT().Fetch(gomock.Any(), gomock.Any(), gomock.Any()).Return(nil, unavailable).AnyTimes()

	_, err := reconcile.SyncPartition(ctx, ea, mb, 0, descentOnly)
	if !errors.Is(err, plugin.ErrUnavailable) {
		t.Fatalf("session error %v does not match plugin.ErrUnavailable", err)
	}
	if after := rootA(); after != before {
		t.Fatalf("A changed by a failed session: %v -> %v", before, after)
	}
}

// descentOnly runs sessions on the tree descent: the fault tests script
// the descent's calls (RangeHash, RangeScan, Fetch, Apply); a mock or
// wrapper serves every call of the contract, so the method is asked for.
var descentOnly = reconcile.SyncOptions{Session: reconcile.SessionConfig{Method: reconcile.MethodDescent}}

package repair_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

var errDown = errors.New("test: node down")

// link is a peer's view of a node: the node's current engine, or errDown
// while it is stopped (what a transport would show).
type link struct {
	mu sync.RWMutex
	r  reconcile.Replica
}

func (l *link) get() (reconcile.Replica, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.r == nil {
		return nil, errDown
	}
	return l.r, nil
}

func (l *link) set(r reconcile.Replica) { l.mu.Lock(); l.r = r; l.mu.Unlock() }

func (l *link) Info(ctx context.Context) (reconcile.Info, error) {
	r, err := l.get()
	if err != nil {
		return reconcile.Info{}, err
	}
	return r.Info(ctx)
}

func (l *link) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.RangeHash(ctx, req)
}

func (l *link) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	r, err := l.get()
	if err != nil {
		return reconcile.RangeScanResult{}, err
	}
	return r.RangeScan(ctx, req)
}

func (l *link) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	r, err := l.get()
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	return r.RangeSketch(ctx, req)
}

func (l *link) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.FetchByHash(ctx, req)
}

func (l *link) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.OpenSymbols(ctx, req)
}

func (l *link) ApplyAndHash(ctx context.Context, p uint32, es []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.ApplyAndHash(ctx, p, es, ranges)
}

func (l *link) Fetch(ctx context.Context, p uint32, keys [][]byte) ([]reconcile.Entry, error) {
	r, err := l.get()
	if err != nil {
		return nil, err
	}
	return r.Fetch(ctx, p, keys)
}

func (l *link) Apply(ctx context.Context, p uint32, es []reconcile.Entry) error {
	r, err := l.get()
	if err != nil {
		return err
	}
	return r.Apply(ctx, p, es)
}

// loopNode is one node: an engine on its own in-memory FS, its repair loop
// and its tombstone GC.
type loopNode struct {
	id     record.ReplicaID
	fs     vfs.FS
	link   *link
	e      *engine.Engine
	loop   *repair.Loop
	cancel context.CancelFunc
	done   chan struct{}

	repaired atomic.Uint64
	rounds   atomic.Uint64
}

type cluster struct {
	t     *testing.T
	pn    merkle.Partitioner
	nodes []*loopNode
}

func (c *cluster) start(n *loopNode) {
	t := c.t
	t.Helper()
	gc, err := engine.NewTombstoneGC(engine.GCOptions{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	scan, _ := repair.NewThrottle("scan", repair.ThrottleConfig{BytesPerSec: 256 << 20, KeysPerSec: 2e6})
	write, _ := repair.NewThrottle("write", repair.ThrottleConfig{BytesPerSec: 256 << 20, KeysPerSec: 2e6})
	e, err := engine.Open("db", &engine.Options{ReplicaID: n.id, FS: n.fs, Partitioner: c.pn, CheckpointInterval: 100 * time.Millisecond,
		Throttle: scan.Wait, Hooks: []hooks.Hook{gc.Hook()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := gc.Attach(e); err != nil {
		t.Fatal(err)
	}
	var peers []repair.Peer
	for _, o := range c.nodes {
		if o != n {
			peers = append(peers, repair.Peer{ID: o.id, Replica: o.link})
		}
	}
	loop, err := repair.NewLoop(repair.LoopConfig{
		Local:         e,
		Peers:         peers,
		Scheduler:     repair.SchedulerConfig{Interval: 40 * time.Millisecond, MinInterval: 5 * time.Millisecond, MaxInterval: 300 * time.Millisecond, MaxConcurrent: 2},
		ScanThrottle:  scan,
		WriteThrottle: write,
		Logger:        slog.New(slog.DiscardHandler),
		Tasks: []repair.Task{
			{Name: "rebuild", Interval: 50 * time.Millisecond, Run: func(ctx context.Context) error { return e.RebuildNotReady(ctx, nil) }},
			{Name: "scrub", Interval: time.Second, Run: func(ctx context.Context) error { _, err := e.Scrub(ctx, nil); return err }},
			{Name: "gc", Interval: 100 * time.Millisecond, Run: func(ctx context.Context) error { _, err := gc.Collect(ctx); return err }},
		},
		OnSession: func(r repair.SessionReport) {
			if r.Err == nil {
				n.repaired.Add(r.Stats.KeysRepaired())
			}
		},
		OnFullRound: func(fr repair.FullRound) {
			n.rounds.Add(1)
			gc.MarkSafe(fr.Partition, fr.SafeBefore)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.e, n.loop, n.cancel, n.done = e, loop, cancel, make(chan struct{})
	n.link.set(e)
	go func() {
		defer close(n.done)
		if err := loop.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: loop: %v", n.id, err)
		}
	}()
}

func (c *cluster) stop(n *loopNode) {
	n.link.set(nil)
	n.cancel()
	<-n.done
	if err := n.e.Close(); err != nil {
		c.t.Fatal(err)
	}
	n.e = nil
}

// roots returns the root fingerprints of every partition of n.
func roots(t *testing.T, n *loopNode, parts int) []reconcile.Fingerprint {
	var out []reconcile.Fingerprint
	for p := range parts {
		hs, err := n.e.RangeHash(context.Background(), reconcile.RangeHashRequest{Partition: uint32(p), Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			return nil
		}
		out = append(out, hs[0].Fingerprint)
	}
	return out
}

// TestLoopConvergesRestartedNode: three engines with repair loops; one is
// stopped, writes go on at the others, it restarts, and the loops converge
// it without any manual call.
func TestLoopConvergesRestartedNode(t *testing.T) {
	pn, err := merkle.SplitPoints([][]byte{[]byte("k5")})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, pn: pn}
	for i := range 3 {
		c.nodes = append(c.nodes, &loopNode{id: record.ReplicaID(fmt.Sprintf("n%d", i)), fs: vfs.NewMem(), link: &link{}})
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	defer func() {
		for _, n := range c.nodes {
			if n.e != nil {
				c.stop(n)
			}
		}
	}()
	ctx := context.Background()
	put := func(n *loopNode, i int, v string) {
		if err := n.e.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte(v), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	// Phase 1: writes spread over all three nodes.
	for i := range 3000 {
		put(c.nodes[i%3], i, "a")
	}
	down := c.nodes[2]
	c.stop(down)
	// Phase 2: writes and deletes on the two others while n2 is down.
	for i := range 3000 {
		n := c.nodes[i%2]
		switch {
		case i%7 == 0:
			if err := n.e.Delete(ctx, fmt.Appendf(nil, "k%05d", i), engine.NoSync); err != nil {
				t.Fatal(err)
			}
		case i%2 == 0:
			put(n, i, "b")
		default:
			put(n, 3000+i, "c")
		}
	}
	c.start(down)
	// Phase 3: nothing but the loops. Wait (no manual session) until all
	// three agree; the deadline only keeps a broken loop from hanging.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r0, r1, r2 := roots(t, c.nodes[0], 2), roots(t, c.nodes[1], 2), roots(t, c.nodes[2], 2)
		if r0 != nil && fmt.Sprint(r0) == fmt.Sprint(r1) && fmt.Sprint(r1) == fmt.Sprint(r2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged: %v %v %v\nstatus of n2: %+v", r0, r1, r2, down.loop.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 3000 {
		k := fmt.Appendf(nil, "k%05d", i)
		v, err := down.e.Get(ctx, k)
		switch {
		case i%7 == 0:
			if !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("deleted %s reads %q, %v on the restarted node", k, v, err)
			}
		case i%2 == 0:
			if err != nil || string(v) != "b" {
				t.Fatalf("%s reads %q, %v on the restarted node, want b", k, v, err)
			}
		}
	}
	var repaired uint64
	for _, n := range c.nodes {
		repaired += n.repaired.Load()
	}
	if repaired == 0 {
		t.Fatal("converged but no session repaired anything")
	}
	// The loops keep going: rounds complete once everyone is back.
	for down.rounds.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no complete rounds on the restarted node: %+v", down.loop.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := down.loop.Status()
	t.Logf("restarted node: sessions %v, skipped ticks %d, rounds %v, keys repaired (all nodes) %d", st.Sessions, st.SkippedTicks, st.Rounds, repaired)
	for _, ts := range st.Targets {
		if ts.Running && st.Running == 0 {
			t.Fatalf("inconsistent status: %+v", st)
		}
	}
}

// TestNewLoopRefusesBadConfig: each configuration a loop cannot run is an
// error wrapping ErrInvalidSchedule from NewLoop, not a loop whose every
// session fails.
func TestNewLoopRefusesBadConfig(t *testing.T) {
	e, err := engine.Open("db", &engine.Options{ReplicaID: "a", FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	peers := []repair.Peer{{ID: "b", Replica: e}}
	for _, tc := range []struct {
		name string
		cfg  repair.LoopConfig
	}{
		{"no peers", repair.LoopConfig{Local: e}},
		{"negative session timeout", repair.LoopConfig{Local: e, Peers: peers, SessionTimeout: -time.Second}},
		{"negative interval", repair.LoopConfig{Local: e, Peers: peers, Scheduler: repair.SchedulerConfig{Interval: -time.Second}}},
		{"duplicate peer", repair.LoopConfig{Local: e, Peers: append(peers, peers[0])}},
		{"task without interval", repair.LoopConfig{Local: e, Peers: peers,
			Tasks: []repair.Task{{Name: "t", Run: func(context.Context) error { return nil }}}}},
	} {
		if _, err := repair.NewLoop(tc.cfg); !errors.Is(err, repair.ErrInvalidSchedule) {
			t.Errorf("%s: err %v, want one wrapping ErrInvalidSchedule", tc.name, err)
		}
	}
	bad := repair.LoopConfig{Local: e, Peers: peers, Sync: reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxPendingBytes: -1}}}
	if _, err := repair.NewLoop(bad); !errors.Is(err, reconcile.ErrInvalidSessionConfig) {
		t.Errorf("negative MaxPendingBytes: err %v, want one wrapping ErrInvalidSessionConfig", err)
	}
	if _, err := repair.NewLoop(repair.LoopConfig{Local: e, Peers: peers}); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
}

// TestLoopBoundedProgress: the loop repairs a large difference in bounded
// sessions (LoopConfig.MaxSessionKeys) that each apply their part, and its
// status reports the progress: keys repaired, the sessions' estimate of
// the keys still to repair (0 once converged), a rate while it repairs.
func TestLoopBoundedProgress(t *testing.T) {
	ctx := context.Background()
	open := func(id record.ReplicaID) *engine.Engine {
		e, err := engine.Open("db", &engine.Options{ReplicaID: id, FS: vfs.NewMem(), CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	a, b := open("a"), open("b")
	const n, bound = 20000, 2000
	for i := range n {
		if err := a.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			if err := b.Put(ctx, fmt.Appendf(nil, "k%06db", i), []byte("w"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	var bounded, sessions int
	var most uint64
	var sawRate bool
	var loop *repair.Loop
	loop, err := repair.NewLoop(repair.LoopConfig{
		Local:          b,
		Peers:          []repair.Peer{{ID: "a", Replica: a}},
		Scheduler:      repair.SchedulerConfig{Interval: 20 * time.Millisecond, MinInterval: 2 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
		MaxSessionKeys: bound,
		OnSession: func(r repair.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			sessions++
			if r.Stats.Bounded {
				bounded++
			}
			most = max(most, r.Stats.KeysRepaired())
			if loop.Status().Repair.Rate > 0 {
				sawRate = true
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer runLoop(ctx, loop)()
	// A liveness bound, not a speed assertion.
	for deadline := time.Now().Add(time.Minute); rootFingerprint(t, a) != rootFingerprint(t, b); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not converged after a minute: %+v", loop.Status().Repair)
		}
	}
	// The converging session reports before the loop's status says 0.
	for deadline := time.Now().Add(time.Minute); loop.Status().Repair.Remaining != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("converged, but the loop still estimates %d keys to repair", loop.Status().Repair.Remaining)
		}
	}
	rp := loop.Status().Repair
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d sessions, %d bounded, at most %d keys repaired by one; %+v", sessions, bounded, most, rp)
	if want := uint64(n + n/20); rp.Repaired < want {
		t.Fatalf("loop status: %d keys repaired, want at least %d", rp.Repaired, want)
	}
	if bounded < 3 || most > 4*bound || !sawRate {
		t.Fatalf("%d bounded sessions, at most %d keys a session (bound %d), a rate seen: %t", bounded, most, bound, sawRate)
	}
}

// rangeHashLog records the RangeHash requests a replica receives.
type rangeHashLog struct {
	reconcile.Replica
	mu   sync.Mutex
	reqs []reconcile.RangeHashRequest
}

func (r *rangeHashLog) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.mu.Unlock()
	return r.Replica.RangeHash(ctx, req)
}

func (r *rangeHashLog) take() []reconcile.RangeHashRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// TestLoopStartsALargeRepairBounded: when the replicas' record estimates
// (Info) differ by more than MaxSessionKeys, the loop's first session is
// bounded from the start: it asks the larger side for the root's children
// and neither side for the root's fingerprint (on a replica a foreground
// keeps writing to, that would hash every dirty leaf before anything is
// repaired). The repair then converges as usual.
func TestLoopStartsALargeRepairBounded(t *testing.T) {
	ctx := context.Background()
	a, b := openMemEngine(t, "a"), openMemEngine(t, "b")
	defer a.Close()
	defer b.Close()
	const n, bound = 20000, 2000
	for i := range n {
		if err := a.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Maintain(ctx); err != nil { // leaves hashed: the estimate is exact
		t.Fatal(err)
	}
	info, err := a.Info(ctx)
	if err != nil || info.Partitions[0].Records != n {
		t.Fatalf("Info of a: %v, records %+v, want %d", err, info.Partitions, n)
	}
	local, peer := &rangeHashLog{Replica: b}, &rangeHashLog{Replica: a}
	first := make(chan repair.SessionReport, 1)
	loop, err := repair.NewLoop(repair.LoopConfig{
		Local:          local,
		Peers:          []repair.Peer{{ID: "a", Replica: peer}},
		Scheduler:      repair.SchedulerConfig{Interval: 20 * time.Millisecond, MinInterval: 2 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
		MaxSessionKeys: bound,
		OnSession: func(r repair.SessionReport) {
			select {
			case first <- r:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer runLoop(ctx, loop)()
	rep := <-first
	localReqs, peerReqs := local.take(), peer.take()
	if rep.Err != nil || !rep.Stats.Bounded || rep.Stats.KeysRepaired() == 0 {
		t.Fatalf("first session: %+v", rep)
	}
	isRoot := func(req reconcile.RangeHashRequest) bool {
		return req.Fanout == 0 && len(req.Ranges) == 1 && len(req.Ranges[0].Start) == 0 && len(req.Ranges[0].End) == 0
	}
	for _, req := range append(localReqs, peerReqs...) {
		if isRoot(req) {
			t.Fatalf("the first session compared the roots (%+v); local %d, peer %d requests", req, len(localReqs), len(peerReqs))
		}
	}
	if len(peerReqs) == 0 || peerReqs[0].Fanout == 0 {
		t.Fatalf("the larger side's first request: %+v, want the root's children", peerReqs)
	}
	// A liveness bound, not a speed assertion.
	for deadline := time.Now().Add(time.Minute); rootFingerprint(t, a) != rootFingerprint(t, b); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not converged after a minute: %+v", loop.Status().Repair)
		}
	}
}

// rootFingerprint is the fingerprint of e's whole partition 0.
func rootFingerprint(t *testing.T, e *engine.Engine) reconcile.Fingerprint {
	t.Helper()
	hs, err := e.RangeHash(context.Background(), reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{}}})
	if err != nil {
		t.Fatal(err)
	}
	return hs[0].Fingerprint
}

// runLoop runs loop until the returned stop is called; stop waits for Run
// to return.
func runLoop(ctx context.Context, loop *repair.Loop) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- loop.Run(lctx) }()
	return func() { cancel(); <-done }
}

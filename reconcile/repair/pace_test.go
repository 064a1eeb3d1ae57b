package repair_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// TestSyncPace checks that a symbol-stream session charges its own work to
// SyncOptions.Pace piece by piece (at least once a round, and once a chunk
// while streams decode), that a pace which blocks slows the session by what
// it blocks, and that the paced session still converges.
func TestSyncPace(t *testing.T) {
	ctx := context.Background()
	a := openMemEngine(t, "a")
	defer a.Close()
	b := openMemEngine(t, "b")
	defer b.Close()
	put := func(from, step int) {
		t.Helper()
		for i := from; i < 3000; i += step {
			if err := a.Put(ctx, fmt.Appendf(nil, "k%05d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(1, 10) // b gets these through an unpaced session first
	put(2, 10)
	if _, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{}); err != nil {
		t.Fatal(err)
	}
	put(0, 10) // 300 keys missing on b
	var calls int
	var charged time.Duration
	const rest = 2 * time.Millisecond
	opts := reconcile.SyncOptions{Pace: func(ctx context.Context, d time.Duration) error {
		calls++
		charged += d
		time.Sleep(rest)
		return ctx.Err()
	}}
	st, err := reconcile.SyncPartition(ctx, a, b, 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%v; pace called %d times, %v charged", st, calls, charged)
	if !st.Converged || st.KeysRepaired() != 300 {
		t.Fatalf("paced session: converged %t, %d keys repaired", st.Converged, st.KeysRepaired())
	}
	// Plans and answers of 4 rounds, and more than one symbol chunk.
	if calls < 2*st.Rounds+1 || charged <= 0 {
		t.Fatalf("pace called %d times for %d rounds, %v charged", calls, st.Rounds, charged)
	}
	if st.Duration < time.Duration(calls)*rest {
		t.Fatalf("session took %v, less than the %v its pace rested", st.Duration, time.Duration(calls)*rest)
	}
}

// TestBoundedSessions: with SessionConfig.MaxSessionKeys, a large
// difference is repaired by several sessions that each finish, each
// repairing a part of about the bound and applying it, each estimating
// what is left (decreasing), the last one converging; and a session cut
// by its context keeps the writes it had applied.
func TestBoundedSessions(t *testing.T) {
	ctx := context.Background()
	a := openMemEngine(t, "a")
	defer a.Close()
	b := openMemEngine(t, "b")
	defer b.Close()
	const n, bound = 20000, 2000
	for i := range n {
		if err := a.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 { // b holds a tenth of a's keys, and 200 of its own
			if err := b.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 == 0 {
			if err := b.Put(ctx, fmt.Appendf(nil, "k%06db", i), []byte("w"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	opts := reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxSessionKeys: bound}}
	// A session cut after its first applied chunk keeps that chunk.
	before := countKeys(t, b)
	cctx, cancel := context.WithCancel(ctx)
	cut := repair.ThrottledReplica{Replica: cancelAfterApply{b, cancel}, ApplyChunk: 100}
	if _, err := reconcile.SyncPartition(cctx, a, cut, 0, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut session: %v", err)
	}
	kept := countKeys(t, b) - before
	if kept < 100 || kept >= bound {
		t.Fatalf("a cut session kept %d keys (its first applied chunks of 100)", kept)
	}
	lastRemaining := uint64(n)
	var repaired uint64
	sessions := 0
	for ; sessions < 100; sessions++ {
		st, err := reconcile.SyncPartition(ctx, a, b, 0, opts)
		if err != nil {
			t.Fatal(err)
		}
		repaired += st.KeysRepaired()
		t.Logf("session %d: bounded %t, repaired %d, remaining %d, converged %t", sessions, st.Bounded, st.KeysRepaired(), st.Remaining, st.Converged)
		if st.Converged {
			if st.Remaining != 0 {
				t.Fatalf("converged with %d remaining", st.Remaining)
			}
			break
		}
		if !st.Bounded || st.KeysRepaired() == 0 || st.KeysRepaired() > 4*bound {
			t.Fatalf("session %d: bounded %t, repaired %d (bound %d)", sessions, st.Bounded, st.KeysRepaired(), bound)
		}
		if st.Remaining >= lastRemaining {
			t.Fatalf("session %d: remaining %d, after %d", sessions, st.Remaining, lastRemaining)
		}
		lastRemaining = st.Remaining
	}
	if sessions < 3 || sessions >= 100 {
		t.Fatalf("%d sessions for a difference of %d with a bound of %d", sessions, n-n/10+n/100, bound)
	}
	// b lacks n-n/10 of a's records, holds n/10 of them written
	// independently (a conflict each: one side is repaired) and n/100 of
	// its own: the later sessions repair all that but what the cut one
	// applied (kept: at least its new keys), none of it twice.
	if want := uint64(n + n/100); repaired > want-kept || repaired < want-bound {
		t.Fatalf("repaired %d keys after the cut session (which kept %d new keys), want at most %d", repaired, kept, want-kept)
	}
	var roots [2]reconcile.Fingerprint
	for i, r := range []*engine.Engine{a, b} {
		hs, err := r.RangeHash(ctx, reconcile.RangeHashRequest{Partition: 0, Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			t.Fatal(err)
		}
		roots[i] = hs[0].Fingerprint
	}
	if roots[0] != roots[1] {
		t.Fatalf("roots differ after the sessions: %v %v", roots[0], roots[1])
	}
}

// cancelAfterApply cancels a context after its first Apply.
type cancelAfterApply struct {
	*engine.Engine
	cancel func()
}

func (c cancelAfterApply) Apply(ctx context.Context, partition uint32, entries []reconcile.Entry) error {
	defer c.cancel()
	return c.Engine.Apply(ctx, partition, entries)
}

func countKeys(t *testing.T, e *engine.Engine) uint64 {
	t.Helper()
	hs, err := e.RangeHash(context.Background(), reconcile.RangeHashRequest{Partition: 0, Ranges: []reconcile.KeyRange{{}}})
	if err != nil {
		t.Fatal(err)
	}
	return hs[0].Fingerprint.Count
}

// openMemEngine opens an engine on an in-memory file system, its tree
// ready.
func openMemEngine(t *testing.T, id string) *engine.Engine {
	t.Helper()
	e, err := engine.Open("db", &engine.Options{ReplicaID: record.ReplicaID(id), FS: vfs.NewMem(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestBoundedSessionSparesTheRest: a bounded session asks only the larger
// side for the root's children, and confirms nothing after its writes (no
// RangeHash of the partition or of its ranges): the rest of the tree (on a
// replica a foreground keeps writing to, dirty leaves to recompute) is left
// to the next session. It ends bounded, not converged, with the rest of the
// difference as its estimate.
func TestBoundedSessionSparesTheRest(t *testing.T) {
	ctx := context.Background()
	a := openMemEngine(t, "a")
	defer a.Close()
	b := openMemEngine(t, "b")
	defer b.Close()
	const n, bound = 20000, 2000
	for i := range n {
		if err := a.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if err := b.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	infos := [2]reconcile.Info{}
	for i, r := range []*engine.Engine{a, b} {
		var err error
		if infos[i], err = r.Info(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s, err := reconcile.NewSession(reconcile.SessionConfig{MaxSessionKeys: bound, InfoA: &infos[0], InfoB: &infos[1]})
	if err != nil {
		t.Fatal(err)
	}
	replicas := [2]reconcile.Replica{a, b}
	var childrenSides []reconcile.Side
	var confirms []reconcile.KeyRange
	applied, finalHashes := false, 0
	for step := s.Next(); !step.Done; step = s.Next() {
		for _, req := range step.Requests {
			switch {
			case req.Kind == reconcile.RequestRangeHash && req.RangeHash.Fanout > 0:
				childrenSides = append(childrenSides, req.Side)
			case req.Kind == reconcile.RequestApply:
				applied = true
				if req.Confirm != nil {
					confirms = append(confirms, *req.Confirm)
				}
			case req.Kind == reconcile.RequestRangeHash && applied:
				finalHashes++
			}
		}
		reconcile.RunStep(ctx, s, replicas, step)
	}
	st := s.Stats()
	if s.Err() != nil || !st.Bounded || st.Converged || st.KeysRepaired() == 0 {
		t.Fatalf("bounded session: err %v, stats %+v", s.Err(), st)
	}
	if len(childrenSides) != 1 || childrenSides[0] != reconcile.SideA {
		t.Fatalf("the root's children were asked of %v, want the larger side (A) alone", childrenSides)
	}
	if len(confirms) != 0 || finalHashes != 0 {
		t.Fatalf("a bounded session confirmed %v and hashed after its writes %d times: want no confirm", confirms, finalHashes)
	}
	if left := uint64(n - n/10); st.Remaining == 0 || st.Remaining >= left || st.Remaining+st.KeysRepaired() < left*9/10 {
		t.Fatalf("remaining %d after repairing %d of %d", st.Remaining, st.KeysRepaired(), left)
	}
	t.Logf("repaired %d, remaining %d", st.KeysRepaired(), st.Remaining)
}

// TestResumedBoundedSessions: each bounded session resumes where the last
// one left off (Stats.Resume into SessionConfig.Resume): it skips the root
// comparison and starts with the larger side's children, its ranges follow
// the last one's, and the chain ends with a session that compares the
// roots again and converges, while a writer keeps adding keys to the
// smaller side everywhere. A stale Resume (pointing past every difference)
// costs at most a round: the session wraps around.
func TestResumedBoundedSessions(t *testing.T) {
	ctx := context.Background()
	a := openMemEngine(t, "a")
	defer a.Close()
	b := openMemEngine(t, "b")
	defer b.Close()
	const n, bound = 20000, 2000
	for i := range n {
		if err := a.Put(ctx, fmt.Appendf(nil, "k%06d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	// run runs one session with resume and reports its first round's
	// requests.
	run := func(resume *reconcile.BoundResume) (reconcile.Stats, []reconcile.Request) {
		t.Helper()
		var infos [2]reconcile.Info
		for i, r := range []*engine.Engine{a, b} {
			var err error
			if infos[i], err = r.Info(ctx); err != nil {
				t.Fatal(err)
			}
		}
		s, err := reconcile.NewSession(reconcile.SessionConfig{MaxSessionKeys: bound,
			InfoA: &infos[0], InfoB: &infos[1], Resume: resume})
		if err != nil {
			t.Fatal(err)
		}
		var first []reconcile.Request
		for step := s.Next(); !step.Done; step = s.Next() {
			if first == nil {
				first = step.Requests
			}
			reconcile.RunStep(ctx, s, [2]reconcile.Replica{a, b}, step)
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return s.Stats(), first
	}
	var resume *reconcile.BoundResume
	var afters [][]byte
	sessions, resumed := 0, 0
	for ; sessions < 40; sessions++ {
		// The writer: keys of b's own, all over the key space.
		for j := range 20 {
			if err := b.Put(ctx, fmt.Appendf(nil, "k%06dw%d", (j*997+sessions*131)%n, sessions), []byte("w"), nil); err != nil {
				t.Fatal(err)
			}
		}
		st, first := run(resume)
		rootFirst := len(first) == 2 && first[0].Kind == reconcile.RequestRangeHash && first[0].RangeHash.Fanout == 0
		if resume != nil && resume.Remaining > bound {
			resumed++
			if rootFirst || len(first) != 1 || first[0].Side != reconcile.SideA || first[0].RangeHash.Fanout == 0 {
				t.Fatalf("session %d resumed from %+v began with %+v, want the larger side's children alone", sessions, resume, first)
			}
		} else if !rootFirst {
			t.Fatalf("session %d (resume %+v) began with %+v, want the root comparison", sessions, resume, first)
		}
		t.Logf("session %d: bounded %t, repaired %d, remaining %d, converged %t, resume %+v", sessions, st.Bounded, st.KeysRepaired(), st.Remaining, st.Converged, st.Resume)
		if st.Converged {
			break
		}
		if st.Bounded != (st.Resume != nil) {
			t.Fatalf("session %d: bounded %t, resume %+v", sessions, st.Bounded, st.Resume)
		}
		if st.Resume != nil {
			afters = append(afters, st.Resume.After)
		}
		resume = st.Resume
	}
	if sessions >= 40 || resumed < 3 {
		t.Fatalf("%d sessions, %d of them resumed", sessions, resumed)
	}
	for i := 1; i < len(afters); i++ {
		if afters[i] != nil && afters[i-1] != nil && string(afters[i]) <= string(afters[i-1]) {
			t.Fatalf("session %d left off at %q, before its predecessor's %q", i, afters[i], afters[i-1])
		}
	}
	// A stale Resume: past every difference (b's 6000 new keys). The
	// session wraps around to the partition's start and finds them.
	for j := range 3 * bound {
		if err := b.Put(ctx, fmt.Appendf(nil, "k%06dz", j), []byte("z"), nil); err != nil {
			t.Fatal(err)
		}
	}
	st, first := run(&reconcile.BoundResume{Side: reconcile.SideB, After: []byte("k019999"), Remaining: 10 * bound})
	if len(first) != 1 || st.KeysRepaired() < bound {
		t.Fatalf("stale resume: began with %+v, repaired %d", first, st.KeysRepaired())
	}
}

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/testclock"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// gcSeed returns the seed of a randomized GC test: $PEBBLEAE_SEED or random.
func gcSeed(t *testing.T) uint64 {
	s := rand.Uint64()
	if v := os.Getenv("PEBBLEAE_SEED"); v != "" {
		var err error
		if s, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed=%d (rerun with PEBBLEAE_SEED=%d)", s, s)
	return s
}

// gcNode is one replica of the tombstone scenario.
type gcNode struct {
	id     record.ReplicaID
	fs     vfs.FS
	e      *engine.Engine
	gc     *engine.TombstoneGC
	rounds *repair.RoundTracker
}

type gcScenario struct {
	t       *testing.T
	clock   *testclock.Manual
	pn      merkle.Partitioner
	nodes   []*gcNode
	grace   time.Duration
	unsafe  bool // test the test: purge after a single round
	keys    int
	purged  int
	rounds  int
	written map[string]versionSeen // the newest write of each key
	// deleted is the newest tombstone written of each key.
	deleted map[string]versionSeen
	// seen is, per node and key, the newest version the node has shown.
	seen map[record.ReplicaID]map[string]versionSeen
}

type versionSeen struct {
	ts        record.Timestamp
	writer    record.ReplicaID
	tombstone bool
	value     string
}

func (v versionSeen) newer(o versionSeen) int {
	if c := v.ts.Compare(o.ts); c != 0 {
		return c
	}
	switch {
	case v.writer < o.writer:
		return -1
	case v.writer > o.writer:
		return 1
	}
	return 0
}

func (s *gcScenario) open(n *gcNode) {
	s.t.Helper()
	gc, err := engine.NewTombstoneGC(engine.GCOptions{Grace: s.grace, BatchKeys: 3})
	if err != nil {
		s.t.Fatal(err)
	}
	e, err := engine.Open("db", &engine.Options{ReplicaID: n.id, FS: n.fs, Partitioner: s.pn, Clock: s.clock,
		Tree: merkle.Params{LeafSize: 4}, CheckpointInterval: -1, Hooks: []hooks.Hook{gc.Hook()}})
	if err != nil {
		s.t.Fatal(err)
	}
	if err := e.WaitReady(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	if err := gc.Attach(e); err != nil {
		s.t.Fatal(err)
	}
	n.e, n.gc = e, gc
	// A restarted node's loop starts its rounds afresh.
	n.rounds = repair.NewRoundTracker()
	for p := range s.pn.NumPartitions() {
		var peers []record.ReplicaID
		for _, o := range s.nodes {
			if o != n {
				peers = append(peers, o.id)
			}
		}
		n.rounds.SetPeers(uint32(p), peers, s.clock.Now(), false)
	}
}

func (s *gcScenario) up() []*gcNode {
	var out []*gcNode
	for _, n := range s.nodes {
		if n.e != nil {
			out = append(out, n)
		}
	}
	return out
}

func (s *gcScenario) key(i int) []byte { return fmt.Appendf(nil, "k%02d", i) }

// read returns node n's version of key, checking that it never goes back.
func (s *gcScenario) check(n *gcNode, step int) {
	s.t.Helper()
	ctx := context.Background()
	for i := range s.keys {
		k := s.key(i)
		prev, had := s.seen[n.id][string(k)]
		rec, err := n.e.GetRecord(ctx, k)
		if errors.Is(err, engine.ErrNotFound) {
			// Absent is fine if the node's newest version was a tombstone,
			// or a newer tombstone exists (it came and went since the last
			// check).
			if d, ok := s.deleted[string(k)]; had && !prev.tombstone && (!ok || d.newer(prev) < 0) {
				s.t.Fatalf("step %d: %s lost %s = %q (ts %s) without a delete", step, n.id, k, prev.value, prev.ts)
			}
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		w := rec.Winner()
		cur := versionSeen{ts: w.Timestamp, writer: w.Dot.Replica, tombstone: w.Tombstone, value: string(w.Value)}
		if had && cur.newer(prev) < 0 {
			what := "an older version"
			if prev.tombstone && !cur.tombstone {
				what = "a DELETED value"
			}
			s.t.Fatalf("step %d: %s: %s came back as %s: %q (ts %s by %s) after %+v", step, n.id, k, what, cur.value, cur.ts, cur.writer, prev)
		}
		s.seen[n.id][string(k)] = cur
	}
}

func (s *gcScenario) write(n *gcNode, k []byte, value string, del bool) {
	ctx := context.Background()
	var err error
	if del {
		err = n.e.Delete(ctx, k, nil)
	} else {
		err = n.e.Put(ctx, k, []byte(value), nil)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	rec, err := n.e.GetRecord(ctx, k)
	if err != nil {
		s.t.Fatal(err)
	}
	w := rec.Winner()
	v := versionSeen{ts: w.Timestamp, writer: w.Dot.Replica, tombstone: w.Tombstone, value: string(w.Value)}
	if old, ok := s.written[string(k)]; !ok || v.newer(old) > 0 {
		s.written[string(k)] = v
	}
	if old, ok := s.deleted[string(k)]; del && (!ok || v.newer(old) > 0) {
		s.deleted[string(k)] = v
	}
}

// session runs a session of partition p initiated by a with b, and records
// the round progress on a, as a's repair loop would.
func (s *gcScenario) session(a, b *gcNode, p uint32) error {
	start := s.clock.Now()
	st, err := reconcile.SyncPartition(context.Background(), a.e, b.e, p, reconcile.SyncOptions{Now: s.clock.Now})
	s.clock.Advance(10 * time.Millisecond)
	end := s.clock.Now()
	if err != nil || !st.Converged {
		return err
	}
	if fr, ok := a.rounds.Converged(p, b.id, start, end); ok {
		s.rounds++
		if s.unsafe {
			fr.SafeBefore = fr.Start
		}
		a.gc.MarkSafe(fr.Partition, fr.SafeBefore)
	}
	return nil
}

func runGCScenario(t *testing.T, seed uint64, steps int, unsafe bool) *gcScenario {
	rng := rand.New(rand.NewPCG(seed, 42))
	pn, err := merkle.SplitPoints([][]byte{[]byte("k20")})
	if err != nil {
		t.Fatal(err)
	}
	s := &gcScenario{t: t, clock: testclock.New(time.Unix(1_900_000_000, 0)), pn: pn, grace: 3 * time.Second,
		unsafe: unsafe, keys: 40, written: map[string]versionSeen{}, deleted: map[string]versionSeen{}, seen: map[record.ReplicaID]map[string]versionSeen{}}
	for i := range 3 {
		n := &gcNode{id: record.ReplicaID(fmt.Sprintf("n%d", i)), fs: vfs.NewMem()}
		s.nodes = append(s.nodes, n)
		s.seen[n.id] = map[string]versionSeen{}
	}
	for _, n := range s.nodes {
		s.open(n)
	}
	defer func() {
		for _, n := range s.up() {
			_ = n.e.Close()
		}
	}()
	ctx := context.Background()
	for step := range steps {
		s.clock.Advance(time.Duration(rng.IntN(800)) * time.Millisecond)
		up := s.up()
		n := up[rng.IntN(len(up))]
		switch r := rng.IntN(100); {
		case r < 30:
			s.write(n, s.key(rng.IntN(s.keys)), fmt.Sprintf("v%d", step), false)
		case r < 50:
			s.write(n, s.key(rng.IntN(s.keys)), "", true)
		case r < 82:
			if len(up) > 1 {
				o := up[rng.IntN(len(up))]
				if o != n {
					if err := s.session(n, o, uint32(rng.IntN(pn.NumPartitions()))); err != nil {
						t.Fatalf("step %d: session: %v", step, err)
					}
				}
			}
		case r < 88:
			if len(up) > 1 {
				if err := n.e.Close(); err != nil {
					t.Fatal(err)
				}
				n.e = nil
			}
		case r < 94:
			for _, d := range s.nodes {
				if d.e == nil {
					s.open(d)
					break
				}
			}
		default:
			p, err := n.gc.Collect(ctx)
			if err != nil {
				t.Fatalf("step %d: collect: %v", step, err)
			}
			s.purged += p
		}
		for _, n := range s.up() {
			s.check(n, step)
		}
	}
	// Heal: everyone up, a few full rounds of sessions with GC, then every
	// node must hold the newest write of every key.
	for _, n := range s.nodes {
		if n.e == nil {
			s.open(n)
		}
	}
	for range 3 {
		for _, a := range s.nodes {
			for _, b := range s.nodes {
				for p := range pn.NumPartitions() {
					if a != b {
						if err := s.session(a, b, uint32(p)); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			s.clock.Advance(time.Second)
		}
		for _, n := range s.nodes {
			p, err := n.gc.Collect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.purged += p
			s.check(n, steps)
		}
	}
	for _, n := range s.nodes {
		for i := range s.keys {
			k := s.key(i)
			want, ok := s.written[string(k)]
			v, err := n.e.Get(ctx, k)
			switch {
			case !ok || want.tombstone:
				if !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("final: %s: deleted key %s reads %q (%v)", n.id, k, v, err)
				}
			case err != nil || string(v) != want.value:
				t.Fatalf("final: %s: key %s reads %q (%v), want %q", n.id, k, v, err, want.value)
			}
		}
		ms, err := n.e.Verify(ctx)
		if err != nil || len(ms) > 0 {
			t.Fatalf("final: %s: tree verify: %v %v", n.id, ms, err)
		}
	}
	return s
}

// TestTombstoneGCScenarios runs randomized scenarios of writes, deletes,
// sessions, outages and tombstone collection on three engines and checks
// that no replica ever shows an older version of a key than it showed
// before (in particular no deleted value comes back), that tombstones do get
// purged, and that everything converges.
func TestTombstoneGCScenarios(t *testing.T) {
	seed := gcSeed(t)
	seeds, steps := 12, 500
	if testing.Short() {
		seeds = 4
	}
	purged, rounds := 0, 0
	for i := range seeds {
		s := runGCScenario(t, seed+uint64(i), steps, false)
		purged += s.purged
		rounds += s.rounds
	}
	t.Logf("%d scenarios: %d full rounds, %d tombstones purged", seeds, rounds, purged)
	if purged == 0 {
		t.Fatalf("no tombstone was ever purged: the scenarios test nothing")
	}
}

// TestTombstoneGCNeedsHook: without the hook installed, Attach refuses.
func TestTombstoneGCNeedsHook(t *testing.T) {
	gc, err := engine.NewTombstoneGC(engine.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open("db", &engine.Options{ReplicaID: "a", FS: vfs.NewMem(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := gc.Attach(e); !errors.Is(err, engine.ErrGCNotInstalled) {
		t.Fatalf("attach without hook: %v", err)
	}
	if _, err := gc.Collect(context.Background()); !errors.Is(err, engine.ErrGCNotInstalled) {
		t.Fatalf("collect unattached: %v", err)
	}
	ce, err := engine.Open("db", &engine.Options{ReplicaID: "c", Mode: record.ModeCausal, FS: vfs.NewMem(), CheckpointInterval: -1, Hooks: []hooks.Hook{gc.Hook()}})
	if err != nil {
		t.Fatal(err)
	}
	defer ce.Close()
	if err := gc.Attach(ce); !errors.Is(err, engine.ErrWrongMode) {
		t.Fatalf("attach in causal mode: %v", err)
	}
}

// TestTombstoneGCNeverDeletesConcurrentWrites races writes of new values
// over tombstones with purges of those tombstones.
func TestTombstoneGCNeverDeletesConcurrentWrites(t *testing.T) {
	clk := testclock.New(time.Unix(1_900_000_000, 0))
	gc, err := engine.NewTombstoneGC(engine.GCOptions{Grace: time.Second, BatchKeys: 8})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open("db", &engine.Options{ReplicaID: "a", FS: vfs.NewMem(), Clock: clk, CheckpointInterval: -1, Hooks: []hooks.Hook{gc.Hook()}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := gc.Attach(e); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for round := range 5 {
		const n = 500
		for i := range n {
			if err := e.Delete(ctx, fmt.Appendf(nil, "k%04d", i), engine.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Minute)
		gc.MarkSafe(0, clk.Now().Add(time.Duration(round)*time.Millisecond))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := n - 1; i >= 0; i -= 2 {
				if err := e.Put(ctx, fmt.Appendf(nil, "k%04d", i), []byte("new"), engine.NoSync); err != nil {
					t.Error(err)
				}
			}
		}()
		if _, err := gc.Collect(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		for i := n - 1; i >= 0; i -= 2 {
			if v, err := e.Get(ctx, fmt.Appendf(nil, "k%04d", i)); err != nil || string(v) != "new" {
				t.Fatalf("round %d: k%04d written during the purge reads %q, %v", round, i, v, err)
			}
		}
	}
	if st := gc.Stats(); st.Purged == 0 {
		t.Fatalf("nothing purged: %+v", st)
	}
	ms, err := e.Verify(ctx)
	if err != nil || len(ms) > 0 {
		t.Fatalf("verify: %v %v", ms, err)
	}
}

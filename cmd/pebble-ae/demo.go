package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/spf13/cobra"
)

type demoConfig struct {
	keys     int
	replicas int
	seed     uint64
	dir      string
	keep     bool
}

func newDemoCmd() *cobra.Command {
	var cfg demoConfig
	c := &cobra.Command{
		Use:   "demo",
		Short: "Watch three replicas diverge (outage, partition, deletes) and converge",
		Long: `demo runs replicas in a temporary directory through a story:

  1. every replica takes the initial load (a quorum write of all keys);
  2. the last replica goes down; new keys, updates and deletes are acknowledged
     by the others (W=2 of N=3) and never reach it;
  3. a network partition splits the first two replicas, and both sides accept
     different updates of the same keys;
  4. the downed replica comes back with its stale data.

It prints each replica's root fingerprints, runs anti-entropy sessions between
every pair (with a progress bar), prints what each session cost next to a naive
full comparison, and checks with a full scan that all replicas hold identical
records. It exits non-zero if they do not.`,
		Example: "  pebble-ae demo\n  pebble-ae demo --keys 100000 --replicas 5 --seed 7",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg)
		},
	}
	c.Flags().IntVar(&cfg.keys, "keys", 20000, "keys in the initial load")
	c.Flags().IntVar(&cfg.replicas, "replicas", 3, "number of replicas (at least 2)")
	c.Flags().Uint64Var(&cfg.seed, "seed", 1, "seed of the scenario")
	c.Flags().StringVar(&cfg.dir, "dir", "", "directory for the replicas (default: a temporary directory, removed afterwards)")
	c.Flags().BoolVar(&cfg.keep, "keep", false, "keep the replicas' directories")
	return c
}

// demoSplits are the demo's partition split points: four partitions.
var demoSplits = [][]byte{[]byte("key:25"), []byte("key:50"), []byte("key:75")}

func demoKey(i int) []byte { return []byte(fmt.Sprintf("key:%08d", i%100*1000000+i/100)) }

func runDemo(ctx context.Context, out, errw io.Writer, cfg demoConfig) error {
	if cfg.replicas < 2 {
		return fmt.Errorf("--replicas must be at least 2")
	}
	if cfg.keys < 10 {
		return fmt.Errorf("--keys must be at least 10")
	}
	dir := cfg.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "pebble-ae-demo-")
		if err != nil {
			return err
		}
		dir = d
		if !cfg.keep {
			defer os.RemoveAll(d)
		}
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.seed, 0xdeadbeef))
	pn, _ := merkle.SplitPoints(demoSplits)
	open := func(i int) (*engine.Engine, error) {
		return engine.Open(filepath.Join(dir, fmt.Sprintf("r%d", i+1)), &engine.Options{
			ReplicaID: reconcile.ReplicaID(fmt.Sprintf("r%d", i+1)), Partitioner: pn, CheckpointInterval: -1,
		})
	}
	reps := make([]*engine.Engine, cfg.replicas)
	for i := range reps {
		e, err := open(i)
		if err != nil {
			return err
		}
		reps[i] = e
	}
	defer func() {
		for _, e := range reps {
			if e != nil {
				e.Close()
			}
		}
	}()
	fmt.Fprintf(out, "pebble-ae demo: %d replicas in %s, seed %d\n\n", cfg.replicas, dir, cfg.seed)

	value := func(tag string, i int) []byte { return []byte(fmt.Sprintf("%s-%d-%x", tag, i, rng.Uint32())) }
	// A write is coordinated by one replica: it stamps the record once (HLC
	// time, its ID) and replicates that same record to the targets, as a
	// Dynamo-style coordinator does.
	type write struct {
		key, value []byte
		tombstone  bool
	}
	replicate := func(coord *engine.Engine, targets []*engine.Engine, ws []write) error {
		byPart := map[uint32][]reconcile.Entry{}
		for _, w := range ws {
			rec := reconcile.NewLWW(coord.ReplicaID(), coord.Clock().Now(), w.value, w.tombstone)
			p := uint32(pn.Partition(w.key))
			byPart[p] = append(byPart[p], reconcile.Entry{Key: w.key, Record: rec.Encode()})
		}
		for _, e := range targets {
			for p, ents := range byPart {
				if err := e.Apply(ctx, p, ents); err != nil {
					return err
				}
			}
		}
		return nil
	}

	// 1. Initial load on every replica.
	fmt.Fprintf(out, "1. initial load: %d keys written to all %d replicas\n", cfg.keys, cfg.replicas)
	const chunk = 1000
	for lo := 0; lo < cfg.keys; lo += chunk {
		var ws []write
		for i := lo; i < min(lo+chunk, cfg.keys); i++ {
			ws = append(ws, write{key: demoKey(i), value: value("v1", i)})
		}
		if err := replicate(reps[0], reps, ws); err != nil {
			return err
		}
	}

	// 2. The last replica is down: writes reach only the others.
	down := cfg.replicas - 1
	up := reps[:down]
	if err := reps[down].Close(); err != nil {
		return err
	}
	reps[down] = nil
	newKeys, updates, deletes := max(cfg.keys/20, 1), max(cfg.keys/40, 1), max(cfg.keys/100, 1)
	fmt.Fprintf(out, "2. r%d is down: %d new keys, %d updates and %d deletes acknowledged by the other %d\n", down+1, newKeys, updates, deletes, len(up))
	var ws []write
	for i := 0; i < newKeys; i++ {
		ws = append(ws, write{key: demoKey(cfg.keys + i), value: value("new", i)})
	}
	for i := 0; i < updates; i++ {
		ws = append(ws, write{key: demoKey(rng.IntN(cfg.keys)), value: value("v2", i)})
	}
	for i := 0; i < deletes; i++ {
		ws = append(ws, write{key: demoKey(rng.IntN(cfg.keys)), tombstone: true})
	}
	if err := replicate(up[0], up, ws); err != nil {
		return err
	}

	// 3. A partition between the first two replicas: both sides accept
	// different updates of the same keys.
	conflicts := max(cfg.keys/200, 1)
	fmt.Fprintf(out, "3. partition r1 | r2: %d keys updated differently on both sides (last writer wins)\n", conflicts)
	for side := 0; side < 2 && side < len(up); side++ {
		crng := rand.New(rand.NewPCG(cfg.seed, 42))
		var ws []write
		for i := 0; i < conflicts; i++ {
			ws = append(ws, write{key: demoKey(crng.IntN(cfg.keys)), value: []byte(fmt.Sprintf("partition-side-r%d-%d", side+1, i))})
		}
		// Each side's write reaches only itself.
		if err := replicate(up[side], up[side:side+1], ws); err != nil {
			return err
		}
	}

	// 4. The downed replica comes back.
	e, err := open(down)
	if err != nil {
		return err
	}
	reps[down] = e
	fmt.Fprintf(out, "4. r%d restarts with its stale data\n\n", down+1)

	if err := printRoots(ctx, out, reps); err != nil {
		return err
	}

	// Anti-entropy between every pair.
	fmt.Fprintf(out, "\nanti-entropy sessions:\n")
	type row struct {
		pair          string
		stats, naive  reconcile.Stats
		naiveErr, err error
	}
	var rows []row
	for i := 0; i < len(reps); i++ {
		for j := i + 1; j < len(reps); j++ {
			pair := fmt.Sprintf("r%d <-> r%d", i+1, j+1)
			naive, nerr := dryRunStats(ctx, reps[i], reps[j], true)
			if nerr != nil {
				return fmt.Errorf("naive session %s: %w", pair, nerr)
			}
			bar := newProgress(errw, pair)
			st, err := syncAllProgress(ctx, reps[i], reps[j], bar, false)
			bar.done()
			rows = append(rows, row{pair: pair, stats: st, naive: naive, naiveErr: nerr, err: err})
			if err != nil {
				return fmt.Errorf("session %s: %w", pair, err)
			}
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pair\trounds\tbytes\tmetadata\trecords\tkeys repaired\ttime\tnaive bytes\tnaive rounds\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t\n", r.pair, r.stats.Rounds, human(r.stats.BytesTotal()), human(r.stats.BytesMetadata()),
			human(r.stats.BytesRecords()), r.stats.KeysRepaired(), r.stats.Duration.Round(time.Millisecond), human(r.naive.BytesTotal()), r.naive.Rounds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := printRoots(ctx, out, reps); err != nil {
		return err
	}

	// Full-scan check.
	n, err := compareFullScans(reps)
	if err != nil {
		return exitError{code: 2, err: fmt.Errorf("NOT converged: %w", err)}
	}
	for _, e := range reps {
		ms, err := e.Verify(ctx)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			return exitError{code: 2, err: fmt.Errorf("tree of %s does not match its data: %s", e.ReplicaID(), ms[0])}
		}
	}
	fmt.Fprintf(out, "\nconverged: all %d replicas hold identical records (%d keys, tombstones included), trees verified, in %s\n",
		len(reps), n, time.Since(start).Round(time.Millisecond))
	return nil
}

func human(b uint64) string {
	switch {
	case b >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func printRoots(ctx context.Context, out io.Writer, reps []*engine.Engine) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := "replica"
	for _, p := range reps[0].Tree().Partitions() {
		header += fmt.Sprintf("\tpartition %d root (keys)", p.ID)
	}
	fmt.Fprintln(tw, header)
	for _, e := range reps {
		line := string(e.ReplicaID())
		for _, p := range e.Tree().Partitions() {
			fp, err := e.Tree().RangeFingerprint(ctx, p.ID, merkle.Range{})
			if err != nil {
				return err
			}
			h := fp.Short()
			line += fmt.Sprintf("\t%s (%d)", hex.EncodeToString(h[:6]), fp.Count)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// syncAllProgress runs a session over every partition, drawing progress.
func syncAllProgress(ctx context.Context, a, b reconcile.Replica, bar *progress, naive bool) (reconcile.Stats, error) {
	info, err := a.Info(ctx)
	if err != nil {
		return reconcile.Stats{}, err
	}
	total := len(info.Partitions)
	done := 0
	opts := reconcile.SyncOptions{Progress: func(p reconcile.Progress) {
		if p.Done {
			done++
		}
		if bar != nil {
			bar.bar(done, total, fmt.Sprintf("partitions, %d rounds", p.Stats.Rounds))
		}
	}}
	if naive {
		opts.Session.Naive = true
		opts.Session.ScanLimit = engine.MaxKeysPerRequest
	}
	all, err := reconcile.SyncAll(ctx, a, b, opts)
	var sum reconcile.Stats
	for i, s := range all {
		if i == 0 {
			sum = s
			continue
		}
		sum = sum.Add(s)
	}
	return sum, err
}

// dryRun wraps a replica so that Apply writes nothing: used to measure what
// a session would cost without changing anything.
type dryRun struct {
	reconcile.Replica
	applied int
}

func (d *dryRun) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	d.applied += len(entries)
	return nil
}

func dryRunStats(ctx context.Context, a, b reconcile.Replica, naive bool) (reconcile.Stats, error) {
	return syncAllProgress(ctx, &dryRun{Replica: a}, &dryRun{Replica: b}, nil, naive)
}

// compareFullScans reads every user record of every replica and checks they
// are byte-identical. It returns the number of keys.
func compareFullScans(reps []*engine.Engine) (int, error) {
	iters := make([]*pebble.Iterator, len(reps))
	for i, e := range reps {
		it, err := e.DB().NewIter(&pebble.IterOptions{UpperBound: keyspace.InternalPrefix})
		if err != nil {
			return 0, err
		}
		defer it.Close()
		iters[i] = it
		it.First()
	}
	n := 0
	for {
		valid := iters[0].Valid()
		for i, it := range iters[1:] {
			if it.Valid() != valid {
				return n, fmt.Errorf("%s and %s hold different numbers of keys", reps[0].ReplicaID(), reps[i+1].ReplicaID())
			}
			if valid && (!bytes.Equal(it.Key(), iters[0].Key()) || !bytes.Equal(it.Value(), iters[0].Value())) {
				return n, fmt.Errorf("%s and %s differ at key %q", reps[0].ReplicaID(), reps[i+1].ReplicaID(), iters[0].Key())
			}
		}
		if !valid {
			return n, nil
		}
		n++
		for _, it := range iters {
			it.Next()
		}
	}
}

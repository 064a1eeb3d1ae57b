package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestRandomKeysAboveReservedRange: 10^6 uniformly random 16-byte keys, the
// first two bytes forced to 0xffff for half of them (so that about half sort
// around and above the reserved internal range), some of those given the
// internal prefix on purpose. Every key that does not start with the
// internal prefix is accepted; every key that does is refused with
// ErrReservedKey. The even keys go to replica A, the odd ones to B; one
// reconcile.SyncAll later both hold every accepted key and nothing else,
// their trees verify and their roots are equal.
func TestRandomKeysAboveReservedRange(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 20))
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000 // -short, or the race detector's ~10x
	}
	ctx := context.Background()
	// Partition 2 is [\xff\xff, end): it holds the high half and spans the
	// reserved range.
	pn, err := merkle.SplitPoints([][]byte{{0x80}, {0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	var reps [2]*Engine
	for i, id := range []record.ReplicaID{"a", "b"} {
		reps[i] = openMem(t, vfs.NewMem(), Options{ReplicaID: id, Partitioner: pn})
		defer reps[i].Close()
	}
	var accepted [][]byte
	reserved, above := 0, 0
	value := []byte("v")
	batches := [2]*Batch{reps[0].NewBatch(), reps[1].NewBatch()}
	for i := 0; i < n; i++ {
		k := make([]byte, 16)
		for j := 0; j < 16; j += 8 {
			v := rng.Uint64()
			for b := 0; b < 8; b++ {
				k[j+b] = byte(v >> (8 * b))
			}
		}
		if i%2 == 1 {
			k[0], k[1] = 0xff, 0xff
			if i%2000 == 1 {
				copy(k, keyspace.InternalPrefix) // 500 keys with the prefix
			}
		}
		b := batches[i%2]
		err := b.Put(k, value)
		if keyspace.IsUser(k) != !bytes.HasPrefix(k, keyspace.InternalPrefix) {
			t.Fatalf("IsUser(%x) disagrees with the prefix", k)
		}
		if bytes.HasPrefix(k, keyspace.InternalPrefix) {
			if !errors.Is(err, ErrReservedKey) {
				t.Fatalf("key %x with the internal prefix: got %v, want ErrReservedKey", k, err)
			}
			reserved++
			continue
		}
		if err != nil {
			t.Fatalf("key %x: %v", k, err)
		}
		if bytes.Compare(k, keyspace.InternalEnd) >= 0 {
			above++
		}
		accepted = append(accepted, k)
		if b.Len() >= 1000 {
			if err := b.Commit(ctx, NoSync); err != nil {
				t.Fatal(err)
			}
			batches[i%2] = reps[i%2].NewBatch()
		}
	}
	for _, b := range batches {
		if err := b.Commit(ctx, NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if reserved == 0 || above < len(accepted)/4 {
		t.Fatalf("reserved %d, above the reserved range %d of %d: the test does not test", reserved, above, len(accepted))
	}
	t.Logf("%d keys accepted (%d above the reserved range), %d with the internal prefix refused", len(accepted), above, reserved)

	st, err := reconcile.SyncAll(ctx, reps[0], reps[1], reconcile.SyncOptions{Session: reconcile.SessionConfig{Strict: true}})
	if err != nil {
		t.Fatal(err)
	}
	var total reconcile.Stats
	for _, s := range st {
		total = total.Add(s)
	}
	t.Logf("session: %s", total)

	slices.SortFunc(accepted, bytes.Compare)
	for _, e := range reps {
		if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
			t.Fatalf("%s: verify: %v %v", e.ReplicaID(), err, ms)
		}
		it, err := merkle.NewUserIter(ctx, e.DB(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for valid := it.First(); valid; valid = it.Next() {
			if i >= len(accepted) || !bytes.Equal(it.Key(), accepted[i]) {
				t.Fatalf("%s: key %d is %x, want the accepted keys exactly", e.ReplicaID(), i, it.Key())
			}
			i++
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		if i != len(accepted) {
			t.Fatalf("%s holds %d keys, want %d", e.ReplicaID(), i, len(accepted))
		}
	}
	for p := 0; p < pn.NumPartitions(); p++ {
		var roots [2]merkle.Fingerprint
		for i, e := range reps {
			if roots[i], err = e.Tree().RangeFingerprint(ctx, p, merkle.Range{}); err != nil {
				t.Fatal(err)
			}
		}
		if roots[0] != roots[1] {
			t.Fatalf("partition %d: roots differ after the session", p)
		}
	}
	// A key of the high half reads back, and one with the prefix does not
	// exist.
	if _, err := reps[1].Get(ctx, accepted[len(accepted)-1]); err != nil {
		t.Fatal(err)
	}
	if _, err := reps[1].Get(ctx, keyspace.Key(keyspace.SpaceMeta, []byte("gen"))); !errors.Is(err, ErrReservedKey) {
		t.Fatalf("Get of an internal key: %v, want ErrReservedKey", err)
	}
}

// TestDeleteRangeAcrossReservedRange deletes a range that spans the reserved
// key space: the user keys on both sides go, the engine's own state stays
// (the tree verifies, before and after a reopen).
func TestDeleteRangeAcrossReservedRange(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	e := openMem(t, fs, Options{Tree: merkle.Params{LeafSize: 4}})
	keys := []string{"a", "\xff\xfe", "\xff\xffad", "\xff\xffae", "\xff\xffae\x01", "\xff\xffaf", "\xff\xff\xff\xff"}
	for _, k := range keys {
		if err := e.Put(ctx, []byte(k), []byte("v"), nil); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	if err := e.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.DeleteRange(ctx, []byte("\xff\xffad"), []byte("\xff\xffag"), nil); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, k := range keys {
			_, err := e.Get(ctx, []byte(k))
			gone := k >= "\xff\xffad" && k < "\xff\xffag"
			if gone != errors.Is(err, ErrNotFound) || (!gone && err != nil) {
				t.Fatalf("get %q after the range delete: %v", k, err)
			}
		}
		if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
			t.Fatalf("verify: %v %v", err, ms)
		}
	}
	check()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openMem(t, fs, Options{Tree: merkle.Params{LeafSize: 4}})
	defer e.Close()
	check()
}

// TestOpenRelease0DB opens a copy of a database written by the release that
// reserved every key at or above the internal prefix (testdata/
// release-0-db, see its README: dirty markers ending at the internal prefix,
// closed without a checkpoint). It needs no migration and no rebuild: such a
// database holds no user key above the internal range, so its tree, markers
// and records mean the same under the prefix layout. It opens ready, its
// tree verifies, every record reads back, and keys above the reserved range
// can then be written, verified, checkpointed, reopened and replicated.
func TestOpenRelease0DB(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "db")
	copyDir(t, filepath.Join("testdata", "release-0-db"), dir)
	pn, _ := merkle.SplitPoints([][]byte{[]byte("k5")})
	opts := &Options{ReplicaID: "old", Tree: merkle.Params{LeafSize: 8}, Partitioner: pn, CheckpointInterval: -1}
	e, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The old database has no entry index: its partitions are rebuilt
	// once, in the background (CheckpointInterval -1 leaves that to us).
	if nr := e.NotReady(); len(nr) != pn.NumPartitions() {
		t.Fatalf("partitions not ready: %v; want every partition rebuilt for its entry index", nr)
	}
	if err := e.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if nr := e.NotReady(); len(nr) > 0 {
		t.Fatalf("partitions %v not ready after the rebuild", nr)
	}
	if err := e.tree.Corruption(); err != nil {
		t.Fatalf("old tree state read as corrupt: %v", err)
	}
	want := map[string]string{"k999": "in the WAL only", "\xff\xfe": "high", "\xff\xffa": "high", "\xff\xffad\xff\xff": "high", "\xff\xffad\xff\xff\xff": "high2"}
	for i := 0; i < 450; i++ {
		if i%7 == 0 && i < 140 {
			continue
		}
		want[fmt.Sprintf("k%03d", i)] = fmt.Sprint("v", i)
	}
	checkAll := func(e *Engine) {
		t.Helper()
		for k, v := range want {
			got, err := e.Get(ctx, []byte(k))
			if err != nil || string(got) != v {
				t.Fatalf("%s: get %q = %q, %v; want %q", e.ReplicaID(), k, got, err, v)
			}
		}
		it, err := merkle.NewUserIter(ctx, e.DB(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for valid := it.First(); valid; valid = it.Next() {
			n++
		}
		_ = it.Close()
		if n != len(want)+20 { // the 20 deleted keys are tombstones
			t.Fatalf("%s: %d user keys, want %d", e.ReplicaID(), n, len(want)+20)
		}
		if ms, err := e.Verify(ctx); err != nil || len(ms) > 0 {
			t.Fatalf("%s: verify: %v %v", e.ReplicaID(), err, ms)
		}
	}
	checkAll(e)
	for _, k := range []string{"\xff\xffae\x01", "\xff\xffb", "\xff\xff\xff\xff\xff"} {
		if err := e.Put(ctx, []byte(k), []byte("new"), nil); err != nil {
			t.Fatalf("put %q: %v", k, err)
		}
		want[k] = "new"
	}
	checkAll(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	checkAll(e)
	fresh := openMem(t, vfs.NewMem(), Options{ReplicaID: "new", Tree: merkle.Params{LeafSize: 8}, Partitioner: pn})
	defer fresh.Close()
	if _, err := reconcile.SyncAll(ctx, e, fresh, reconcile.SyncOptions{Session: reconcile.SessionConfig{Strict: true}}); err != nil {
		t.Fatal(err)
	}
	checkAll(fresh)
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		src, err := os.Open(filepath.Join(from, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

package engine

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestFormat1RecordsMigrate opens a DB whose records an earlier release
// wrote in format 1 (record.RecordFormatV1) next to a replica holding
// the same records in format 2: the format-1 replica serves its records,
// the two roots differ only by the encodings, and one session rewrites the
// format-1 side in format 2, after which both replicas hold identical
// bytes and equal roots.
func TestFormat1RecordsMigrate(t *testing.T) {
	ctx := context.Background()
	const n = 300
	recs := make([]record.Record, n)
	key := func(i int) []byte { return []byte(fmt.Sprintf("k%04d", i)) }
	for i := range recs {
		recs[i] = record.NewLWW("old", record.Timestamp{WallTime: int64(1000 + i), Logical: uint32(i % 3)}, []byte(fmt.Sprint("value-", i)), i%10 == 0)
	}

	// Replica A: written by the earlier release, in format 1.
	fs := vfs.NewMem()
	db, err := pebble.Open("a", &pebble.Options{FS: fs, FormatMajorVersion: FormatMajorVersion, Merger: newMerger(record.LWW{}, nil), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if err := db.Set(key(i), r.AppendEncodeV1(nil), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := Open("a", &Options{ReplicaID: "a", FS: fs, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Replica B: the same records, applied in format 2.
	b, err := Open("b", &Options{ReplicaID: "b", FS: fs, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	entries := make([]reconcile.Entry, n)
	for i, r := range recs {
		entries[i] = reconcile.Entry{Key: key(i), Record: r.Encode()}
	}
	if err := b.Apply(ctx, 0, entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Engine{a, b} {
		if err := e.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A reads its format-1 records as the records they are.
	for _, i := range []int{1, 2, 57} {
		v, err := a.Get(ctx, key(i))
		if err != nil || !bytes.Equal(v, recs[i].Winner().Value) {
			t.Fatalf("Get %s on the format-1 replica = %q, %v; want %q", key(i), v, err, recs[i].Winner().Value)
		}
	}
	stored := func(e *Engine, i int) []byte {
		v, closer, err := e.db.Get(key(i))
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		return append([]byte(nil), v...)
	}
	if got := stored(a, 5); got[0] != record.RecordFormatV1 {
		t.Fatalf("A stores %x, want format 1 before the session", got)
	}
	root := func(e *Engine) merkle.Fingerprint {
		fp, err := e.Tree().RangeFingerprint(ctx, 0, merkle.Range{})
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	if ra, rb := root(a), root(b); ra == rb || ra.Count != n || rb.Count != n {
		t.Fatalf("roots before the session: %+v and %+v; want %d records each, different sums", ra, rb, n)
	}

	st, err := reconcile.SyncPartition(ctx, a, b, 0, reconcile.SyncOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Converged || st.A.KeysRepaired != n || st.B.KeysRepaired != 0 {
		t.Fatalf("session: %s; want converged with all %d keys rewritten on A and none on B", st, n)
	}
	for i := range recs {
		ga, gb := stored(a, i), stored(b, i)
		if !bytes.Equal(ga, gb) || ga[0] != record.RecordFormatVersion {
			t.Fatalf("key %s after the session: A %x, B %x; want the same format-2 bytes", key(i), ga, gb)
		}
	}
	if ra, rb := root(a), root(b); ra != rb {
		t.Fatalf("roots after the session differ: %+v and %+v", ra, rb)
	}
	mustVerify(t, a)
	mustVerify(t, b)
}

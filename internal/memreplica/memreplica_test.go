package memreplica_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
	"github.com/pebble-ae/pebble-ae/internal/memreplica"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// TestDigestFormulasMatchMerkle checks that reconcile's Pebble-free copies of
// the hash formulas equal merkle's.
func TestDigestFormulasMatchMerkle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		key := fmt.Appendf(nil, "key%d", rng.IntN(1<<20))
		val := make([]byte, rng.IntN(300))
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		md, _ := merkle.LeafDigest(nil, key, val)
		rd, _ := reconcile.LeafDigest(nil, key, val)
		if md != merkle.Digest(rd) || md.Short() != reconcile.ShortDigest(rd) || md.Short() != reconcile.EntryDigest(key, val) {
			t.Fatalf("leaf digest %d differs", i)
		}
		fp := merkle.Fingerprint{Sum: merkle.Sum{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}, Count: uint64(i)}
		if fp.Short() != reconcile.FingerprintHash(fp.Sum.Bytes(), fp.Count) {
			t.Fatalf("fingerprint hash %d differs", i)
		}
		p := merkle.Params{LeafSize: 8}
		if p.IsBoundary(key) != (memreplica.Rank(0, key) < ^uint64(0)/8) {
			t.Fatalf("boundary of %q differs", key)
		}
	}
}

// TestMatchesMerkleTree loads the same records into a merkle tree over Pebble
// and a memreplica and compares fingerprints and child ranges.
func TestMatchesMerkleTree(t *testing.T) {
	ctx := context.Background()
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tree, err := merkle.Open(db, &merkle.Options{Params: merkle.Params{LeafSize: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	mem, _ := memreplica.New(memreplica.Options{LeafSize: 8})
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b := hooks.NewBatch(db.NewBatch())
		for range 50 {
			key := fmt.Appendf(nil, "k%05d", rng.IntN(100000))
			rec := record.NewLWW("a", record.Timestamp{WallTime: rng.Int64N(1 << 40)}, []byte("v"), false)
			if err := b.Set(key, rec.Encode()); err != nil {
				t.Fatal(err)
			}
			mem.Set(key, rec)
		}
		if err := hooks.Commit(db, tree.Hook(), b, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	ranges := []merkle.Range{{}, {Start: []byte("k2"), End: []byte("k7")}, {Start: []byte("k33"), End: []byte("k34")}}
	for _, r := range ranges {
		for _, fanout := range []int{2, 4, 16} {
			want, err := tree.Children(ctx, 0, r, fanout)
			if err != nil {
				t.Fatal(err)
			}
			got, err := mem.RangeHash(ctx, reconcile.RangeHashRequest{Ranges: []reconcile.KeyRange{{Start: r.Start, End: r.End}}, Fanout: fanout})
			if err != nil {
				t.Fatal(err)
			}
			cs := got[0].Children
			if len(cs) != len(want) {
				t.Fatalf("range %q fanout %d: %d children, merkle %d", r, fanout, len(cs), len(want))
			}
			for i := range cs {
				w := want[i]
				if !bytes.Equal(cs[i].Range.Start, w.Range.Start) && !(len(cs[i].Range.Start) == 0 && len(w.Range.Start) == 0) ||
					!bytes.Equal(cs[i].Range.End, w.Range.End) ||
					cs[i].Fingerprint.Count != w.Fingerprint.Count || cs[i].Fingerprint.Hash != w.Fingerprint.Short() {
					t.Fatalf("range %q fanout %d child %d: %s %d vs merkle [%q,%q) %d", r, fanout, i, cs[i].Range, cs[i].Fingerprint.Count, w.Range.Start, w.Range.End, w.Fingerprint.Count)
				}
			}
		}
	}
}

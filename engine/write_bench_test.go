package engine

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// benchKey writes the i-th benchmark key (16 bytes, spread over the user key
// space) into key.
func benchKey(key []byte, i uint64) []byte {
	binary.BigEndian.PutUint64(key, i*0x9e3779b97f4a7c15>>1)
	binary.BigEndian.PutUint64(key[8:], i)
	return key
}

// BenchmarkCausalPut measures one causal Put (read-modify-write of a 100-byte
// value) on an in-memory file system, over a key set of 10,000 keys so that
// most puts overwrite a record with siblings' worth of context.
func BenchmarkCausalPut(b *testing.B) {
	e := openMem(b, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer e.Close()
	ctx := context.Background()
	key, value := make([]byte, 16), make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := e.Put(ctx, benchKey(key, uint64(i%10_000)), value, NoSync); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCausalPutNew is BenchmarkCausalPut on keys that are all new (the
// read finds nothing), as in `pebble-ae bench write --mode causal`.
func BenchmarkCausalPutNew(b *testing.B) {
	e := openMem(b, vfs.NewMem(), Options{Mode: record.ModeCausal})
	defer e.Close()
	ctx := context.Background()
	key, value := make([]byte, 16), make([]byte, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := e.Put(ctx, benchKey(key, uint64(i)), value, NoSync); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLWWBatch measures a batch of 100 blind LWW puts of new keys
// (16-byte keys, 100-byte values) on an in-memory file system.
func BenchmarkLWWBatch(b *testing.B) {
	e := openMem(b, vfs.NewMem(), Options{})
	defer e.Close()
	ctx := context.Background()
	key, value := make([]byte, 16), make([]byte, 100)
	var n uint64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		batch := e.NewBatch()
		for range 100 {
			if err := batch.Put(benchKey(key, n), value); err != nil {
				b.Fatal(err)
			}
			n++
		}
		if err := batch.Commit(ctx, NoSync); err != nil {
			b.Fatal(err)
		}
	}
}

package merkle

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/pebble-ae/pebble-ae/hooks"
)

// TestCorruptTreeStateIsRebuilt corrupts the persisted tree on disk in
// several ways; Open reports the corruption and rebuilds the tree from the
// data instead of failing, and the data is untouched.
func TestCorruptTreeStateIsRebuilt(t *testing.T) {
	for _, c := range []struct {
		name    string
		corrupt func(b *pebble.Batch) error
	}{
		{"truncated leaf record", func(b *pebble.Batch) error { return b.Set(leafKey(0, []byte("k0100")), []byte{0, 1, 2}, nil) }},
		{"leaf record with unknown flags", func(b *pebble.Batch) error {
			return b.Set(leafKey(0, []byte("k0100")), append([]byte{0x80}, make([]byte, 34)...), nil)
		}},
		{"truncated leaf key", func(b *pebble.Batch) error { return b.Set(append(leafPrefix, 0, 0), make([]byte, 34), nil) }},
		{"leaf of an unknown partition", func(b *pebble.Batch) error { return b.Set(leafKey(7, []byte("x")), make([]byte, 34), nil) }},
		{"truncated marker key", func(b *pebble.Batch) error { return b.Set(append(markerPrefix, 1, 2, 3), nil, nil) }},
		{"marker with a bad value", func(b *pebble.Batch) error { return b.Set(markerKey(1, 0, []byte("k")), []byte("?"), nil) }},
		{"span marker with a bad length", func(b *pebble.Batch) error {
			return b.Set(markerKey(1, 0, []byte{0x7f, 'k'}), markerSpanValue, nil)
		}},
		{"missing partition start leaf", func(b *pebble.Batch) error { return b.Delete(leafKey(0, []byte{}), nil) }},
		{"truncated generation", func(b *pebble.Batch) error { return b.Set(genKey, []byte{1}, nil) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h := openHarness(t, vfs.NewMem(), Options{Params: Params{LeafSize: 8}})
			h.commit(func(b *hooks.Batch) error {
				for i := 0; i < 500; i++ {
					k, v := []byte(fmt.Sprintf("k%04d", i)), []byte("v")
					h.model[string(k)] = v
					if err := b.Set(k, v); err != nil {
						return err
					}
				}
				return nil
			}, true)
			if err := h.tree.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			b := h.db.NewBatch()
			if err := c.corrupt(b); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			h.close()
			h.open() // rebuilds (openHarness runs Rebuild)
			defer h.close()
			if err := h.tree.Corruption(); !errors.Is(err, ErrCorruption) {
				t.Fatalf("Corruption() = %v, want ErrCorruption", err)
			}
			h.verifyClean()
			got, err := h.tree.RangeFingerprint(ctx, 0, Range{})
			if err != nil {
				t.Fatal(err)
			}
			if want := h.modelFingerprint(nil, nil); got != want {
				t.Fatalf("root after rebuild: %d keys, want %d", got.Count, want.Count)
			}
		})
	}
}

// TestOldMarkersStillRead: point and range markers, which releases before
// span markers wrote, still make recovery recompute their leaves.
func TestOldMarkersStillRead(t *testing.T) {
	for _, c := range []struct {
		name  string
		value []byte
	}{
		{"point", nil},
		{"range", append([]byte{markerRange}, "k0300"...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			h := openHarness(t, vfs.NewMem(), Options{Params: Params{LeafSize: 8}})
			defer func() { h.close() }()
			set := func(k, v string) {
				h.model[k] = []byte(v)
				h.commit(func(b *hooks.Batch) error { return b.Set([]byte(k), []byte(v)) }, false)
			}
			for i := 0; i < 500; i++ {
				set(fmt.Sprintf("k%04d", i), "v1")
			}
			h.verifyClean()
			if err := h.tree.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			// A change the tree is not told about, covered only by an old
			// marker of the current generation.
			h.model["k0250"] = []byte("v2")
			b := h.db.NewBatch()
			h.tree.mu.Lock()
			gen := h.tree.mu.gen
			h.tree.mu.Unlock()
			if err := b.Set([]byte("k0250"), []byte("v2"), nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Set(markerKey(gen, 0, []byte("k0250")), c.value, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(pebble.Sync); err != nil {
				t.Fatal(err)
			}
			h.close()
			h.open()
			if err := h.tree.Corruption(); err != nil {
				t.Fatalf("Corruption() = %v", err)
			}
			h.verifyClean()
			got, err := h.tree.RangeFingerprint(ctx, 0, Range{})
			if err != nil {
				t.Fatal(err)
			}
			if want := h.modelFingerprint(nil, nil); got != want {
				t.Fatalf("root after recovery: the old %s marker was not honoured", c.name)
			}
		})
	}
}

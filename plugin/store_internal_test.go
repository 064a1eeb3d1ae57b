package plugin

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
)

// TestPackedWrites: a batch survives the packed encoding exactly, and
// every truncation or corruption of it is a bad request, never a panic.
func TestPackedWrites(t *testing.T) {
	var b engine.WriteBatch
	b.Put([]byte("k1"), []byte("v1"))
	b.Put([]byte("k2"), []byte{}) // empty value, not absent
	b.Delete([]byte("k3"))
	b.PutContext([]byte("k4"), []byte("v4"), []byte{1, 2, 3})
	b.DeleteContext([]byte("k5"), []byte{4})
	req := toPBWrite(&b, true)
	var got engine.WriteBatch
	if err := fromPBWrite(req, &got); err != nil {
		t.Fatal(err)
	}
	if got.Len() != b.Len() {
		t.Fatalf("%d writes, want %d", got.Len(), b.Len())
	}
	for i, op := range got.Ops() {
		want := b.Ops()[i]
		if op.Kind != want.Kind || !bytes.Equal(op.Key, want.Key) || !bytes.Equal(op.Value, want.Value) ||
			(op.Value == nil) != (want.Value == nil) || !bytes.Equal(op.Context, want.Context) {
			t.Errorf("write %d = %+v, want %+v", i, op, want)
		}
	}
	for n := range len(req.Ops) {
		var bad engine.WriteBatch
		err := fromPBWrite(&pb.WriteRequest{Ops: req.Ops[:n], Count: req.Count}, &bad)
		if !errors.Is(err, engine.ErrBadRequest) {
			t.Fatalf("truncated to %d bytes: %v, want ErrBadRequest", n, err)
		}
	}
	extra := &pb.WriteRequest{Ops: append(bytes.Clone(req.Ops), 0), Count: req.Count}
	if err := fromPBWrite(extra, &engine.WriteBatch{}); !errors.Is(err, engine.ErrBadRequest) {
		t.Fatalf("trailing bytes: %v", err)
	}
	kind := &pb.WriteRequest{Ops: append([]byte{9}, req.Ops[1:]...), Count: req.Count}
	if err := fromPBWrite(kind, &engine.WriteBatch{}); !errors.Is(err, engine.ErrBadRequest) {
		t.Fatalf("unknown kind: %v", err)
	}
}

package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Write applies the writes of b atomically (KV.Write): every write is
// validated first, and one bad write refuses the whole batch with nothing
// written. The writes then go into one Pebble batch that passes the write
// hooks (the tree's among them) once and commits once; concurrent Writes
// share Pebble's group commit.
//
// In LWW mode nothing is read. In causal mode Write takes the per-key
// stripe locks of all the batch's keys (in stripe order, so two batches
// never deadlock) and reads each key's current record under them, as
// PutContext does for one key.
func (e *Engine) Write(ctx context.Context, b *WriteBatch, wo *WriteOptions) error {
	if f := e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	if b == nil || b.Len() == 0 {
		return nil
	}
	causal := e.opts.Mode == record.ModeCausal
	var contexts []record.VersionVector
	if causal {
		contexts = make([]record.VersionVector, b.Len())
	}
	for i, op := range b.ops {
		if err := e.checkOp(op, causal); err != nil {
			return fmt.Errorf("engine: batch write %d (%s %q): %w", i, op.Kind, op.Key, err)
		}
		if causal && len(op.Context) > 0 {
			vv, err := record.DecodeContext(op.Context)
			if err != nil {
				return fmt.Errorf("engine: batch write %d (%s %q): %w", i, op.Kind, op.Key, err)
			}
			contexts[i] = vv
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if causal {
		return e.writeCausal(b, contexts, wo)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	hb := e.getBatch()
	defer e.putBatch(hb)
	ts := e.clock.Now()
	for i, op := range b.ops {
		if i > 0 {
			ts = e.clock.Next()
		}
		if err := setLWW(hb, op.Key, e.opts.ReplicaID, ts, op.Value, op.Kind == OpDelete); err != nil {
			return err
		}
	}
	return e.commit(hb, wo)
}

// checkOp validates one write of a batch for the engine's mode.
func (e *Engine) checkOp(op WriteOp, causal bool) error {
	switch op.Kind {
	case OpPut, OpDelete:
	case OpPutContext, OpDeleteContext:
		if !causal {
			return fmt.Errorf("%w: %s needs causal mode", ErrWrongMode, op.Kind)
		}
	default:
		return fmt.Errorf("%w: unknown write kind %d", ErrBadRequest, op.Kind)
	}
	if err := e.CheckKey(op.Key); err != nil {
		return err
	}
	if (op.Kind == OpDelete || op.Kind == OpDeleteContext) && len(op.Value) > 0 {
		return fmt.Errorf("%w: a delete carries no value", ErrBadRequest)
	}
	if !causal && len(op.Context) > 0 {
		return fmt.Errorf("%w: a causal context in LWW mode", ErrWrongMode)
	}
	return e.checkValue(op.Value)
}

// writeCausal commits a validated causal batch: under the stripe locks of
// all its keys, each write reads its key's record and sets the causal put
// over it (what causalWrite does for one key).
func (e *Engine) writeCausal(b *WriteBatch, contexts []record.VersionVector, wo *WriteOptions) error {
	stripes := make([]int, 0, b.Len())
	keys := make([][]byte, 0, b.Len())
	for _, op := range b.ops {
		stripes = append(stripes, e.stripe(op.Key))
		keys = append(keys, op.Key)
	}
	slices.SortFunc(keys, bytes.Compare)
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i], keys[i-1]) {
			return fmt.Errorf("%w: key %q written twice in one causal batch", ErrBadRequest, keys[i])
		}
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	for _, s := range stripes {
		e.causalLocks[s].Lock()
	}
	defer func() {
		for _, s := range stripes {
			e.causalLocks[s].Unlock()
		}
	}()
	hb := e.getBatch()
	defer e.putBatch(hb)
	var enc []byte
	for i, op := range b.ops {
		var cur record.Record
		v, closer, err := e.rd.Get(op.Key)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			return err
		default:
			cur, err = record.DecodeRecord(v)
			if err != nil {
				_ = closer.Close()
				return fmt.Errorf("engine: key %q: %w", op.Key, err)
			}
		}
		vv := contexts[i]
		tombstone := op.Kind == OpDelete || op.Kind == OpDeleteContext
		if op.Kind == OpDelete {
			vv = cur.Context
		}
		enc = record.AppendCausalPut(enc[:0], cur, vv, e.opts.ReplicaID, e.clock.Now(), op.Value, tombstone)
		err = hb.Set(op.Key, enc)
		if closer != nil {
			_ = closer.Close()
		}
		if err != nil {
			return err
		}
	}
	return e.commit(hb, wo)
}

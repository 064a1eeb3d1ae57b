package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/internal/keyspace"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// scanCheckEvery is how many keys a Scan reads between checks of its
// context.
const scanCheckEvery = 1024

// GetMany reads keys from one snapshot (KV.GetMany). The items' slices
// belong to the caller.
func (e *Engine) GetMany(ctx context.Context, keys [][]byte, ro *ReadOptions) ([]Item, error) {
	if f := e.opts.ObserveForeground; f != nil {
		defer observe(f, time.Now())
	}
	if len(keys) > MaxKeysPerRequest {
		return nil, fmt.Errorf("%w: %d keys > %d", ErrBadRequest, len(keys), MaxKeysPerRequest)
	}
	if ro.versions() && e.opts.Mode != record.ModeCausal {
		return nil, fmt.Errorf("%w: versions need causal mode", ErrWrongMode)
	}
	for i, k := range keys {
		if err := e.CheckKey(k); err != nil {
			return nil, fmt.Errorf("engine: key %d: %w", i, err)
		}
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	snap := e.rd.NewSnapshot()
	defer snap.Close()
	out := make([]Item, len(keys))
	var dec record.RecordDecoder
	for i, k := range keys {
		if i%scanCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i].Key = append([]byte(nil), k...)
		v, closer, err := snap.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		rec, err := dec.Decode(v)
		if err != nil {
			_ = closer.Close()
			return nil, fmt.Errorf("engine: key %q: %w", k, err)
		}
		// Copy out: the record aliases Pebble's memory and the decoder's.
		it := itemOf(k, rec, ro.versions())
		out[i] = Item{Key: out[i].Key, Found: it.Found, Value: cloneNonNil(it.Value), Context: it.Context}
		for _, s := range it.Versions {
			out[i].Versions = append(out[i].Versions, cloneNonNil(s))
		}
		_ = closer.Close()
	}
	dec.Release()
	return out, nil
}

// cloneNonNil copies b, keeping a live empty value non-nil.
func cloneNonNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// itemOf is key's Item for rec. Value and Versions alias rec; Context is
// newly encoded.
func itemOf(key []byte, rec record.Record, versions bool) Item {
	it := Item{Key: key}
	if w := rec.Winner(); !w.Tombstone && len(rec.Siblings) > 0 {
		it.Found, it.Value = true, w.Value
		if it.Value == nil {
			it.Value = []byte{}
		}
	}
	if versions {
		for _, s := range rec.Siblings {
			if !s.Tombstone {
				v := s.Value
				if v == nil {
					v = []byte{}
				}
				it.Versions = append(it.Versions, v)
			}
		}
		it.Context = record.EncodeContext(rec.Context)
	}
	return it
}

// CheckScan validates a scan request (the checks Scan makes before
// reading): bounds in the user key space, Start < End for a non-empty End,
// a non-negative limit, versions only in causal mode.
func (e *Engine) CheckScan(req ScanRequest) error {
	if req.Limit < 0 {
		return fmt.Errorf("%w: negative scan limit %d", ErrBadRequest, req.Limit)
	}
	if len(req.Start) > 0 && !keyspace.IsUser(req.Start) {
		return fmt.Errorf("%w: scan start: %w: %q", ErrBadRequest, ErrReservedKey, req.Start)
	}
	if len(req.End) > 0 {
		if string(req.End) > string(keyspace.InternalPrefix) {
			return fmt.Errorf("%w: scan end: %w: %q", ErrBadRequest, ErrReservedKey, req.End)
		}
		if string(req.Start) >= string(req.End) {
			return fmt.Errorf("%w: %w: scan range [%q, %q) is empty or inverted", ErrBadRequest, merkle.ErrInvalidRange, req.Start, req.End)
		}
	}
	if req.Versions && e.opts.Mode != record.ModeCausal {
		return fmt.Errorf("%w: versions need causal mode", ErrWrongMode)
	}
	return nil
}

// Scan calls fn with the live keys of a range from one snapshot (KV.Scan):
// a Pebble iterator over [req.Start, req.End), records decoded in place.
// The Item's slices alias the iterator's memory and are valid only until fn
// returns.
func (e *Engine) Scan(ctx context.Context, req ScanRequest, fn func(Item) error) ([]byte, error) {
	if err := e.CheckScan(req); err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	upper := keyspace.InternalPrefix
	if len(req.End) > 0 {
		upper = req.End
	}
	it, err := e.rd.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: req.Start, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var dec record.RecordDecoder
	defer dec.Release()
	n, seen := 0, 0
	for valid := it.First(); valid; valid = it.Next() {
		if seen++; seen%scanCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if req.Limit > 0 && n == req.Limit {
			return append([]byte(nil), it.Key()...), nil
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		rec, err := dec.Decode(v)
		if err != nil {
			return nil, fmt.Errorf("engine: key %q: %w", it.Key(), err)
		}
		item := itemOf(it.Key(), rec, req.Versions)
		if !item.Found && len(item.Versions) == 0 {
			continue
		}
		if err := fn(item); err != nil {
			return nil, err
		}
		n++
	}
	return nil, it.Error()
}

package engine

import (
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// MergerName is the name of the engine's Pebble merger when the application
// has none of its own.
const MergerName = "pebble-ae.record.v1"

// newMerger returns the engine's Pebble merger: it merges pebble-ae records
// with the resolver, and hands merges of anything else to the application's
// merger (if any), whose name it then takes.
func newMerger(resolver record.Resolver, app *pebble.Merger) *pebble.Merger {
	name := MergerName
	if app != nil {
		name = app.Name
	}
	return &pebble.Merger{
		Name: name,
		Merge: func(key, value []byte) (pebble.ValueMerger, error) {
			rec, err := record.DecodeRecord(append([]byte(nil), value...))
			if err != nil {
				if app != nil {
					return app.Merge(key, value)
				}
				return nil, fmt.Errorf("engine: merge of key %q: %w", key, err)
			}
			return &recordMerger{key: append([]byte(nil), key...), rec: rec, resolver: resolver}, nil
		},
	}
}

// recordMerger folds operands with the resolver; since the resolver is
// commutative and associative, the order of MergeNewer/MergeOlder does not
// matter.
type recordMerger struct {
	key      []byte
	rec      record.Record
	resolver record.Resolver
}

func (m *recordMerger) add(value []byte) error {
	r, err := record.DecodeRecord(append([]byte(nil), value...))
	if err != nil {
		return fmt.Errorf("engine: merge of key %q: %w", m.key, err)
	}
	m.rec, err = m.resolver.Resolve(m.key, m.rec, r)
	return err
}

func (m *recordMerger) MergeNewer(value []byte) error { return m.add(value) }
func (m *recordMerger) MergeOlder(value []byte) error { return m.add(value) }

func (m *recordMerger) Finish(bool) ([]byte, io.Closer, error) {
	return m.rec.Encode(), nil, nil
}

// Merger returns the engine's Pebble merger for the given resolver and
// application merger (nil: none): for tools that open an engine's directory
// with Pebble directly, such as `pebble-ae debug pebble`.
func Merger(resolver record.Resolver, app *pebble.Merger) *pebble.Merger {
	return newMerger(resolver, app)
}

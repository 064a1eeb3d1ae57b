package reconcile

import (
	"context"
	"testing"
)

type plainReplica struct{ Replica }

type sketchReplica struct{ Replica }

func (sketchReplica) RangeSketch(context.Context, RangeSketchRequest) (RangeSketchResult, error) {
	return RangeSketchResult{}, nil
}
func (sketchReplica) FetchByHash(context.Context, FetchByHashRequest) ([]Entry, error) {
	return nil, nil
}

type bothReplica struct{ sketchReplica }

func (bothReplica) ApplyAndHash(context.Context, uint32, []Entry, []KeyRange) ([]RangeHash, error) {
	return nil, nil
}

// TestThrottledKeepsOptionalInterfaces: a throttled replica offers exactly
// the optional interfaces of the replica it wraps.
func TestThrottledKeepsOptionalInterfaces(t *testing.T) {
	for _, c := range []struct {
		name               string
		r                  Replica
		sketcher, confirms bool
	}{
		{"plain", plainReplica{}, false, false},
		{"sketcher", sketchReplica{}, true, false},
		{"both", bothReplica{}, true, true},
	} {
		w := ThrottledReplica{Replica: c.r}.Throttled()
		_, s := w.(Sketcher)
		_, a := w.(ApplyConfirmer)
		if s != c.sketcher || a != c.confirms {
			t.Errorf("%s: sketcher=%t confirmer=%t, want %t %t", c.name, s, a, c.sketcher, c.confirms)
		}
	}
}

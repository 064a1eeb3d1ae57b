package engine

import (
	"context"
	"fmt"

	"github.com/pebble-ae/pebble-ae/merkle"
)

// RebuildNotReady rebuilds the tree of every partition that is not ready
// (see merkle.Tree.Rebuild), throttled by Options.Throttle. progress, if not
// nil, is called after each chunk with the partition and the keys scanned so
// far in it. It is the repair loop's lazy rebuild task; the engine's own
// background worker also rebuilds at open.
func (e *Engine) RebuildNotReady(ctx context.Context, progress func(part int, keys uint64)) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.exit()
	return e.tree.Rebuild(ctx, progress)
}

// NotReady returns the partitions whose tree is not ready.
func (e *Engine) NotReady() []int {
	var out []int
	for _, p := range e.tree.Partitions() {
		if !p.Ready {
			out = append(out, p.ID)
		}
	}
	return out
}

// Scrub verifies the tree against the data (merkle.Tree.Verify, throttled
// by Options.Throttle) and repairs it: every partition with a mismatch is
// marked for rebuild and rebuilt. It returns the mismatches found (nil: the
// tree was correct). While a partition rebuilds it is not ready, and repair
// sessions skip it.
func (e *Engine) Scrub(ctx context.Context, progress func(part int, keys uint64)) ([]merkle.Mismatch, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.exit()
	ms, err := e.tree.Verify(ctx)
	if err != nil {
		return nil, fmt.Errorf("engine: scrub: %w", err)
	}
	bad := map[int]bool{}
	for _, m := range ms {
		if !bad[m.Partition] {
			bad[m.Partition] = true
			e.opts.Logger.Error("scrub: tree mismatch; rebuilding partition", "partition", m.Partition, "mismatch", m.String())
			if err := e.tree.MarkRebuild(ctx, m.Partition); err != nil {
				return ms, fmt.Errorf("engine: scrub: partition %d: %w", m.Partition, err)
			}
		}
	}
	if len(bad) == 0 {
		return nil, nil
	}
	if err := e.tree.Rebuild(ctx, progress); err != nil {
		return ms, fmt.Errorf("engine: scrub: %w", err)
	}
	return ms, nil
}

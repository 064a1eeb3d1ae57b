package node

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/internal/units"
	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"github.com/pebble-ae/pebble-ae/reconcile/repair"
)

// repairer backs the Repair and Status calls of a node: it runs
// sessions on demand with a named peer, remembers the last sessions (of the
// loop and on demand), and describes the throttles and admission control.
type repairer struct {
	local     reconcile.Replica
	peers     map[record.ReplicaID]reconcile.Replica
	throttles []*repair.Throttle
	adm       *repair.Admission
	// maxPending is the sessions' SessionConfig.MaxPendingBytes.
	maxPending int64

	// eng, if set, reports its clock guard (Background).
	eng *engine.Engine

	mu   sync.Mutex
	loop *repair.Loop            // the node's repair loop, if any
	last []plugin.SessionSummary // newest last, at most keepSessions
	// clocks is what the sessions learned of each peer's clock.
	clocks map[record.ReplicaID]*peerClock
}

// peerClock is what sessions learned of a peer's clock.
type peerClock struct {
	skew        time.Duration // the peer's clock minus ours, last measured
	refused     bool          // the last session was refused for the skew
	quarantined uint64        // records of the peer quarantined, in total
	keys        [][]byte      // the last quarantined keys
}

const keepSessions = 32

func (n *repairer) record(s plugin.SessionSummary) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.Stats.ClockSkew != 0 || s.Stats.Quarantined > 0 {
		if n.clocks == nil {
			n.clocks = map[record.ReplicaID]*peerClock{}
		}
		pc := n.clocks[s.Peer]
		if pc == nil {
			pc = &peerClock{}
			n.clocks[s.Peer] = pc
		}
		if s.Stats.ClockSkew != 0 {
			pc.skew = s.Stats.ClockSkew
			pc.refused = strings.Contains(s.Err, reconcile.ErrClockSkew.Error())
		}
		if s.Stats.Quarantined > 0 {
			pc.quarantined += s.Stats.Quarantined
			pc.keys = s.Stats.QuarantinedKeys
		}
	}
	n.last = append(n.last, s)
	if len(n.last) > keepSessions {
		n.last = n.last[len(n.last)-keepSessions:]
	}
}

// setLoop makes Background report the loop's repair progress.
func (n *repairer) setLoop(l *repair.Loop) {
	n.mu.Lock()
	n.loop = l
	n.mu.Unlock()
}

// observe records a session of the repair loop.
func (n *repairer) observe(r repair.SessionReport) {
	s := plugin.SessionSummary{Peer: r.Peer, Partition: r.Partition, Stats: r.Stats, Finished: r.Start.Add(r.Stats.Duration)}
	if r.Err != nil {
		s.Err = r.Err.Error()
	}
	if r.Outcome == "not-ready" || r.Outcome == "deferred" {
		s.Err = r.Outcome
	}
	n.record(s)
}

// LastSessions implements plugin.Repairer.
func (n *repairer) LastSessions() []plugin.SessionSummary {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]plugin.SessionSummary(nil), n.last...)
}

// Repair implements plugin.Repairer: one session per partition with peer.
func (n *repairer) Repair(ctx context.Context, peer record.ReplicaID, partitions []uint32, naive bool) ([]plugin.SessionSummary, error) {
	p, ok := n.peers[peer]
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a peer of this node", engine.ErrBadRequest, peer)
	}
	opts := reconcile.SyncOptions{Session: reconcile.SessionConfig{MaxPendingBytes: n.maxPending}}
	if naive {
		opts.Session.Method = reconcile.MethodNaive
		opts.Session.ScanLimit = engine.MaxKeysPerRequest
	}
	if len(partitions) == 0 {
		info, err := n.local.Info(ctx)
		if err != nil {
			return nil, err
		}
		for _, pi := range info.Partitions {
			partitions = append(partitions, pi.ID)
		}
	}
	var out []plugin.SessionSummary
	for _, part := range partitions {
		st, err := reconcile.SyncPartition(ctx, n.local, p, part, opts)
		s := plugin.SessionSummary{Peer: peer, Partition: part, Stats: st, Finished: time.Now()}
		if err != nil {
			s.Err = err.Error()
		}
		n.record(s)
		out = append(out, s)
	}
	return out, nil
}

// Background implements plugin.BackgroundReporter.
func (n *repairer) Background() []string {
	out := n.clockLines()
	n.mu.Lock()
	loop := n.loop
	n.mu.Unlock()
	if loop != nil {
		rp := loop.Status().Repair
		out = append(out, fmt.Sprintf("repair: ~%d keys still to repair (the sessions' estimate), %.0f keys/s over the last %s, %d repaired since start",
			rp.Remaining, rp.Rate, repair.RepairRateWindow, rp.Repaired))
	}
	for _, t := range n.throttles {
		st := t.Status()
		rate := "unlimited"
		if !math.IsInf(st.BytesPerSec, 1) {
			rate = units.Bytes(uint64(st.BytesPerSec)) + "/s"
		}
		out = append(out, fmt.Sprintf("throttle %s: %s in force (scale %.2f), %s taken", st.Name, rate, st.Scale, units.Bytes(st.BytesTaken)))
	}
	if n.adm == nil {
		out = append(out, "admission control: off")
		return out
	}
	a := n.adm.Status()
	state := "ok"
	if a.Overloaded {
		state = "foreground suffering: " + strings.Join(a.Reasons, ", ")
	}
	out = append(out, fmt.Sprintf("admission control: scale %.2f (floor %.2f, ceiling %.2f, in force %.2f), %s (foreground p99 %s, target %s: baseline %s ± %s; L0 sublevels %d, compaction debt %s)",
		a.Scale, a.MinScale, a.MaxScale, a.Ceiling, state, a.P99, a.Target, a.Baseline, a.Noise, a.L0Sublevels, units.Bytes(a.CompactionDebt)))
	if a.Saturated && a.RateTarget > 0 {
		out = append(out, fmt.Sprintf("foreground saturated (%.2f of each second in operations at their median; nothing lent): %.0f operations/s, target %.0f/s (baseline %.0f/s ± %.0f)",
			a.Utilization, a.Rate, a.RateTarget, a.RateBaseline, a.RateNoise))
	}
	if len(a.DecreasesByReason) > 0 {
		reasons := make([]string, 0, len(a.DecreasesByReason))
		for r, n := range a.DecreasesByReason {
			reasons = append(reasons, fmt.Sprintf("%s %d", r, n))
		}
		slices.Sort(reasons)
		out = append(out, "admission decreases by signal: "+strings.Join(reasons, ", "))
	}
	return out
}

var (
	_ plugin.Repairer           = (*repairer)(nil)
	_ plugin.BackgroundReporter = (*repairer)(nil)
)

// clockLines describes the clock guard: this node's maximum offset and
// refusals, each peer's measured clock skew, and the records quarantined.
func (n *repairer) clockLines() []string {
	var out []string
	if n.eng != nil {
		out = append(out, fmt.Sprintf("clock: max offset %s; %d records refused by Apply as stamped beyond it", n.eng.MaxClockOffset(), n.eng.ClockOffsetRefusals()))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	peers := make([]record.ReplicaID, 0, len(n.clocks))
	for p := range n.clocks {
		peers = append(peers, p)
	}
	slices.Sort(peers)
	for _, p := range peers {
		pc := n.clocks[p]
		line := fmt.Sprintf("clock of peer %s: %+.3fs from this node's", p, pc.skew.Seconds())
		if pc.refused {
			line += " (beyond the maximum offset: sessions refused, no records exchanged; fix the clock that is wrong)"
		}
		out = append(out, line)
		if pc.quarantined > 0 {
			keys := make([]string, len(pc.keys))
			for i, k := range pc.keys {
				keys[i] = fmt.Sprintf("%q", k)
			}
			out = append(out, fmt.Sprintf("quarantined: %d records from sessions with %s stamped beyond a replica's clock plus its maximum offset, not applied (last keys: %s); see pebble-ae future",
				pc.quarantined, p, strings.Join(keys, " ")))
		}
	}
	return out
}

package repair

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
)

// Peer is another replica of this node's partitions.
type Peer struct {
	ID      record.ReplicaID
	Replica reconcile.Replica
}

// Task is periodic background work the loop runs on its one background
// worker, one task at a time: rebuilding trees that are not ready, scrubbing
// (verify and repair) trees, collecting tombstones.
type Task struct {
	// Name names the task in logs and metrics.
	Name string
	// Interval is the time from the end of one run to the start of the
	// next (the first run starts after one Interval).
	Interval time.Duration
	// Large marks a task that runs only inside the scheduler's allowed
	// windows (a rebuild, a full scrub).
	Large bool
	// Run does the work; it returns ctx's error when cancelled.
	Run func(ctx context.Context) error
}

// SessionReport describes one session the loop ran (or skipped).
type SessionReport struct {
	// ID numbers the loop's sessions from 1.
	ID uint64
	Target
	Start time.Time
	// Outcome is "in-sync", "repaired", "failed", "not-ready" or
	// "deferred" (a large repair outside the allowed windows).
	Outcome string
	Stats   reconcile.Stats
	Err     error
}

// FullRound reports that every replica of a partition's preference list had
// a successful, converged session with this node that started after Start.
// Rounds are sequential: a round starts when the previous one completes.
//
// SafeBefore is the start of the previous complete round (zero for the
// first): every record that existed on any replica of the partition before
// SafeBefore is, by the end of this round, on every replica (the previous
// round brought it here, this round took it to every peer). A tombstone
// written (by HLC time, minus the maximum clock offset) before SafeBefore
// may therefore be purged without the deleted value coming back, provided
// no replica outside the preference list holds the partition.
type FullRound struct {
	Partition  uint32
	Start, End time.Time
	SafeBefore time.Time
}

// TaskReport describes one run of a Task.
type TaskReport struct {
	Name       string
	Start, End time.Time
	Err        error
}

// LoopConfig configures a Loop.
type LoopConfig struct {
	// Local is this node's replica (the engine). Required.
	Local reconcile.Replica
	// Peers are the other replicas. Required (at least one).
	Peers []Peer
	// Preference returns the peers that replicate a partition besides this
	// node (default: every peer). Sessions run with each of them, and a
	// round is complete when each of them had one.
	Preference func(partition uint32) []record.ReplicaID
	// Scheduler configures the scheduling of sessions.
	Scheduler SchedulerConfig
	// Sync configures the sessions (Session, Progress); Now is set to the
	// clock.
	Sync reconcile.SyncOptions
	// Clock is the loop's time source (default SystemClock).
	Clock Clock
	// Logger receives structured logs with partition, peer and session
	// (default: discard).
	Logger *slog.Logger
	// ScanThrottle throttles what sessions read (scan pages and fetched
	// records, on both sides); WriteThrottle the repair writes (Apply on
	// both sides). Either may be nil.
	ScanThrottle, WriteThrottle *Throttle
	// Signals returns the node's load signals (see Admission); nil
	// means never overloaded, write rate unknown.
	Signals func() Signals
	// LargeRepairKeys: when the scheduler has allowed windows, a session
	// outside them first compares the partition's record counts on both
	// sides and defers itself if they differ by more than this (default
	// 10000).
	LargeRepairKeys uint64
	// MaxSessionKeys is the sessions' SessionConfig.MaxSessionKeys unless
	// Sync sets one: a large repair proceeds in sessions of about this
	// many differences, each of which finishes and applies its part
	// (default DefaultLoopMaxSessionKeys; negative: no bound). Each
	// session of a target resumes where the target's last one, if it was
	// bounded and ended without an error, left off (Stats.Resume,
	// SessionConfig.Resume).
	MaxSessionKeys int64
	// DrainBytes is the sessions' SessionConfig.DrainBytes unless Sync sets
	// one: a session applies its queued writes once they reach it
	// (default DefaultLoopDrainBytes; negative: MaxPendingBytes).
	DrainBytes int64
	// SessionTimeout bounds one session (default: 10 * MaxInterval, at
	// least a minute).
	SessionTimeout time.Duration
	// Tasks run on the background worker.
	Tasks []Task
	// OnSession, OnFullRound and OnTask, if set, are told about every
	// session, complete round and task run (metrics, tombstone GC). They
	// run on the loop's goroutines and must be quick.
	OnSession   func(SessionReport)
	OnFullRound func(FullRound)
	OnTask      func(TaskReport)
}

// DefaultLargeRepairKeys is the default LoopConfig.LargeRepairKeys.
const DefaultLargeRepairKeys = 10000

// DefaultLoopMaxSessionKeys is the default LoopConfig.MaxSessionKeys: about
// two seconds of a quarter-core repair on a 2-core machine, eight at the
// default repair floor.
const DefaultLoopMaxSessionKeys = 50000

// DefaultLoopDrainBytes is the default LoopConfig.DrainBytes: some 30 000
// records of 100 bytes.
const DefaultLoopDrainBytes = 4 << 20

// RepairRateWindow is the window of LoopStatus.Repair's rate.
const RepairRateWindow = 10 * time.Second

// Loop is a node's repair loop: it schedules anti-entropy sessions for every
// (partition, peer) of the preference lists, runs them with SyncPartition
// through throttled replicas, tracks complete rounds per partition and runs
// background tasks. Create it with NewLoop, run it with Run.
type Loop struct {
	cfg   LoopConfig
	log   *slog.Logger
	peers map[record.ReplicaID]reconcile.Replica

	wake chan struct{}

	mu struct {
		sync.Mutex
		sched    *Scheduler
		nextID   uint64
		counts   map[string]uint64
		rounds   *RoundTracker
		tasks    map[string]TaskReport
		lastInfo reconcile.
			// remaining is each target's estimate of the keys still to
			// repair (its running session's, else its last session's);
			// repaired counts the keys the sessions repaired (resolved
			// writes, as they report them round by round), samples its
			// recent values for the rate.
			Info

		remaining map[Target]uint64
		repaired  uint64
		samples   []repairSample
		// resume is where each target's last session, if it was bounded
		// and ended without an error, left off: its next session resumes
		// there (SessionConfig.Resume).
		resume map[Target]*reconcile.BoundResume
	}
}

// repairSample is the loop's repaired count at a time.
type repairSample struct {
	at       time.Time
	repaired uint64
}

// NewLoop validates cfg and returns a loop.
func NewLoop(cfg LoopConfig) (*Loop, error) {
	if cfg.Local == nil || len(cfg.Peers) == 0 {
		return nil, fmt.Errorf("%w: a local replica and at least one peer are required", ErrInvalidSchedule)
	}
	if cfg.Clock == nil {
		cfg.Clock = record.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LargeRepairKeys == 0 {
		cfg.LargeRepairKeys = DefaultLargeRepairKeys
	}
	cfg.Scheduler = cfg.Scheduler.EnsureDefaults()
	if err := cfg.Scheduler.Validate(); err != nil {
		return nil, err
	}
	if cfg.Sync.Session.MaxPendingBytes < 0 {
		return nil, fmt.Errorf("%w: MaxPendingBytes %d", reconcile.ErrInvalidSessionConfig, cfg.Sync.Session.MaxPendingBytes)
	}
	if cfg.SessionTimeout < 0 {
		return nil, fmt.Errorf("%w: session timeout %v is negative (0: the default)", ErrInvalidSchedule, cfg.SessionTimeout)
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = max(10*cfg.Scheduler.MaxInterval, time.Minute)
	}
	if cfg.MaxSessionKeys == 0 {
		cfg.MaxSessionKeys = DefaultLoopMaxSessionKeys
	}
	if cfg.DrainBytes == 0 {
		cfg.DrainBytes = DefaultLoopDrainBytes
	}
	if cfg.Sync.Session.DrainBytes == 0 && cfg.DrainBytes > 0 {
		cfg.Sync.Session.DrainBytes = cfg.DrainBytes
	}
	if cfg.Sync.Session.MaxSessionKeys == 0 && cfg.MaxSessionKeys > 0 {
		cfg.Sync.Session.MaxSessionKeys = uint64(cfg.MaxSessionKeys)
	}
	for _, t := range cfg.Tasks {
		if t.Interval <= 0 || t.Run == nil || t.Name == "" {
			return nil, fmt.Errorf("%w: task %q needs a name, a positive interval and a Run", ErrInvalidSchedule, t.Name)
		}
	}
	l := &Loop{cfg: cfg, log: cfg.Logger, peers: make(map[record.ReplicaID]reconcile.Replica), wake: make(chan struct{}, 1)}
	for _, p := range cfg.Peers {
		if err := p.ID.Validate(); err != nil || p.Replica == nil {
			return nil, fmt.Errorf("%w: peer %q: invalid ID or nil replica", ErrInvalidSchedule, p.ID)
		}
		if _, dup := l.peers[p.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate peer %q", ErrInvalidSchedule, p.ID)
		}
		l.peers[p.ID] = p.Replica
	}
	l.mu.counts = make(map[string]uint64)
	l.mu.tasks = make(map[string]TaskReport)
	l.mu.remaining = make(map[Target]uint64)
	l.mu.resume = make(map[Target]*reconcile.BoundResume)
	return l, nil
}

// Run runs the loop until ctx is cancelled; it returns ctx's error after
// every session and task it started has returned. It first reads the local
// replica's Info (retrying until it succeeds) to learn the partitions.
func (l *Loop) Run(ctx context.Context) error {
	info, err := l.localInfo(ctx)
	if err != nil {
		return err
	}
	now := l.cfg.Clock.Now()
	var targets []Target
	l.mu.Lock()
	l.mu.lastInfo = info
	l.mu.rounds = NewRoundTracker()
	for _, p := range info.Partitions {
		var peers []record.ReplicaID
		blocked := false
		for _, id := range l.preference(p.ID) {
			if id == info.ID {
				continue
			}
			peers = append(peers, id)
			if _, ok := l.peers[id]; !ok {
				l.log.Warn("preference-list replica is not a peer; no full rounds (no tombstone GC) for the partition", "partition", p.ID, "replica", string(id))
				blocked = true
				continue
			}
			targets = append(targets, Target{Partition: p.ID, Peer: id})
		}
		l.mu.rounds.SetPeers(p.ID, peers, now, blocked)
	}
	sched, err := NewScheduler(l.cfg.Scheduler, targets, now)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	l.mu.sched = sched
	l.mu.Unlock()
	l.log.Info("repair loop started", "replica", string(info.ID), "partitions", len(info.Partitions), "targets", len(targets))

	var wg sync.WaitGroup
	defer wg.Wait()
	if len(l.cfg.Tasks) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); l.runTasks(ctx) }()
	}
	for {
		now := l.cfg.Clock.Now()
		sig := l.signals()
		l.mu.Lock()
		due := l.mu.sched.Due(now, sig)
		next := l.mu.sched.NextDue()
		l.mu.Unlock()
		for _, t := range due {
			wg.Add(1)
			go func() { defer wg.Done(); l.runSession(ctx, t, sig) }()
		}
		// Targets still due after Due wait for a free slot: a session's
		// end wakes the loop.
		wait := l.cfg.Scheduler.MaxInterval
		if !next.IsZero() && next.After(now) {
			wait = min(next.Sub(now), wait)
		}
		select {
		case <-ctx.Done():
			l.log.Info("repair loop stopping")
			return ctx.Err()
		case <-l.wake:
		case <-l.cfg.Clock.After(wait):
		}
	}
}

func (l *Loop) localInfo(ctx context.Context) (reconcile.Info, error) {
	backoff := l.cfg.Scheduler.MinInterval
	for {
		info, err := l.cfg.Local.Info(ctx)
		if err == nil {
			return info, nil
		}
		l.log.Warn("repair loop: local info failed", "err", err)
		select {
		case <-ctx.Done():
			return reconcile.Info{}, ctx.Err()
		case <-l.cfg.Clock.After(backoff):
		}
		backoff = min(2*backoff, l.cfg.Scheduler.MaxInterval)
	}
}

func (l *Loop) preference(p uint32) []record.ReplicaID {
	if l.cfg.Preference != nil {
		return l.cfg.Preference(p)
	}
	ids := make([]record.ReplicaID, 0, len(l.cfg.Peers))
	for _, peer := range l.cfg.Peers {
		ids = append(ids, peer.ID)
	}
	return ids
}

func (l *Loop) signals() Signals {
	if l.cfg.Signals == nil {
		return Signals{}
	}
	return l.cfg.Signals()
}

// runSession runs one session of t and reports it.
func (l *Loop) runSession(ctx context.Context, t Target, sig Signals) {
	l.mu.Lock()
	l.mu.nextID++
	id := l.mu.nextID
	l.mu.Unlock()
	start := l.cfg.Clock.Now()
	log := l.log.With("session", id, "partition", t.Partition, "peer", string(t.Peer))
	sctx, cancel := context.WithTimeout(ctx, l.cfg.SessionTimeout)
	rep := l.session(sctx, t, start, log)
	cancel()
	rep.ID, rep.Target, rep.Start = id, t, start
	end := l.cfg.Clock.Now()

	o := Outcome{Err: rep.Err, Skipped: rep.Outcome == "not-ready" || rep.Outcome == "deferred", Diverged: rep.Outcome == "repaired"}
	if ctx.Err() != nil && rep.Err != nil {
		// Shutting down: not the peer's fault.
		o = Outcome{Skipped: true}
	}
	var round *FullRound
	l.mu.Lock()
	l.mu.sched.Done(t, end, o, l.signals())
	l.mu.counts[rep.Outcome]++
	if rep.Err == nil && rep.Stats.Converged {
		if fr, ok := l.mu.rounds.Converged(t.Partition, t.Peer, start, end); ok {
			round = &fr
		}
	}
	l.mu.Unlock()

	attrs := []any{"outcome", rep.Outcome, "method", string(rep.Stats.Method), "duration", end.Sub(start), "rounds", rep.Stats.Rounds,
		"bytes", rep.Stats.BytesTotal(), "keys_repaired", rep.Stats.KeysRepaired(), "keys_compared", rep.Stats.KeysCompared}
	switch {
	case rep.Err != nil && ctx.Err() == nil:
		log.Warn("anti-entropy session failed", append(attrs, "err", rep.Err)...)
	case rep.Outcome == "repaired":
		log.Info("anti-entropy session repaired divergence", attrs...)
	default:
		log.Debug("anti-entropy session", attrs...)
	}
	if q := rep.Stats.Quarantined; q > 0 {
		keys := make([]string, len(rep.Stats.QuarantinedKeys))
		for i, k := range rep.Stats.QuarantinedKeys {
			keys[i] = record.FormatKey(k)
		}
		log.Warn("records stamped beyond a replica's clock plus its maximum offset quarantined: not applied", "quarantined", q, "keys", keys)
	}
	if l.cfg.OnSession != nil {
		l.cfg.OnSession(rep)
	}
	if round != nil {
		log.Info("full repair round complete", "round_start", round.Start, "safe_before", round.SafeBefore)
		if l.cfg.OnFullRound != nil {
			l.cfg.OnFullRound(*round)
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// session checks readiness (and, outside the allowed windows, size) and
// runs the session.
func (l *Loop) session(ctx context.Context, t Target, start time.Time, log *slog.Logger) SessionReport {
	peer := l.peers[t.Peer]
	var infos [2]reconcile.Info
	var errs [2]error
	var wg sync.WaitGroup
	for i, r := range [2]reconcile.Replica{l.cfg.Local, peer} {
		wg.Add(1)
		go func() { defer wg.Done(); infos[i], errs[i] = r.Info(ctx) }()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		return SessionReport{Outcome: "failed", Err: fmt.Errorf("repair: partition %d peer %q: info: %w", t.Partition, t.Peer, errors.Join(errs[0], errs[1]))}
	}
	for i := range infos {
		if !partitionReady(infos[i], t.Partition) {
			log.Debug("partition not ready; session skipped", "side", reconcile.Side(i).String())
			return SessionReport{Outcome: "not-ready"}
		}
	}
	local := ThrottledReplica{Replica: l.cfg.Local, Scan: l.cfg.ScanThrottle, Write: l.cfg.WriteThrottle}
	remote := ThrottledReplica{Replica: peer, Scan: l.cfg.ScanThrottle, Write: l.cfg.WriteThrottle}
	l.mu.Lock()
	large := !l.mu.sched.LargeAllowed(start)
	l.mu.Unlock()
	if large {
		big, err := l.isLarge(ctx, local, remote, t.Partition)
		if err != nil {
			return SessionReport{Outcome: "failed", Err: err}
		}
		if big {
			log.Info("large repair deferred to an allowed window")
			return SessionReport{Outcome: "deferred"}
		}
	}
	opts := l.cfg.Sync
	opts.Now = l.cfg.Clock.Now
	opts.Session.InfoA, opts.Session.InfoB = &infos[0], &infos[1]
	if opts.Pace == nil && l.cfg.ScanThrottle != nil {
		// The session's own work (decoding, resolving) is charged to
		// the scan throttle's busy-time budget, as the replicas' calls
		// are.
		opts.Pace = l.cfg.ScanThrottle.Busy
	}
	if opts.Session.FetchByHashChunksPerRound == 0 && (l.cfg.ScanThrottle != nil || l.cfg.WriteThrottle != nil) {
		// Charge a large fetch to the throttles chunk by chunk.
		opts.Session.FetchByHashChunksPerRound = 1
	}
	l.mu.Lock()
	if opts.Session.Resume == nil {
		opts.Session.Resume = l.mu.resume[t]
	}
	l.mu.Unlock()
	if opts.Session.Resume == nil {
		opts.Session.Resume = estimatedResume(infos, t.Partition, opts.Session.MaxSessionKeys)
	}
	var reported uint64 // the keys repaired the session reported so far
	progress := opts.Progress
	opts.Progress = func(p reconcile.Progress) {
		l.progress(t, p.Stats, &reported)
		if progress != nil {
			progress(p)
		}
	}
	st, err := reconcile.SyncPartition(ctx, local, remote, t.Partition, opts)
	l.progress(t, st, &reported)
	l.mu.Lock()
	if err == nil && st.Resume != nil {
		l.mu.resume[t] = st.Resume
	} else {
		delete(l.mu.resume, t) // a cut session's ranges may not be done
	}
	l.mu.Unlock()
	rep := SessionReport{Stats: st, Err: err}
	switch {
	case err != nil:
		rep.Outcome = "failed"
	case st.KeysRepaired() > 0:
		rep.Outcome = "repaired"
	default:
		rep.Outcome = "in-sync"
	}
	return rep
}

// estimatedResume returns where a target's first session starts when the
// replicas' record estimates (Info) already say that the repair is large:
// bounded, from the partition's start, with the larger side's ranges, as
// if a bounded session had just found the difference. That spares the
// first session the root comparison, which on a replica its foreground
// keeps writing to hashes every leaf the writes dirtied (measured: seconds
// at the repair floor under a flat-out writer, before anything is
// repaired). A wrong estimate costs what a stale Resume does: the bounded
// search finds nothing and the session starts at the root. Nil when an
// estimate is missing or the difference is within maxKeys.
func estimatedResume(infos [2]reconcile.Info, partition uint32, maxKeys uint64) *reconcile.BoundResume {
	if maxKeys == 0 {
		return nil
	}
	var n [2]uint64
	for i, info := range infos {
		for _, p := range info.Partitions {
			if p.ID == partition {
				n[i] = p.Records
			}
		}
	}
	if n[0] == 0 && n[1] == 0 {
		return nil
	}
	side, diff := reconcile.SideA, n[0]-n[1]
	if n[1] > n[0] {
		side, diff = reconcile.SideB, n[1]-n[0]
	}
	if diff <= maxKeys {
		return nil
	}
	return &reconcile.BoundResume{Side: side, Remaining: diff}
}

// progress records a session's progress: its estimate of the keys still to
// repair and the keys it repaired since it last reported (*reported).
func (l *Loop) progress(t Target, st reconcile.Stats, reported *uint64) {
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.remaining[t] = st.Remaining
	if r := st.KeysRepaired(); r > *reported {
		l.mu.repaired += r - *reported
		*reported = r
	}
	if n := len(l.mu.samples); n == 0 || now.Sub(l.mu.samples[n-1].at) >= RepairRateWindow/100 {
		l.mu.samples = append(l.mu.samples, repairSample{now, l.mu.repaired})
	} else {
		l.mu.samples[n-1].repaired = l.mu.repaired
	}
	cut := 0
	for cut < len(l.mu.samples)-1 && now.Sub(l.mu.samples[cut].at) > RepairRateWindow {
		cut++
	}
	l.mu.samples = l.mu.samples[cut:]
}

func partitionReady(info reconcile.Info, p uint32) bool {
	for _, pi := range info.Partitions {
		if pi.ID == p {
			return pi.Ready
		}
	}
	return false
}

// isLarge compares the record counts of the partition on both sides.
func (l *Loop) isLarge(ctx context.Context, a, b reconcile.Replica, p uint32) (bool, error) {
	var counts [2]uint64
	for i, r := range [2]reconcile.Replica{a, b} {
		hs, err := r.RangeHash(ctx, reconcile.RangeHashRequest{Partition: p, Ranges: []reconcile.KeyRange{{}}})
		if err != nil {
			return false, fmt.Errorf("repair: partition %d: size probe on %s: %w", p, reconcile.Side(i), err)
		}
		if len(hs) != 1 {
			return false, fmt.Errorf("%w: partition %d: size probe answered %d ranges", reconcile.ErrBadPeerAnswer, p, len(hs))
		}
		counts[i] = hs[0].Fingerprint.Count
	}
	d := counts[0] - counts[1]
	if counts[1] > counts[0] {
		d = counts[1] - counts[0]
	}
	return d > l.cfg.LargeRepairKeys, nil
}

// runTasks is the background worker: it runs due tasks one at a time.
func (l *Loop) runTasks(ctx context.Context) {
	next := make([]time.Time, len(l.cfg.Tasks))
	now := l.cfg.Clock.Now()
	for i, t := range l.cfg.Tasks {
		next[i] = now.Add(t.Interval)
	}
	for {
		now := l.cfg.Clock.Now()
		earliest := now.Add(l.cfg.Scheduler.MaxInterval)
		for i, t := range l.cfg.Tasks {
			if ctx.Err() != nil {
				return
			}
			if now.Before(next[i]) {
				earliest = minTime(earliest, next[i])
				continue
			}
			l.mu.Lock()
			allowed := !t.Large || l.mu.sched.LargeAllowed(now)
			l.mu.Unlock()
			if !allowed {
				next[i] = now.Add(min(t.Interval, l.cfg.Scheduler.MinInterval))
				earliest = minTime(earliest, next[i])
				continue
			}
			err := t.Run(ctx)
			end := l.cfg.Clock.Now()
			rep := TaskReport{Name: t.Name, Start: now, End: end, Err: err}
			if err != nil && ctx.Err() == nil {
				l.log.Warn("background task failed", "task", t.Name, "err", err)
			}
			l.mu.Lock()
			l.mu.tasks[t.Name] = rep
			l.mu.Unlock()
			if l.cfg.OnTask != nil {
				l.cfg.OnTask(rep)
			}
			next[i] = end.Add(t.Interval)
			earliest = minTime(earliest, next[i])
			now = end
		}
		select {
		case <-ctx.Done():
			return
		case <-l.cfg.Clock.After(max(earliest.Sub(now), 0)):
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// LoopStatus is the loop's state.
type LoopStatus struct {
	// Running is the number of sessions running.
	Running int
	// Sessions counts sessions by outcome.
	Sessions map[string]uint64
	// SkippedTicks counts ticks skipped because a session still ran.
	SkippedTicks uint64
	// Targets are the scheduler's targets.
	Targets []TargetState
	// Rounds are the completed full rounds per partition.
	Rounds map[uint32]uint64
	// LastRound is the end of each partition's last complete round.
	LastRound map[uint32]time.Time
	// Tasks are the last run of each background task.
	Tasks map[string]TaskReport
	// LargeAllowed: large repairs may run now.
	LargeAllowed bool
	// Repair is the repair's progress.
	Repair RepairProgress
}

// RepairProgress is how far the loop's repairs have come.
type RepairProgress struct {
	// Remaining is the sum over the targets of the keys still to repair,
	// as their running (else last) sessions estimate them
	// (Stats.Remaining): a lower bound before a session has decoded its
	// difference.
	Remaining uint64
	// Repaired counts the keys the loop's sessions repaired since it
	// started (both directions; resolved writes, reported round by
	// round).
	Repaired uint64
	// Rate is the keys repaired per second over the last
	// RepairRateWindow (0 when nothing was repaired in it).
	Rate float64
}

// Status returns the loop's state (zero before Run has read the local Info).
func (l *Loop) Status() LoopStatus {
	sig := l.signals()
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	st := LoopStatus{Sessions: make(map[string]uint64), Rounds: make(map[uint32]uint64), LastRound: make(map[uint32]time.Time), Tasks: make(map[string]TaskReport)}
	for k, v := range l.mu.counts {
		st.Sessions[k] = v
	}
	for _, r := range l.mu.remaining {
		st.Repair.Remaining += r
	}
	st.Repair.Repaired = l.mu.repaired
	if n := len(l.mu.samples); n > 0 {
		// From the oldest sample in the window (or the window's start)
		// to now.
		first := l.mu.samples[0]
		for _, smp := range l.mu.samples {
			if now.Sub(smp.at) <= RepairRateWindow {
				break
			}
			first = smp
		}
		if secs := now.Sub(first.at).Seconds(); secs > 0 && now.Sub(l.mu.samples[n-1].at) <= RepairRateWindow {
			st.Repair.Rate = float64(l.mu.repaired-first.repaired) / max(secs, 1)
		}
	}
	if l.mu.rounds != nil {
		for _, p := range l.mu.rounds.Partitions() {
			n, last := l.mu.rounds.Completed(p)
			st.Rounds[p] = n
			if !last.IsZero() {
				st.LastRound[p] = last
			}
		}
	}
	for k, v := range l.mu.tasks {
		st.Tasks[k] = v
	}
	if l.mu.sched != nil {
		st.Running = l.mu.sched.Running()
		st.SkippedTicks = l.mu.sched.SkippedTicks()
		st.Targets = l.mu.sched.States(sig)
		st.LargeAllowed = l.mu.sched.LargeAllowed(now)
	}
	return st
}

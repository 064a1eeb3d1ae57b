package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// SyncOptions configure SyncPartition and SyncAll.
type SyncOptions struct {
	// Session is the session configuration. SyncPartition sets its Partition; SyncAll
	// also sets InfoA and InfoB.
	Session SessionConfig
	// Progress, if set, is called after each round trip with the session's
	// statistics so far. It runs on the caller's goroutine (SyncAll with
	// Parallelism > 1: on several goroutines) and must be quick.
	Progress func(Progress)
	// Now is the clock that measures Stats.Duration; default time.Now.
	Now func() time.Time
	// Parallelism is the number of partitions SyncAll reconciles at once;
	// default 1.
	Parallelism int
	// Pace, if set, is charged with the time the session spends on its
	// own work (decoding symbol streams chunk by chunk, checking and
	// resolving answers, planning requests) after each piece of it, and
	// may block to slow the session down (the repair loop passes its
	// throttle's busy-time budget, Throttle.Busy, which admission control
	// scales). Its error (ctx's) is not the session's: the next call
	// fails with it.
	Pace func(ctx context.Context, busy time.Duration) error
}

// Progress reports a session's progress after one round trip.
type Progress struct {
	Partition uint32
	// Stats are the session's statistics so far (without Duration).
	Stats Stats
	// Done reports the session's last report.
	Done bool
}

// SyncPartition reconciles one partition of replicas a and b: it runs a Session,
// issuing each round's requests to both replicas concurrently and waiting
// for all answers before the next round. It returns the session's Stats
// (Duration measured with opts.Now) and its error: ErrNotReady,
// ErrIncompatibleTrees, ErrBadPeerAnswer, ErrNotConverged (strict only), a
// resolver error, or a replica's error (including ctx's) wrapped with the
// side and partition. A session that ends with an error applies nothing
// after the error; Apply requests are only issued once every answer has been
// validated.
func SyncPartition(ctx context.Context, a, b Replica, partition uint32, opts SyncOptions) (Stats, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	cfg := opts.Session
	cfg.Partition = partition
	newSession := NewSession
	if cfg.Method == MethodNaive {
		newSession = NewNaiveSession
	}
	s, err := newSession(cfg)
	if err != nil {
		return Stats{}, err
	}
	replicas := [2]Replica{a, b}
	next := func() (step Step) {
		paced(ctx, opts.Pace, func() { step = s.Next() })
		return step
	}
	for step := next(); !step.Done; step = next() {
		s.Tick(now().Sub(start))
		RunStepPaced(ctx, s, replicas, step, opts.Pace)
		if opts.Progress != nil {
			opts.Progress(Progress{Partition: partition, Stats: s.Stats(), Done: s.Done()})
		}
	}
	st := s.Stats()
	st.Duration = now().Sub(start)
	return st, s.Err()
}

// RunStep performs the requests of step against replicas and delivers the
// answers to s: plain requests concurrently, each answered once, and symbol
// streams (RequestSymbols) chunk by chunk while s wants them.
func RunStep(ctx context.Context, s *Session, replicas [2]Replica, step Step) {
	RunStepPaced(ctx, s, replicas, step, nil)
}

// RunStepPaced is RunStep charging the session's own work to pace (see
// SyncOptions.Pace; nil: none).
func RunStepPaced(ctx context.Context, s *Session, replicas [2]Replica, step Step, pace func(context.Context, time.Duration) error) {
	var plain, streams []Request
	for _, r := range step.Requests {
		if r.Kind == RequestSymbols {
			streams = append(streams, r)
		} else {
			plain = append(plain, r)
		}
	}
	if len(plain) > 0 {
		resps := issue(ctx, replicas, plain)
		paced(ctx, pace, func() { s.Deliver(resps...) })
	}
	if len(streams) > 0 {
		streamRound(ctx, s, replicas, streams, pace)
	}
}

// paced runs work and charges its duration to pace (if set).
func paced(ctx context.Context, pace func(context.Context, time.Duration) error, work func()) {
	if pace == nil {
		work()
		return
	}
	start := time.Now()
	work()
	_ = pace(ctx, time.Since(start)) // ctx's error: the next call fails with it
}

// issue calls every request concurrently and returns the responses.
func issue(ctx context.Context, replicas [2]Replica, reqs []Request) []Response {
	resps := make([]Response, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i] = Call(ctx, replicas[req.Side], req)
		}()
	}
	wg.Wait()
	return resps
}

// Call performs one Request on replica r and returns its Response. Drivers
// other than SyncPartition (a repair loop with its own scheduling and throttling)
// use it to execute a Step's requests.
func Call(ctx context.Context, r Replica, req Request) Response {
	resp := Response{ID: req.ID, Side: req.Side}
	if err := ctx.Err(); err != nil {
		resp.Err = err
		return resp
	}
	switch req.Kind {
	case RequestInfo:
		resp.Info, resp.Err = r.Info(ctx)
	case RequestRangeHash:
		resp.Hashes, resp.Err = r.RangeHash(ctx, req.RangeHash)
	case RequestRangeScan:
		resp.Scan, resp.Err = r.RangeScan(ctx, req.RangeScan)
	case RequestFetch:
		resp.Entries, resp.Err = r.Fetch(ctx, req.Partition, req.Keys)
	case RequestApply:
		if req.Confirm == nil {
			resp.Err = r.Apply(ctx, req.Partition, req.Entries)
			break
		}
		ranges := []KeyRange{*req.Confirm}
		if req.ApplyAndHash {
			resp.Hashes, resp.Err = r.ApplyAndHash(ctx, req.Partition, req.Entries, ranges)
			break
		}
		if resp.Err = r.Apply(ctx, req.Partition, req.Entries); resp.Err == nil {
			resp.Hashes, resp.Err = r.RangeHash(ctx, RangeHashRequest{Partition: req.Partition, Ranges: ranges})
		}
	case RequestSymbols:
		resp.Err = fmt.Errorf("%w: %s is a stream: run it with RunStep", ErrSessionMisuse, req.Kind)
	case RequestRangeSketch:
		resp.Sketch, resp.Err = r.RangeSketch(ctx, req.Sketch)
	case RequestFetchByHash:
		resp.Entries, resp.Err = r.FetchByHash(ctx, req.FetchByHash)
	default:
		resp.Err = fmt.Errorf("%w: unknown request kind %d", ErrSessionMisuse, req.Kind)
	}
	return resp
}

// SyncAll reconciles every partition of a and b: it fetches both Infos once
// (checking tree parameters, ErrIncompatibleTrees), then runs SyncPartition for each
// partition of a, opts.Parallelism at a time. It returns the per-partition
// Stats in partition order and the errors of the partitions that failed,
// joined (errors.Is sees each; ErrNotReady partitions are skipped and
// reported this way too). Use Stats.Add to total the per-partition Stats.
func SyncAll(ctx context.Context, a, b Replica, opts SyncOptions) ([]Stats, error) {
	var infos [2]Info
	var errs [2]error
	var wg sync.WaitGroup
	for i, r := range [2]Replica{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos[i], errs[i] = r.Info(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return nil, fmt.Errorf("reconcile: info: %w", err)
	}
	if infos[0].Tree != infos[1].Tree {
		return nil, fmt.Errorf("%w: A (%q) has %+v, B (%q) has %+v", ErrIncompatibleTrees, infos[0].ID, infos[0].Tree, infos[1].ID, infos[1].Tree)
	}
	parts := infos[0].Partitions
	stats := make([]Stats, len(parts))
	perr := make([]error, len(parts))
	par := max(opts.Parallelism, 1)
	sem := make(chan struct{}, par)
	for i, p := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			o := opts
			o.Session.InfoA, o.Session.InfoB = &infos[0], &infos[1]
			stats[i], perr[i] = SyncPartition(ctx, a, b, p.ID, o)
		}()
	}
	wg.Wait()
	return stats, errors.Join(perr...)
}

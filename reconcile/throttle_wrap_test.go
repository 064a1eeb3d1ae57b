package reconcile

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
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

type streamer struct{}

func (streamer) OpenSymbols(context.Context, SymbolsRequest) (SymbolStream, error) { return nil, nil }

type sketchStreamReplica struct {
	sketchReplica
	streamer
}

type allReplica struct {
	bothReplica
	streamer
}

type plainStreamReplica struct {
	plainReplica
	streamer
}

// TestThrottledKeepsOptionalInterfaces: a throttled replica offers exactly
// the optional interfaces of the replica it wraps (a SymbolStreamer only
// with Sketcher, which streams need).
func TestThrottledKeepsOptionalInterfaces(t *testing.T) {
	for _, c := range []struct {
		name                         string
		r                            Replica
		sketcher, confirms, streamer bool
	}{
		{"plain", plainReplica{}, false, false, false},
		{"sketcher", sketchReplica{}, true, false, false},
		{"both", bothReplica{}, true, true, false},
		{"sketcher+streamer", sketchStreamReplica{}, true, false, true},
		{"all", allReplica{}, true, true, true},
		{"streamer alone", plainStreamReplica{}, false, false, false},
	} {
		w := ThrottledReplica{Replica: c.r}.Throttled()
		_, s := w.(Sketcher)
		_, a := w.(ApplyConfirmer)
		_, y := w.(SymbolStreamer)
		if s != c.sketcher || a != c.confirms || y != c.streamer {
			t.Errorf("%s: sketcher=%t confirmer=%t streamer=%t, want %t %t %t", c.name, s, a, y, c.sketcher, c.confirms, c.streamer)
		}
	}
}

// TestThrottleBusyBudget: busy time is counted, scaled with the rates, and
// makes the caller rest once the burst is spent.
func TestThrottleBusyBudget(t *testing.T) {
	th, err := NewThrottle("t", ThrottleConfig{BusyFraction: 0.5, BurstBusy: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := th.Busy(ctx, 4*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st := th.Status(); st.BusyTaken != 4*time.Millisecond || st.BusyFraction != 0.5 {
		t.Fatalf("status %+v", st)
	}
	th.SetScale(0.1)
	if st := th.Status(); math.Abs(st.BusyFraction-0.05) > 1e-12 {
		t.Fatalf("scaled busy fraction %v, want 0.05", st.BusyFraction)
	}
	// The burst is spent: the next charge must wait, and a cancelled
	// context ends the wait at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := th.Busy(cctx, 20*time.Millisecond); !errors.Is(err, context.Canceled) {
		t.Fatalf("busy over the burst with a cancelled context: %v", err)
	}
	// Without a budget, busy time is only counted.
	free, err := NewThrottle("free", ThrottleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := free.Busy(ctx, time.Hour); err != nil || free.Status().BusyTaken != time.Hour || !math.IsInf(free.Status().BusyFraction, 1) {
		t.Fatalf("unbudgeted throttle: %v %+v", err, free.Status())
	}
	if _, err := NewThrottle("bad", ThrottleConfig{BusyFraction: -1}); !errors.Is(err, ErrInvalidSchedule) {
		t.Fatalf("negative budget: %v", err)
	}
}

// TestThrottledApplyAndHashChunks: a large ApplyAndHash goes to the replica
// in chunks, the last one with the confirm.
func TestThrottledApplyAndHashChunks(t *testing.T) {
	rec := &recordingConfirmer{}
	w := ThrottledReplica{Replica: rec, ApplyChunk: 10}.Throttled().(ApplyConfirmer)
	es := make([]Entry, 25)
	if _, err := w.ApplyAndHash(context.Background(), 0, es, []KeyRange{{}}); err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 5, -10}; !slices.Equal(rec.calls, want) {
		t.Fatalf("calls %v, want %v (negative: ApplyAndHash)", rec.calls, want)
	}
}

type recordingConfirmer struct {
	sketchReplica
	calls []int
}

func (r *recordingConfirmer) Apply(_ context.Context, _ uint32, es []Entry) error {
	r.calls = append(r.calls, len(es))
	return nil
}

func (r *recordingConfirmer) ApplyAndHash(_ context.Context, _ uint32, es []Entry, _ []KeyRange) ([]RangeHash, error) {
	r.calls = append(r.calls, -len(es))
	return nil, nil
}

// TestThrottleStartShares: concurrent calls through a throttle split the
// wall time between them (Throttle.Start): together they are charged no
// more than the time any of them ran, each no more than its own.
func TestThrottleStartShares(t *testing.T) {
	th, err := NewThrottle("scan", ThrottleConfig{BusyFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	outer := time.Now()
	var wg sync.WaitGroup
	shares := make([]time.Duration, 8)
	walls := make([]time.Duration, 8)
	for i := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, end := th.Start(context.Background())
			time.Sleep(5 * time.Millisecond)
			shares[i] = end()
			walls[i] = time.Since(start)
		}()
	}
	wg.Wait()
	union := time.Since(outer)
	var sum time.Duration
	for i, s := range shares {
		if s <= 0 || s > walls[i] {
			t.Fatalf("call %d charged %v of its %v", i, s, walls[i])
		}
		sum += s
	}
	if sum > union {
		t.Fatalf("8 concurrent calls charged %v in all, more than the %v they spanned", sum, union)
	}
	var nilTh *Throttle
	if _, end := nilTh.Start(context.Background()); end() < 0 {
		t.Fatal("nil throttle: negative share")
	}
}

// TestThrottleStartExcludesWaits: the time a call waits in a throttle's
// rate limits with its context (a replica's scan throttled by
// engine.Options.Throttle inside a throttled RangeHash) is not charged as
// its busy time; a wait with another context is.
func TestThrottleStartExcludesWaits(t *testing.T) {
	scan, err := NewThrottle("scan", ThrottleConfig{KeysPerSec: 1000, BurstKeys: 10, BusyFraction: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cctx, end := scan.Start(ctx)
	workStart := time.Now()
	time.Sleep(5 * time.Millisecond) // work
	waitStart := time.Now()
	work := waitStart.Sub(workStart)
	for range 5 {
		if err := scan.Wait(cctx, 10, 0); err != nil { // ~40ms of waiting past the burst
			t.Fatal(err)
		}
	}
	waited := time.Since(waitStart)
	share := end()
	if waited < 30*time.Millisecond {
		t.Fatalf("waited only %v: the test's premise failed", waited)
	}
	if share < work || share > work+waited/4 {
		t.Fatalf("a call that worked %v and waited %v in the rate limit was charged %v", work, waited, share)
	}
	// Waits after the call ended, and waits with an unrelated context,
	// change nothing and do not panic.
	if err := scan.Wait(cctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	_, end = scan.Start(ctx)
	if err := scan.Wait(ctx, 10, 0); err != nil {
		t.Fatal(err)
	}
	if share := end(); share < 5*time.Millisecond {
		t.Fatalf("a wait with another context was excluded: share %v", share)
	}
}

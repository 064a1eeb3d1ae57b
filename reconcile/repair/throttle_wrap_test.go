package repair

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/reconcile"
)

// optionalReplica serves the optional calls of the Replica contract (or
// answers them with ErrUnsupported) and counts what reaches it.
type optionalReplica struct {
	reconcile.Replica // nil: no other call is made
	served            bool
	calls             map[string]int
}

func (r *optionalReplica) call(name string) error {
	r.calls[name]++
	if !r.served {
		return fmt.Errorf("%w: %s", reconcile.ErrUnsupported, name)
	}
	return nil
}

func (r *optionalReplica) RangeSketch(context.Context, reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	return reconcile.RangeSketchResult{}, r.call("RangeSketch")
}

func (r *optionalReplica) FetchByHash(context.Context, reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	return nil, r.call("FetchByHash")
}

func (r *optionalReplica) OpenSymbols(context.Context, reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	if err := r.call("OpenSymbols"); err != nil {
		return nil, err
	}
	return emptyStream{}, nil
}

func (r *optionalReplica) ApplyAndHash(context.Context, uint32, []reconcile.Entry, []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	return nil, r.call("ApplyAndHash")
}

func (r *optionalReplica) Apply(context.Context, uint32, []reconcile.Entry) error {
	r.calls["Apply"]++
	return nil
}

func (r *optionalReplica) RangeHash(context.Context, reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	r.calls["RangeHash"]++
	return []reconcile.RangeHash{{}}, nil
}

type emptyStream struct{}

func (emptyStream) Next(context.Context) (reconcile.SymbolChunk, error) {
	return reconcile.SymbolChunk{}, io.EOF
}
func (emptyStream) Close() {}

// TestThrottledForwardsOptionalCalls: a throttled replica passes every
// optional call of the contract to the replica it wraps (one call each),
// throttled; a call the replica does not serve fails with its
// ErrUnsupported, except ApplyAndHash, which the throttled replica then
// serves itself with Apply and RangeHash.
func TestThrottledForwardsOptionalCalls(t *testing.T) {
	ctx := context.Background()
	for _, served := range []bool{true, false} {
		r := &optionalReplica{served: served, calls: map[string]int{}}
		scan, err := NewThrottle("scan", ThrottleConfig{BusyFraction: 1})
		if err != nil {
			t.Fatal(err)
		}
		w := ThrottledReplica{Replica: r, Scan: scan}
		_, e1 := w.RangeSketch(ctx, reconcile.RangeSketchRequest{})
		_, e2 := w.FetchByHash(ctx, reconcile.FetchByHashRequest{})
		st, e3 := w.OpenSymbols(ctx, reconcile.SymbolsRequest{})
		if st != nil {
			if _, err := st.Next(ctx); err != io.EOF {
				t.Fatalf("throttled stream: %v, want EOF", err)
			}
			st.Close()
		}
		hs, e4 := w.ApplyAndHash(ctx, 0, make([]reconcile.Entry, 3), []reconcile.KeyRange{{}})
		for _, name := range []string{"RangeSketch", "FetchByHash", "OpenSymbols", "ApplyAndHash"} {
			if r.calls[name] != 1 {
				t.Errorf("served=%t: %s reached the replica %d times, want 1", served, name, r.calls[name])
			}
		}
		for i, err := range []error{e1, e2, e3} {
			if served && err != nil || !served && !errors.Is(err, reconcile.ErrUnsupported) {
				t.Errorf("served=%t: call %d: %v", served, i, err)
			}
		}
		if e4 != nil {
			t.Errorf("served=%t: ApplyAndHash: %v", served, e4)
		}
		if !served && (r.calls["Apply"] != 1 || r.calls["RangeHash"] != 1 || len(hs) != 1) {
			t.Errorf("unserved ApplyAndHash: Apply %d, RangeHash %d calls, %d hashes; want 1, 1, 1", r.calls["Apply"], r.calls["RangeHash"], len(hs))
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
	w := ThrottledReplica{Replica: rec, ApplyChunk: 10}
	es := make([]reconcile.Entry, 25)
	if _, err := w.ApplyAndHash(context.Background(), 0, es, []reconcile.KeyRange{{}}); err != nil {
		t.Fatal(err)
	}
	if want := []int{10, 5, -10}; !slices.Equal(rec.calls, want) {
		t.Fatalf("calls %v, want %v (negative: ApplyAndHash)", rec.calls, want)
	}
}

type recordingConfirmer struct {
	reconcile.Replica // nil: no other call is made
	calls             []int
}

func (r *recordingConfirmer) Apply(_ context.Context, _ uint32, es []reconcile.Entry) error {
	r.calls = append(r.calls, len(es))
	return nil
}

func (r *recordingConfirmer) ApplyAndHash(_ context.Context, _ uint32, es []reconcile.Entry, _ []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
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
	if err := scan.Wait(ctx, 10, 0); err != nil { // the bucket empty again
		t.Fatal(err)
	}
	_, end = scan.Start(ctx)
	w0 := time.Now()
	if err := scan.Wait(ctx, 10, 0); err != nil {
		t.Fatal(err)
	}
	w := time.Since(w0)
	if share := end(); share < w/2 {
		t.Fatalf("a wait of %v with another context was excluded: share %v", w, share)
	}
}

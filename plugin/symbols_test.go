package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/merkle"
	"github.com/pebble-ae/pebble-ae/plugin"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// serveTCP serves register's services on 127.0.0.1 (plaintext TCP: real
// sockets, HTTP/2 flow control and cancellation) until the test ends and
// returns the address.
func serveTCP(t *testing.T, register func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

// serveLoopback serves e with a plugin.Server on 127.0.0.1 and returns the
// server and a client dialed to it (plugin.Dial, plaintext on loopback).
func serveLoopback(t *testing.T, e *engine.Engine, sopts *plugin.ServerOptions) (*plugin.Server, *plugin.Client) {
	t.Helper()
	s := plugin.NewServer(e, sopts)
	addr := serveTCP(t, s.Register, s.GRPCServerOptions()...)
	c, err := plugin.Dial(testCtx(t), addr, nil, e.ReplicaID(), &plugin.DialOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return s, c
}

// dialRaw returns a plain gRPC connection to addr (closed at cleanup), for
// tests that need the raw stub or a hand-made server.
func dialRaw(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// remoteSentinels returns the sentinel names a status error carries in its
// ErrorInfo detail (what a plugin.Client turns back into errors.Is
// matches), for tests that call the raw stub.
func remoteSentinels(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == plugin.ErrorDomain {
			return info.GetMetadata()["errors"]
		}
	}
	return ""
}

// readStream reads s to its end.
func readStream(t *testing.T, s reconcile.SymbolStream) []reconcile.SymbolChunk {
	t.Helper()
	defer s.Close()
	var out []reconcile.SymbolChunk
	for {
		c, err := s.Next(testCtx(t))
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("after %d chunks: %v", len(out), err)
		}
		out = append(out, c)
	}
}

// TestSymbolStreamMatchesEngine reads symbol streams through gRPC (a
// plugin.Server on 127.0.0.1, and a plugin subprocess) and checks that they
// are, chunk for chunk, the streams the engine itself opens for the same
// request: same chunk sizes, counts and symbols, for a whole partition (the
// entry index's prefix and beyond), a sub-range, an empty range and a
// stream shorter than its first chunk.
func TestSymbolStreamMatchesEngine(t *testing.T) {
	const n = 3000
	requests := []reconcile.SymbolsRequest{
		{Ranges: []reconcile.KeyRange{{}}, Max: 2 * n},
		{Ranges: []reconcile.KeyRange{{Start: []byte("k0500"), End: []byte("k1500")}}, Max: 1000},
		{Ranges: []reconcile.KeyRange{{Start: []byte("k0100"), End: []byte("k0200")}, {Start: []byte("k2000"), End: nil}}, Max: 777},
		{Ranges: []reconcile.KeyRange{{Start: []byte("x"), End: []byte("y")}}, Max: 20},
		{Ranges: []reconcile.KeyRange{{}}, Max: 5},
	}
	for _, tc := range []struct {
		name string
		// open returns the replica under test and an engine holding the
		// same records.
		open func(t *testing.T) (remote reconcile.Replica, local *engine.Engine)
	}{
		{"loopback", func(t *testing.T) (reconcile.Replica, *engine.Engine) {
			e := openEngine(t, "a", record.ModeLWW)
			fill(t, e, "k", n, 40)
			_, c := serveLoopback(t, e, nil)
			return c, e
		}},
		{"subprocess", func(t *testing.T) (reconcile.Replica, *engine.Engine) {
			c := openPlugin(t, t.TempDir(), "p", quietOpen())
			waitReady(t, c)
			fill(t, c, "k", n, 40)
			e := openEngine(t, "copy", record.ModeLWW)
			if err := e.Apply(testCtx(t), 0, allEntries(t, c)); err != nil {
				t.Fatal(err)
			}
			if rc, re := rootOf(t, c), rootOf(t, e); rc != re {
				t.Fatalf("copy differs from the plugin: %v vs %v", re, rc)
			}
			return c, e
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote, local := tc.open(t)
			for _, req := range requests {
				t.Run(fmt.Sprintf("%v/max=%d", req.Ranges, req.Max), func(t *testing.T) {
					ls, err := local.OpenSymbols(testCtx(t), req)
					if err != nil {
						t.Fatal(err)
					}
					want := readStream(t, ls)
					rs, err := remote.OpenSymbols(testCtx(t), req)
					if err != nil {
						t.Fatal(err)
					}
					got := readStream(t, rs)
					if len(got) != len(want) {
						t.Fatalf("%d chunks through gRPC, %d from the engine", len(got), len(want))
					}
					symbols := 0
					for i := range want {
						if got[i].Count != want[i].Count || !slices.Equal(got[i].Symbols, want[i].Symbols) {
							t.Fatalf("chunk %d: got count %d and %d symbols, want count %d and %d symbols (or the symbols differ)",
								i, got[i].Count, len(got[i].Symbols), want[i].Count, len(want[i].Symbols))
						}
						symbols += len(got[i].Symbols)
					}
					if symbols != req.Max {
						t.Fatalf("%d symbols, want %d", symbols, req.Max)
					}
				})
			}
		})
	}
}

// diverge gives a and b the same n keys (a's records, applied to b), then
// onlyEach keys that only a has, onlyEach that only b has and changed keys
// that b rewrote. It returns the number of keys a session must repair.
func diverge(t testing.TB, a, b interface {
	reconcile.Replica
	putter
}, n, onlyEach, changed int) uint64 {
	t.Helper()
	ctx := testCtx(t)
	fill(t, a, "k", n, 40)
	if err := b.Apply(ctx, 0, allEntries(t, a)); err != nil {
		t.Fatal(err)
	}
	if ra, rb := rootOf(t, a), rootOf(t, b); ra != rb {
		t.Fatalf("copied replicas differ: %v vs %v", ra, rb)
	}
	fill(t, a, "a-only-", onlyEach, 40)
	fill(t, b, "b-only-", onlyEach, 40)
	for i := range changed {
		if err := b.Put(ctx, fmt.Appendf(nil, "k%04d", i*(n/changed)), []byte("changed on b"), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	return uint64(2*onlyEach + changed)
}

// syncOptions returns strict session options with the replicas' Infos
// fetched beforehand, as a repair loop does once for all its sessions with
// a peer, so the session's rounds are its own: root, symbols, fetch,
// apply-and-confirm.
func syncOptions(t *testing.T, a, b reconcile.Replica) reconcile.SyncOptions {
	t.Helper()
	ia, err := a.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := b.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return reconcile.SyncOptions{Session: reconcile.SessionConfig{Strict: true, InfoA: &ia, InfoB: &ib}}
}

// TestSymbolsSessionThroughGRPC reconciles K=100 differences with symbol
// streams between an engine and a replica behind gRPC (a plugin.Server on
// 127.0.0.1, and a real plugin subprocess), and with both behind gRPC: the
// session uses symbols (symbol bytes, no fallback), takes the four round
// trips of the same session between two engines in process, converges,
// and the payload bytes each client counted equal, byte for byte, the
// session's model of that side's traffic.
func TestSymbolsSessionThroughGRPC(t *testing.T) {
	const n, onlyEach, changed = 2000, 35, 30 // K = 2*35 + 30 = 100
	ctx := testCtx(t)
	type side interface {
		reconcile.Replica
		putter
	}

	// The same divergence between two engines in process: the reference.
	ia, ib := openEngine(t, "a", record.ModeLWW), openEngine(t, "b", record.ModeLWW)
	want := diverge(t, ia, ib, n, onlyEach, changed)
	ref, err := reconcile.SyncPartition(ctx, ia, ib, 0, syncOptions(t, ia, ib))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("in process: %v", ref)
	if want != 100 || !ref.Converged || ref.Rounds != 4 || ref.SketchFallbacks != 0 {
		t.Fatalf("in process: K=%d, converged %t in %d rounds, %d fallbacks; want K=100 in 4 rounds", want, ref.Converged, ref.Rounds, ref.SketchFallbacks)
	}

	noCompress := &plugin.ServerOptions{CompressAbove: -1}
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (a, b side, clients [2]*plugin.Client)
	}{
		{"engine-loopback", func(t *testing.T) (side, side, [2]*plugin.Client) {
			_, cb := serveLoopback(t, openEngine(t, "b", record.ModeLWW), noCompress)
			return openEngine(t, "a", record.ModeLWW), cb, [2]*plugin.Client{nil, cb}
		}},
		{"loopback-loopback", func(t *testing.T) (side, side, [2]*plugin.Client) {
			_, ca := serveLoopback(t, openEngine(t, "a", record.ModeLWW), noCompress)
			_, cb := serveLoopback(t, openEngine(t, "b", record.ModeLWW), noCompress)
			return ca, cb, [2]*plugin.Client{ca, cb}
		}},
		{"engine-subprocess", func(t *testing.T) (side, side, [2]*plugin.Client) {
			cb := openPlugin(t, t.TempDir(), "b", quietOpen())
			waitReady(t, cb)
			return openEngine(t, "a", record.ModeLWW), cb, [2]*plugin.Client{nil, cb}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			a, b, clients := tc.open(t)
			if got := diverge(t, a, b, n, onlyEach, changed); got != want {
				t.Fatalf("K=%d, want %d", got, want)
			}
			opts := syncOptions(t, a, b)
			for _, c := range clients {
				if c != nil {
					c.ResetWireStats()
				}
			}
			st, err := reconcile.SyncPartition(ctx, a, b, 0, opts)
			if err != nil {
				t.Fatal(err)
			}
			var wire [2]plugin.WireStats
			for i, c := range clients {
				if c != nil {
					wire[i] = c.WireStats()
				}
			}
			t.Logf("session: %v", st)
			symbolBytes := st.A.Received.Sketches + st.B.Received.Sketches
			if !st.Converged || st.Rounds != ref.Rounds || st.SketchFallbacks != 0 || symbolBytes == 0 || st.KeysRepaired() != want {
				t.Fatalf("converged %t in %d rounds (in process: %d), %d fallbacks, %d symbol bytes, %d keys repaired (want %d)",
					st.Converged, st.Rounds, ref.Rounds, st.SketchFallbacks, symbolBytes, st.KeysRepaired(), want)
			}
			if ra, rb := rootOf(t, a), rootOf(t, b); ra != rb {
				t.Fatalf("roots differ after the session: %v vs %v", ra, rb)
			}
			for i, c := range clients {
				if c == nil {
					continue
				}
				ws := wire[i]
				model := st.A
				if i == 1 {
					model = st.B
				}
				t.Logf("side %d: wire %+v, model sent %d received %d", i, ws, model.Sent.Total(), model.Received.Total())
				if ws.PayloadSent != model.Sent.Total() || ws.PayloadReceived != model.Received.Total() {
					t.Errorf("side %d: measured %d sent, %d received; the model says %d, %d",
						i, ws.PayloadSent, ws.PayloadReceived, model.Sent.Total(), model.Received.Total())
				}
				if ws.Calls != 4 {
					t.Errorf("side %d: %d calls, want 4 (one a round)", i, ws.Calls)
				}
			}
		})
	}
}

// TestSymbolsFetchByHashSplit: a large repair's fetch by sketch ID is split
// into requests of at most FetchByHashLimit IDs (one answer with all of them
// outgrew gRPC's message limit at 500 k records and failed every session),
// and the session still converges through gRPC: all chunks in the one
// fetch round by default, one chunk a round as the repair loop asks for
// throttled replicas.
func TestSymbolsFetchByHashSplit(t *testing.T) {
	t.Run("one round", func(t *testing.T) { testFetchByHashSplit(t, 0) })
	t.Run("a chunk a round", func(t *testing.T) { testFetchByHashSplit(t, 1) })
}

func testFetchByHashSplit(t *testing.T, perRound int) {
	const n, onlyEach, changed = 2000, 35, 30
	ctx := testCtx(t)
	_, b := serveLoopback(t, openEngine(t, "b", record.ModeLWW), nil)
	a := openEngine(t, "a", record.ModeLWW)
	want := diverge(t, a, b, n, onlyEach, changed)
	opts := syncOptions(t, a, b)
	opts.Session.FetchByHashLimit = 16
	opts.Session.FetchByHashChunksPerRound = perRound
	b.ResetWireStats()
	st, err := reconcile.SyncPartition(ctx, a, b, 0, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session: %v, wire %+v", st, b.WireStats())
	if !st.Converged || st.KeysRepaired() != want || st.SketchFallbacks != 0 {
		t.Fatalf("converged %t, %d keys repaired (want %d), %d fallbacks", st.Converged, st.KeysRepaired(), want, st.SketchFallbacks)
	}
	// B holds onlyEach+changed records A lacks or has older: at 16 IDs a
	// request, at least 4 FetchByHash calls instead of one.
	if calls := b.WireStats().Calls; calls < 4+3 {
		t.Fatalf("%d calls to b: the fetch was not split", calls)
	}
	switch {
	case perRound == 0 && st.Rounds != 4:
		t.Fatalf("%d rounds: the chunks did not share the fetch round", st.Rounds)
	case perRound == 1 && st.Rounds < 4+4:
		// 65 records from B at 16 a round: 5 fetch rounds instead of 1.
		t.Fatalf("%d rounds: the fetch did not take a round per chunk", st.Rounds)
	}
	if ra, rb := rootOf(t, a), rootOf(t, b); ra != rb {
		t.Fatalf("roots differ after the session: %v vs %v", ra, rb)
	}
}

// TestSymbolsBadRequests: a request for no symbols or more than
// reconcile.MaxSymbols fails with a typed error, whether the client catches
// it or (through the raw stub) the server does, and so does one for an
// unknown partition; the server keeps serving afterwards.
func TestSymbolsBadRequests(t *testing.T) {
	ctx := testCtx(t)
	e := openEngine(t, "a", record.ModeLWW)
	fill(t, e, "k", 100, 20)
	s := plugin.NewServer(e, nil)
	addr := serveTCP(t, s.Register, s.GRPCServerOptions()...)
	c, err := plugin.Dial(ctx, addr, nil, "a", &plugin.DialOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw := pb.NewReplicaClient(dialRaw(t, addr))
	whole := []reconcile.KeyRange{{}}

	for _, tc := range []struct {
		name string
		req  reconcile.SymbolsRequest
		// want: what the client's error matches; sentinel: what the server
		// names in its status; code: the status code.
		want     []error
		sentinel string
		code     codes.Code
	}{
		{"max 0", reconcile.SymbolsRequest{Ranges: whole}, []error{engine.ErrBadRequest, reconcile.ErrBadSketchRequest}, "reconcile.ErrBadSketchRequest", codes.InvalidArgument},
		{"max over MaxSymbols", reconcile.SymbolsRequest{Ranges: whole, Max: reconcile.MaxSymbols + 1}, []error{engine.ErrBadRequest, reconcile.ErrBadSketchRequest}, "reconcile.ErrBadSketchRequest", codes.InvalidArgument},
		{"unknown partition", reconcile.SymbolsRequest{Partition: 7, Ranges: whole, Max: 10}, []error{merkle.ErrUnknownPartition}, "merkle.ErrUnknownPartition", codes.NotFound},
		{"ranges out of order", reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{Start: []byte("b"), End: []byte("a")}}, Max: 10}, []error{engine.ErrBadRequest}, "engine.ErrBadRequest", codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, err := c.OpenSymbols(ctx, tc.req)
			if err == nil {
				ss.Close()
				t.Fatal("client: no error")
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("client: %v does not match %v", err, w)
				}
			}
			call, err := raw.Symbols(ctx, &pb.SymbolsRequest{Partition: tc.req.Partition, Ranges: toPBRangesForTest(tc.req.Ranges), Max: uint32(tc.req.Max)})
			if err == nil {
				_, err = call.Recv()
			}
			if status.Code(err) != tc.code || !strings.Contains(remoteSentinels(err), tc.sentinel) {
				t.Errorf("server: %v (code %v, sentinels %q), want code %v naming %s", err, status.Code(err), remoteSentinels(err), tc.code, tc.sentinel)
			}
		})
	}

	// The server still serves, and no engine stream was left open.
	got := readStreamFrom(t, c, reconcile.SymbolsRequest{Ranges: whole, Max: 300})
	if len(got) == 0 || got[0].Count != 100 {
		t.Fatalf("after the bad requests: %d chunks", len(got))
	}
	waitNoOpenStreams(t, s)
}

func readStreamFrom(t *testing.T, c reconcile.Replica, req reconcile.SymbolsRequest) []reconcile.SymbolChunk {
	t.Helper()
	ss, err := c.OpenSymbols(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return readStream(t, ss)
}

func toPBRangesForTest(rs []reconcile.KeyRange) []*pb.KeyRange {
	out := make([]*pb.KeyRange, len(rs))
	for i, r := range rs {
		out[i] = &pb.KeyRange{Start: r.Start, End: r.End}
	}
	return out
}

// waitNoOpenStreams waits (bounded) until s holds no engine symbol stream.
func waitNoOpenStreams(t *testing.T, s *plugin.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.OpenSymbolStreams() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d engine symbol streams still open on the server", s.OpenSymbolStreams())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scriptedSymbols is a Replica server whose Symbols call sends the chunks
// of script, then ends the call (or, with hang, waits for the client to
// cancel). It records when its handler returns.
type scriptedSymbols struct {
	pb.UnimplementedReplicaServer
	script []*pb.SymbolsChunk
	hang   bool
	ended  chan struct{}
}

func (s *scriptedSymbols) Symbols(_ *pb.SymbolsRequest, stream pb.Replica_SymbolsServer) error {
	defer close(s.ended)
	for _, c := range s.script {
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	if s.hang {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return nil
}

// chunk returns a SymbolsChunk of n zero symbols (and extra bytes).
func chunk(count uint64, n, extra int) *pb.SymbolsChunk {
	return &pb.SymbolsChunk{Count: count, Symbols: make([]byte, 9*n+extra)}
}

// TestSymbolsMalformedChunks: a server whose chunks break the chunk
// schedule (a wrong length, a count that changes, too many or too few
// symbols, a chunk that is not whole symbols) makes the client fail with
// an error matching plugin.ErrBadResponse, from OpenSymbols for the first
// chunk and from Next for a later one; the error is sticky, Close is
// idempotent, and nothing panics.
func TestSymbolsMalformedChunks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		script []*pb.SymbolsChunk
		// atOpen: OpenSymbols fails; else the Next after good chunks.
		atOpen bool
		good   int
	}{
		{"first chunk short", 200, []*pb.SymbolsChunk{chunk(5, 7, 0)}, true, 0},
		{"first chunk long", 200, []*pb.SymbolsChunk{chunk(5, 9, 0)}, true, 0},
		{"partial symbol", 200, []*pb.SymbolsChunk{chunk(5, 8, 4)}, true, 0},
		{"no chunk", 200, nil, true, 0},
		{"second chunk long", 200, []*pb.SymbolsChunk{chunk(5, 8, 0), chunk(5, 9, 0)}, false, 1},
		{"count changes", 200, []*pb.SymbolsChunk{chunk(5, 8, 0), chunk(5, 8, 0), chunk(6, 8, 0)}, false, 2},
		{"ends early", 200, []*pb.SymbolsChunk{chunk(5, 8, 0), chunk(5, 8, 0)}, false, 2},
		{"last chunk not cut to max", 12, []*pb.SymbolsChunk{chunk(5, 8, 0), chunk(5, 8, 0)}, false, 1},
		{"chunk after max", 16, []*pb.SymbolsChunk{chunk(5, 8, 0), chunk(5, 8, 0), chunk(5, 8, 0)}, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := &scriptedSymbols{script: tc.script, ended: make(chan struct{})}
			c := plugin.NewClient(dialRaw(t, serveTCP(t, func(r grpc.ServiceRegistrar) { pb.RegisterReplicaServer(r, srv) })), nil)
			ss, err := c.OpenSymbols(ctx, reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{}}, Max: tc.max})
			if tc.atOpen {
				if !errors.Is(err, plugin.ErrBadResponse) {
					t.Fatalf("OpenSymbols: %v, want ErrBadResponse", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenSymbols: %v", err)
			}
			defer ss.Close()
			for i := range tc.good {
				if _, err := ss.Next(ctx); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
			_, err = ss.Next(ctx)
			if !errors.Is(err, plugin.ErrBadResponse) {
				t.Fatalf("Next: %v, want ErrBadResponse", err)
			}
			t.Logf("Next: %v", err)
			if _, again := ss.Next(ctx); !errors.Is(again, plugin.ErrBadResponse) {
				t.Fatalf("Next after the error: %v, want the same error", again)
			}
			ss.Close()
			ss.Close()
		})
	}
}

// TestSymbolsCancelEndsServerStream: a client that cancels its context in
// the middle of a stream, or closes the stream, ends the server's call and
// its engine stream (the server's open-stream count drops back to zero),
// though the server had far more symbols to send; and a Next waiting on a
// server that has nothing to send returns when its context is canceled,
// which ends that server's handler.
func TestSymbolsCancelEndsServerStream(t *testing.T) {
	e := openEngine(t, "a", record.ModeLWW)
	fill(t, e, "k", 1000, 20)
	s, c := serveLoopback(t, e, nil)
	req := reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{}}, Max: reconcile.MaxSymbols}

	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			ss, err := c.OpenSymbols(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			defer ss.Close()
			for range 20 {
				if _, err := ss.Next(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if n := s.OpenSymbolStreams(); n != 1 {
				t.Fatalf("%d engine streams open on the server mid-stream, want 1", n)
			}
			if how == "cancel" {
				cancel()
				if _, err := ss.Next(ctx); !errors.Is(err, context.Canceled) {
					t.Fatalf("Next after cancel: %v, want context.Canceled", err)
				}
			} else {
				ss.Close()
			}
			waitNoOpenStreams(t, s)
		})
	}

	t.Run("cancel while waiting", func(t *testing.T) {
		srv := &scriptedSymbols{script: []*pb.SymbolsChunk{chunk(5, 8, 0)}, hang: true, ended: make(chan struct{})}
		hc := plugin.NewClient(dialRaw(t, serveTCP(t, func(r grpc.ServiceRegistrar) { pb.RegisterReplicaServer(r, srv) })), nil)
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		ss, err := hc.OpenSymbols(ctx, reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{}}, Max: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer ss.Close()
		if _, err := ss.Next(ctx); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		if _, err := ss.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next: %v, want context.Canceled", err)
		}
		select {
		case <-srv.ended:
		case <-time.After(10 * time.Second):
			t.Fatal("the server's handler is still running after the client canceled")
		}
	})

	// The server still serves.
	if got := readStreamFrom(t, c, reconcile.SymbolsRequest{Ranges: []reconcile.KeyRange{{}}, Max: 50}); len(got) == 0 {
		t.Fatal("no chunks after the canceled streams")
	}
	waitNoOpenStreams(t, s)
}

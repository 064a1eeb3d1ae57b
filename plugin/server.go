package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"
)

// Default limits of the server and the client.
const (
	// DefaultMaxMessageSize bounds one gRPC message, in both directions, on
	// both sides (gRPC's own default receive limit is 4 MiB).
	DefaultMaxMessageSize = 64 << 20
	// DefaultScanChunkBytes bounds one message of a RangeScan stream (a
	// single larger entry travels alone).
	DefaultScanChunkBytes = 1 << 20
	// DefaultStoreScanChunkBytes bounds one message of a Scan stream (the
	// application's store). Larger than a RangeScan's chunk: a Scan moves
	// millions of small items and its server, iterating, is what limits
	// it; fewer, larger messages cost it less (2-core VM, 2026-12-06, a
	// scan of 10^6 keys through the plugin, alternating in one process:
	// ~10% more keys/s with 4 MiB than with 1 MiB).
	DefaultStoreScanChunkBytes = 4 << 20
	// DefaultMaxScanBytes bounds the records of one RangeScan page; a page
	// that reaches it ends early with more set.
	DefaultMaxScanBytes = 32 << 20
	// DefaultCompressAbove is the size of a record-carrying message (Fetch
	// answer, Apply request, RangeScan page with records) from which it is
	// gzip-compressed.
	DefaultCompressAbove = 32 << 10
	// DefaultWindowSize is the HTTP/2 flow-control window of a stream,
	// on both sides, for what each receives (a connection's is twice
	// it): large enough that a Scan's server streams several chunks
	// ahead of its client instead of waiting for window updates.
	DefaultWindowSize = 8 << 20
	// transportBufferSize is the read and write buffer of a connection
	// with DefaultWindowSize (gRPC's default: 32 KiB), so that a chunk of
	// a scan crosses in few system calls.
	transportBufferSize = 256 << 10
	// scanSubPage is the number of records the server reads from the engine
	// at a time while streaming a RangeScan with records, bounding its
	// memory to scanSubPage records.
	scanSubPage = 64
)

// ServerOptions configure a Server. The zero value is usable.
type ServerOptions struct {
	// MaxMessageSize bounds received and sent messages (default
	// DefaultMaxMessageSize). Larger requests fail with RESOURCE_EXHAUSTED.
	MaxMessageSize int
	// MaxKeysPerRequest bounds the keys of Fetch and Apply, the ranges of
	// RangeHash and the limit of RangeScan (default and maximum:
	// engine.MaxKeysPerRequest; engine.MaxRanges for ranges).
	MaxKeysPerRequest int
	// ScanChunkBytes bounds one RangeScan stream message (default
	// DefaultScanChunkBytes).
	ScanChunkBytes int
	// MaxScanBytes bounds one RangeScan page (default DefaultMaxScanBytes).
	MaxScanBytes int
	// StoreScanChunkBytes bounds one Scan stream message (default
	// DefaultStoreScanChunkBytes; at most half MaxMessageSize).
	StoreScanChunkBytes int
	// CompressAbove: answers carrying records of at least this many bytes
	// are gzip-compressed (default DefaultCompressAbove; negative: never).
	CompressAbove int
	// WindowSize is the HTTP/2 flow-control window of each stream (and
	// twice it, of the connection) for what the server receives (default
	// DefaultWindowSize; negative: gRPC's own).
	WindowSize int
	// Repairer runs Repair calls and reports last sessions in Status; nil:
	// Repair answers UNIMPLEMENTED.
	Repairer Repairer
	// Logger receives panics and internal errors (default: discard).
	Logger *slog.Logger
}

// EnsureDefaults returns a copy of o with zero fields set to defaults.
func (o *ServerOptions) EnsureDefaults() *ServerOptions {
	var c ServerOptions
	if o != nil {
		c = *o
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxKeysPerRequest <= 0 || c.MaxKeysPerRequest > engine.MaxKeysPerRequest {
		c.MaxKeysPerRequest = engine.MaxKeysPerRequest
	}
	if c.ScanChunkBytes <= 0 {
		c.ScanChunkBytes = DefaultScanChunkBytes
	}
	if c.ScanChunkBytes > c.MaxMessageSize/2 {
		c.ScanChunkBytes = c.MaxMessageSize / 2
	}
	if c.MaxScanBytes <= 0 {
		c.MaxScanBytes = DefaultMaxScanBytes
	}
	if c.StoreScanChunkBytes <= 0 {
		c.StoreScanChunkBytes = DefaultStoreScanChunkBytes
	}
	if c.StoreScanChunkBytes > c.MaxMessageSize/2 {
		c.StoreScanChunkBytes = c.MaxMessageSize / 2
	}
	if c.CompressAbove == 0 {
		c.CompressAbove = DefaultCompressAbove
	}
	if c.WindowSize == 0 {
		c.WindowSize = DefaultWindowSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &c
}

// Repairer runs anti-entropy sessions for the Repair and Status calls. A
// node (package plugin/node) implements it with its peers and its repair
// loop's sessions; the plugin package only carries the calls.
type Repairer interface {
	// Repair reconciles the given partitions (nil: all) with peer and
	// returns one summary per session.
	Repair(ctx context.Context, peer record.ReplicaID, partitions []uint32, naive bool) ([]SessionSummary, error)
	// LastSessions returns the summaries of the most recent sessions.
	LastSessions() []SessionSummary
}

// SessionSummary summarizes one anti-entropy session.
type SessionSummary struct {
	Peer      record.ReplicaID
	Partition uint32
	Stats     reconcile.Stats
	// Err is the session's error, "" if it succeeded.
	Err      string
	Finished time.Time
}

func toPBSummary(s SessionSummary) *pb.SessionSummary {
	sent := s.Stats.A.Sent.Add(s.Stats.B.Sent).Total()
	recv := s.Stats.A.Received.Add(s.Stats.B.Received).Total()
	out := &pb.SessionSummary{
		Peer:            string(s.Peer),
		Partition:       s.Partition,
		Method:          string(s.Stats.Method),
		Rounds:          uint32(s.Stats.Rounds),
		BytesSent:       sent,
		BytesReceived:   recv,
		KeysCompared:    s.Stats.KeysCompared,
		KeysTransferred: s.Stats.KeysTransferred,
		KeysRepaired:    s.Stats.KeysRepaired(),
		Converged:       s.Stats.Converged,
		DurationNanos:   int64(s.Stats.Duration),
		Error:           s.Err,
		ClockSkewNanos:  int64(s.Stats.ClockSkew),
		Quarantined:     s.Stats.Quarantined,
	}
	if !s.Finished.IsZero() {
		out.FinishedUnixNanos = s.Finished.UnixNano()
	}
	return out
}

// Server is the gRPC Replica service over an engine. Every request is
// validated; errors are mapped to status codes in one place (errors.go).
// It is safe for concurrent use.
type Server struct {
	pb.UnimplementedReplicaServer
	e    *engine.Engine
	opts ServerOptions
	// openSymbolStreams counts the engine symbol streams of Symbols calls
	// in progress.
	openSymbolStreams atomic.Int64
	// draining is closed by Drain.
	draining  chan struct{}
	drainOnce sync.Once
}

// NewServer returns the service for e. It does not own e: closing the
// engine makes every call fail with UNAVAILABLE.
func NewServer(e *engine.Engine, opts *ServerOptions) *Server {
	return &Server{e: e, opts: *opts.EnsureDefaults(), draining: make(chan struct{})}
}

// GRPCServerOptions returns the options a grpc.Server serving s must use:
// message size limits and the recovery and error-mapping interceptors.
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.opts.MaxMessageSize),
		grpc.MaxSendMsgSize(s.opts.MaxMessageSize),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// Handlers run on long-lived workers whose stacks have grown to
		// the engine's write path, not on a new goroutine per call.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}
	if w := s.opts.WindowSize; w > 0 {
		opts = append(opts,
			grpc.InitialWindowSize(int32(min(w, 1<<30))),
			grpc.InitialConnWindowSize(int32(min(2*w, 1<<30))),
			grpc.ReadBufferSize(transportBufferSize),
			grpc.WriteBufferSize(transportBufferSize))
	}
	return opts
}

// Register registers the Replica service on reg (NewGRPCServer also
// registers server reflection; go-plugin registers its own).
func (s *Server) Register(reg grpc.ServiceRegistrar) { pb.RegisterReplicaServer(reg, s) }

// NewGRPCServer returns a grpc.Server serving the Replica service over e,
// with reflection, limits and interceptors; extra options are appended
// (credentials, say).
func NewGRPCServer(e *engine.Engine, opts *ServerOptions, extra ...grpc.ServerOption) *grpc.Server {
	gs, _ := newGRPCServer(e, opts, extra...)
	return gs
}

func newGRPCServer(e *engine.Engine, opts *ServerOptions, extra ...grpc.ServerOption) (*grpc.Server, *Server) {
	s := NewServer(e, opts)
	gs := grpc.NewServer(append(s.GRPCServerOptions(), extra...)...)
	s.Register(gs)
	reflection.Register(gs)
	return gs, s
}

func (s *Server) recovered(method string, r any) error {
	s.opts.Logger.Error("plugin: panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
	return toStatus(fmt.Errorf("%w: panic in %s: %v", ErrInternal, method, r))
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, s.recovered(info.FullMethod, r)
		}
	}()
	resp, err = handler(ctx, req)
	s.logClockRefusal(ctx, info.FullMethod, err)
	return resp, toStatus(err)
}

// logClockRefusal logs a record refused as stamped in the future
// (record.ErrClockOffset) with the caller's identity.
func (s *Server) logClockRefusal(ctx context.Context, method string, err error) {
	if err != nil && errors.Is(err, record.ErrClockOffset) {
		s.opts.Logger.Warn("refused a record stamped beyond this replica's clock plus its maximum offset",
			"method", method, "peer", callerID(ctx), "err", err)
	}
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(info.FullMethod, r)
		}
	}()
	err = handler(srv, ss)
	s.logClockRefusal(ss.Context(), info.FullMethod, err)
	return toStatus(err)
}

// badRequest returns an engine.ErrBadRequest (INVALID_ARGUMENT).
func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{engine.ErrBadRequest}, args...)...)
}

// overLimit returns an ErrBadRequest that is also ErrLimitExceeded
// (RESOURCE_EXHAUSTED).
func overLimit(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{engine.ErrBadRequest, ErrLimitExceeded}, args...)...)
}

func checkRange(what string, r *pb.KeyRange) (reconcile.KeyRange, error) {
	if r == nil {
		return reconcile.KeyRange{}, badRequest("%s: missing key range (send an empty KeyRange for the whole partition)", what)
	}
	kr := fromPBRange(r)
	if !kr.Valid() {
		return kr, badRequest("%s: inverted key range %s", what, kr)
	}
	return kr, nil
}

// Info implements the Info call.
func (s *Server) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.e.Info(ctx)
	if err != nil {
		return nil, err
	}
	return toPBInfo(info), nil
}

// RangeHash implements the RangeHash call.
func (s *Server) RangeHash(ctx context.Context, req *pb.RangeHashRequest) (*pb.RangeHashResponse, error) {
	if n := len(req.GetRanges()); n > engine.MaxRanges {
		return nil, overLimit("%d ranges, more than %d", n, engine.MaxRanges)
	}
	if f := req.GetFanout(); f != 0 && (f < 2 || f > engine.MaxFanout) {
		return nil, badRequest("fanout %d out of [2, %d] (or 0 for no children)", f, engine.MaxFanout)
	}
	if d := req.GetDepth(); d > engine.MaxDepth {
		return nil, badRequest("depth %d out of [0, %d]", d, engine.MaxDepth)
	}
	rr := reconcile.RangeHashRequest{Partition: req.GetPartition(), Fanout: int(req.GetFanout()), Depth: int(req.GetDepth())}
	for i, r := range req.GetRanges() {
		kr, err := checkRange(fmt.Sprintf("range %d", i), r)
		if err != nil {
			return nil, err
		}
		rr.Ranges = append(rr.Ranges, kr)
	}
	hashes, err := s.e.RangeHash(ctx, rr)
	if err != nil {
		return nil, err
	}
	out := &pb.RangeHashResponse{Ranges: make([]*pb.Node, len(hashes))}
	for i, h := range hashes {
		out.Ranges[i] = toPBNode(h.Range, h.Fingerprint, h.Children)
	}
	return out, s.checkAnswerSize(out)
}

// checkAnswerSize fails an answer too large to send with a clear message.
func (s *Server) checkAnswerSize(m proto.Message) error {
	if n := proto.Size(m); n > s.opts.MaxMessageSize {
		return overLimit("answer of %d bytes exceeds the maximum message size %d: ask for less", n, s.opts.MaxMessageSize)
	}
	return nil
}

// RangeScan implements the RangeScan call: one page of at most limit
// entries, streamed in chunks of at most ScanChunkBytes. With records the
// engine is read scanSubPage entries at a time, so the server holds at most
// that many records.
func (s *Server) RangeScan(req *pb.RangeScanRequest, stream pb.Replica_RangeScanServer) error {
	ctx := stream.Context()
	kr, err := checkRange("range", req.GetRange())
	if err != nil {
		return err
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = engine.DefaultScanLimit
	}
	if limit > s.opts.MaxKeysPerRequest {
		return overLimit("limit %d, more than %d", limit, s.opts.MaxKeysPerRequest)
	}
	sub := limit
	if req.GetWithRecords() && sub > scanSubPage {
		sub = scanSubPage
	}
	var (
		chunk      = &pb.RangeScanResponse{}
		chunkBytes int
		pageBytes  int
		remaining  = limit
		start      = kr.Start
		first      = true
	)
	for {
		res, err := s.e.RangeScan(ctx, reconcile.RangeScanRequest{
			Partition: req.GetPartition(), Range: reconcile.KeyRange{Start: start, End: kr.End},
			WithRecords: req.GetWithRecords(), Limit: min(sub, remaining),
		})
		if err != nil {
			return err
		}
		if first && req.GetWithRecords() && s.opts.CompressAbove >= 0 {
			// Estimate the page's size from its first sub-page.
			est := 0
			for _, e := range res.Entries {
				est += len(e.Key) + len(e.Record) + 12
			}
			if res.More && len(res.Entries) > 0 {
				est = est * remaining / len(res.Entries)
			}
			if est >= s.opts.CompressAbove {
				_ = grpc.SetSendCompressor(ctx, gzip.Name)
			}
		}
		first = false
		stop := false
		for _, e := range res.Entries {
			pe := &pb.Entry{Key: e.Key, Digest: e.Digest, Record: e.Record}
			n := proto.Size(pe) + 4
			if chunkBytes > 0 && chunkBytes+n > s.opts.ScanChunkBytes {
				if err := stream.Send(chunk); err != nil {
					return err
				}
				chunk, chunkBytes = &pb.RangeScanResponse{}, 0
			}
			if pageBytes > 0 && pageBytes+n > s.opts.MaxScanBytes {
				// The page is full by bytes: end it here.
				chunk.More, chunk.Next = true, e.Key
				stop = true
				break
			}
			chunk.Entries = append(chunk.Entries, pe)
			chunkBytes += n
			pageBytes += n
			remaining--
		}
		if stop {
			break
		}
		if !res.More || remaining <= 0 {
			chunk.More, chunk.Next = res.More, res.Next
			break
		}
		start = res.Next
	}
	return stream.Send(chunk)
}

func (s *Server) checkKeys(n int) error {
	if n > s.opts.MaxKeysPerRequest {
		return overLimit("%d keys, more than %d", n, s.opts.MaxKeysPerRequest)
	}
	return nil
}

// Fetch implements the Fetch call.
func (s *Server) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	if err := s.checkKeys(len(req.GetKeys())); err != nil {
		return nil, err
	}
	for i, k := range req.GetKeys() {
		if len(k) == 0 {
			return nil, fmt.Errorf("%w: key %d: %w", engine.ErrBadRequest, i, engine.ErrEmptyKey)
		}
	}
	es, err := s.e.Fetch(ctx, req.GetPartition(), req.GetKeys())
	if err != nil {
		return nil, err
	}
	out := &pb.FetchResponse{Entries: toPBEntries(es)}
	if err := s.checkAnswerSize(out); err != nil {
		return nil, err
	}
	if s.opts.CompressAbove >= 0 && proto.Size(out) >= s.opts.CompressAbove {
		_ = grpc.SetSendCompressor(ctx, gzip.Name)
	}
	return out, nil
}

// Apply implements the Apply call (with confirm ranges: the engine's
// ApplyAndHash).
func (s *Server) Apply(ctx context.Context, req *pb.ApplyRequest) (*pb.ApplyResponse, error) {
	es, confirm, err := s.checkApply(req)
	if err != nil {
		return nil, err
	}
	if len(confirm) == 0 {
		if err := s.e.Apply(ctx, req.GetPartition(), es); err != nil {
			return nil, err
		}
		return &pb.ApplyResponse{}, nil
	}
	hashes, err := s.e.ApplyAndHash(ctx, req.GetPartition(), es, confirm)
	if err != nil {
		return nil, err
	}
	return toPBApplyResponse(hashes), nil
}

// checkApply validates an Apply request (or one message of an ApplyStream)
// and decodes its entries and confirm ranges.
func (s *Server) checkApply(req *pb.ApplyRequest) ([]reconcile.Entry, []reconcile.KeyRange, error) {
	if err := s.checkKeys(len(req.GetEntries())); err != nil {
		return nil, nil, err
	}
	es, err := fromPBEntries(req.GetEntries())
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w: %v", engine.ErrBadRequest, engine.ErrEmptyKey, err)
	}
	for i, e := range es {
		if len(e.Record) == 0 {
			return nil, nil, fmt.Errorf("%w: entry %d (key %q): %w: empty record", engine.ErrBadRequest, i, e.Key, record.ErrMalformedRecord)
		}
	}
	confirm, err := s.checkRanges("confirm", req.GetConfirm())
	if err != nil {
		return nil, nil, err
	}
	return es, confirm, nil
}

func toPBApplyResponse(hashes []reconcile.RangeHash) *pb.ApplyResponse {
	out := &pb.ApplyResponse{Confirm: make([]*pb.Node, len(hashes))}
	for i, h := range hashes {
		out.Confirm[i] = toPBNode(h.Range, h.Fingerprint, h.Children)
	}
	return out
}

// ApplyStream implements the ApplyStream call: every message is validated
// and applied as it arrives (each atomic on its own, as an Apply); the
// confirm ranges, which only the last message may carry, are hashed once
// the client half-closes. Every message must name the first one's
// partition. A failing message ends the call; the messages before it stay
// applied (Apply is idempotent: the client may resend them all).
func (s *Server) ApplyStream(stream pb.Replica_ApplyStreamServer) error {
	ctx := stream.Context()
	var (
		partition uint32
		confirm   []reconcile.KeyRange
		n         int // messages received
	)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if confirm != nil {
			return badRequest("ApplyStream: message %d after the message with confirm ranges (only the last may carry them)", n)
		}
		if n > 0 && req.GetPartition() != partition {
			return badRequest("ApplyStream: message %d names partition %d, the stream %d", n, req.GetPartition(), partition)
		}
		partition = req.GetPartition()
		es, cr, err := s.checkApply(req)
		if err != nil {
			return fmt.Errorf("ApplyStream: message %d: %w", n, err)
		}
		if len(es) > 0 {
			if err := s.e.Apply(ctx, partition, es); err != nil {
				return fmt.Errorf("ApplyStream: message %d: %w", n, err)
			}
		}
		if len(cr) > 0 {
			confirm = cr
		}
		n++
	}
	if len(confirm) == 0 {
		return stream.SendAndClose(&pb.ApplyResponse{})
	}
	hashes, err := s.e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: partition, Ranges: confirm})
	if err != nil {
		return err
	}
	return stream.SendAndClose(toPBApplyResponse(hashes))
}

// checkRanges validates a list of key ranges.
func (s *Server) checkRanges(what string, rs []*pb.KeyRange) ([]reconcile.KeyRange, error) {
	if len(rs) > engine.MaxRanges {
		return nil, overLimit("%d %s ranges, more than %d", len(rs), what, engine.MaxRanges)
	}
	var out []reconcile.KeyRange
	for i, r := range rs {
		kr, err := checkRange(fmt.Sprintf("%s range %d", what, i), r)
		if err != nil {
			return nil, err
		}
		out = append(out, kr)
	}
	return out, nil
}

// RangeSketch implements the RangeSketch call.
func (s *Server) RangeSketch(ctx context.Context, req *pb.RangeSketchRequest) (*pb.RangeSketchResponse, error) {
	ranges, err := s.checkRanges("sketch", req.GetRanges())
	if err != nil {
		return nil, err
	}
	if c := req.GetCells(); c > reconcile.MaxSketchCells || c%reconcile.SketchHashes != 0 {
		return nil, fmt.Errorf("%w: %w: %d cells (a multiple of %d, at most %d)", engine.ErrBadRequest, reconcile.ErrBadSketchRequest, c, reconcile.SketchHashes, reconcile.MaxSketchCells)
	}
	if st := req.GetStrata(); st > reconcile.MaxSketchStrata {
		return nil, fmt.Errorf("%w: %w: %d strata (at most %d)", engine.ErrBadRequest, reconcile.ErrBadSketchRequest, st, reconcile.MaxSketchStrata)
	}
	res, err := s.e.RangeSketch(ctx, reconcile.RangeSketchRequest{
		Partition: req.GetPartition(), Ranges: ranges, Cells: int(req.GetCells()), Strata: int(req.GetStrata()),
	})
	if err != nil {
		return nil, err
	}
	return &pb.RangeSketchResponse{Count: res.Count, Cells: encodeCells(res.Cells), Strata: encodeStrata(res.Strata)}, nil
}

// Symbols implements the Symbols call: it opens the engine's symbol stream
// and sends its chunks until the end (max symbols), the client's
// cancellation or a failed send, and closes the engine's stream whichever
// comes first. Chunks are sent without waiting for the client, so up to
// one HTTP/2 flow-control window of them may be in flight when the client
// cancels.
func (s *Server) Symbols(req *pb.SymbolsRequest, stream pb.Replica_SymbolsServer) error {
	ctx := stream.Context()
	ranges, err := s.checkRanges("symbols", req.GetRanges())
	if err != nil {
		return err
	}
	sreq := reconcile.SymbolsRequest{Partition: req.GetPartition(), Ranges: ranges, Max: int(req.GetMax())}
	if err := reconcile.ValidateSymbolsRequest(sreq); err != nil {
		return fmt.Errorf("%w: %w", engine.ErrBadRequest, err)
	}
	// Chunks grow with the symbols sent; the last is the largest.
	if n := min(reconcile.SymbolChunkSize(sreq.Max), sreq.Max)*sketchCellSize + 16; n > s.opts.MaxMessageSize {
		return overLimit("symbol chunks of up to %d bytes exceed the maximum message size %d: ask for fewer symbols", n, s.opts.MaxMessageSize)
	}
	ss, err := s.e.OpenSymbols(ctx, sreq)
	if err != nil {
		return err
	}
	s.openSymbolStreams.Add(1)
	defer func() {
		ss.Close()
		s.openSymbolStreams.Add(-1)
	}()
	for {
		c, err := ss.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&pb.SymbolsChunk{Count: c.Count, Symbols: encodeCells(c.Symbols)}); err != nil {
			return err
		}
	}
}

// FetchByHash implements the FetchByHash call.
func (s *Server) FetchByHash(ctx context.Context, req *pb.FetchByHashRequest) (*pb.FetchByHashResponse, error) {
	ranges, err := s.checkRanges("fetch", req.GetRanges())
	if err != nil {
		return nil, err
	}
	raw := req.GetIds()
	if len(raw)%sketchIDSize != 0 {
		return nil, fmt.Errorf("%w: %w: ids of %d bytes, not a multiple of %d", engine.ErrBadRequest, reconcile.ErrBadSketchRequest, len(raw), sketchIDSize)
	}
	if n := len(raw) / sketchIDSize; n > reconcile.MaxSketchIDs {
		return nil, overLimit("%d sketch IDs, more than %d", n, reconcile.MaxSketchIDs)
	}
	ids := make([]uint64, len(raw)/sketchIDSize)
	for i := range ids {
		ids[i] = readID(raw[i*sketchIDSize:])
	}
	es, err := s.e.FetchByHash(ctx, reconcile.FetchByHashRequest{Partition: req.GetPartition(), Ranges: ranges, IDs: ids})
	if err != nil {
		return nil, err
	}
	out := &pb.FetchByHashResponse{Entries: make([]*pb.Entry, len(es))}
	for i, e := range es {
		// Digests are omitted: the receiver recomputes them.
		out.Entries[i] = &pb.Entry{Key: e.Key, Record: e.Record}
	}
	if err := s.checkAnswerSize(out); err != nil {
		return nil, err
	}
	if s.opts.CompressAbove >= 0 && proto.Size(out) >= s.opts.CompressAbove {
		_ = grpc.SetSendCompressor(ctx, gzip.Name)
	}
	return out, nil
}

func writeOptions(noSync bool) *engine.WriteOptions {
	if noSync {
		return engine.NoSync
	}
	return nil
}

// Put implements the Put call.
func (s *Server) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := s.e.Put(ctx, req.GetKey(), req.GetValue(), writeOptions(req.GetNoSync())); err != nil {
		return nil, err
	}
	return &pb.PutResponse{}, nil
}

// Get implements the Get call.
func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	v, err := s.e.Get(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &pb.GetResponse{Value: v}, nil
}

// Delete implements the Delete call.
func (s *Server) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	if err := s.e.Delete(ctx, req.GetKey(), writeOptions(req.GetNoSync())); err != nil {
		return nil, err
	}
	return &pb.DeleteResponse{}, nil
}

// GetVersions implements the GetVersions call.
func (s *Server) GetVersions(ctx context.Context, req *pb.GetVersionsRequest) (*pb.GetVersionsResponse, error) {
	vs, err := s.e.GetVersions(ctx, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &pb.GetVersionsResponse{Values: vs.Values, CausalContext: vs.Context}, nil
}

// PutContext implements the PutContext call.
func (s *Server) PutContext(ctx context.Context, req *pb.PutContextRequest) (*pb.PutContextResponse, error) {
	var err error
	if req.GetTombstone() {
		if len(req.GetValue()) != 0 {
			return nil, badRequest("a tombstone PutContext carries no value")
		}
		err = s.e.DeleteContext(ctx, req.GetKey(), req.GetCausalContext(), writeOptions(req.GetNoSync()))
	} else {
		err = s.e.PutContext(ctx, req.GetKey(), req.GetValue(), req.GetCausalContext(), writeOptions(req.GetNoSync()))
	}
	if err != nil {
		return nil, err
	}
	return &pb.PutContextResponse{}, nil
}

// Status implements the Status call.
func (s *Server) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	info, err := s.e.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.StatusResponse{Id: []byte(info.ID), Mode: uint32(info.Mode), Process: &pb.ProcessInfo{
		Pid: int64(os.Getpid()), Gomaxprocs: uint32(runtime.GOMAXPROCS(0)), NumCpu: uint32(runtime.NumCPU()), GoVersion: runtime.Version()}}
	for _, p := range s.e.Tree().Partitions() {
		ps := &pb.PartitionStatus{
			Id:          uint32(p.ID),
			Range:       &pb.KeyRange{Start: p.Start, End: p.End},
			Ready:       p.Ready,
			Leaves:      uint64(p.Leaves),
			DirtyLeaves: uint64(p.DirtyLeaves),
		}
		if req.GetWithRoots() && p.Ready {
			hs, err := s.e.RangeHash(ctx, reconcile.RangeHashRequest{Partition: uint32(p.ID), Ranges: []reconcile.KeyRange{{}}})
			if err != nil {
				return nil, err
			}
			ps.Root = toPBFingerprint(hs[0].Fingerprint)
		}
		out.Partitions = append(out.Partitions, ps)
	}
	if s.opts.Repairer != nil {
		for _, ss := range s.opts.Repairer.LastSessions() {
			out.LastSessions = append(out.LastSessions, toPBSummary(ss))
		}
		if bg, ok := s.opts.Repairer.(BackgroundReporter); ok {
			out.Background = bg.Background()
		}
	}
	return out, nil
}

// BackgroundReporter is implemented by a Repairer that can describe the
// node's background work (throttles, admission control) for Status.
type BackgroundReporter interface {
	Background() []string
}

// Repair implements the Repair call.
func (s *Server) Repair(ctx context.Context, req *pb.RepairRequest) (*pb.RepairResponse, error) {
	if s.opts.Repairer == nil {
		return nil, fmt.Errorf("%w: it runs no repair loop (serve it with peers to enable Repair)", ErrRepairUnavailable)
	}
	peer := record.ReplicaID(req.GetPeer())
	if err := peer.Validate(); err != nil {
		return nil, badRequest("peer: %w", err)
	}
	sums, err := s.opts.Repairer.Repair(ctx, peer, req.GetPartitions(), req.GetNaive())
	out := &pb.RepairResponse{}
	for _, ss := range sums {
		out.Sessions = append(out.Sessions, toPBSummary(ss))
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

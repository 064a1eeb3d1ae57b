package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/protobuf/proto"
)

// ClientOptions configure a Client. The zero value is usable.
type ClientOptions struct {
	// MaxMessageSize bounds received and sent messages (default
	// DefaultMaxMessageSize).
	MaxMessageSize int
	// CompressAbove: Apply requests of at least this many bytes are
	// gzip-compressed (default DefaultCompressAbove; negative: never). The
	// server compresses its own record answers by its own threshold.
	CompressAbove int
	// CallTimeout is the deadline given to a call whose context has none
	// (default 0: none).
	CallTimeout time.Duration
	// WindowSize is the HTTP/2 flow-control window of each stream (and
	// twice it, of the connection) for what the client receives: how far
	// a server streaming a Scan may run ahead of the client (default
	// DefaultWindowSize; negative: gRPC's own, 64 KiB growing with its
	// bandwidth-delay estimate).
	WindowSize int
	// NoGroupCommit sends every write in its own call instead of grouping
	// the writes of concurrent callers into one (see Client.Write).
	NoGroupCommit bool
	// SyncLinger is the longest a group of synced writes waits, before it
	// is sent, for as many callers as the last synced group held (the
	// callers that group's ack just released; see coalesce.go). Default
	// DefaultSyncLinger; negative: no wait.
	SyncLinger time.Duration
}

// DefaultSyncLinger is ClientOptions.SyncLinger's default.
const DefaultSyncLinger = 50 * time.Microsecond

// EnsureDefaults returns a copy of o with zero fields set to defaults.
func (o *ClientOptions) EnsureDefaults() *ClientOptions {
	var c ClientOptions
	if o != nil {
		c = *o
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.CompressAbove == 0 {
		c.CompressAbove = DefaultCompressAbove
	}
	if c.WindowSize == 0 {
		c.WindowSize = DefaultWindowSize
	}
	if c.SyncLinger == 0 {
		c.SyncLinger = DefaultSyncLinger
	}
	return &c
}

// dialOptions are the gRPC dial options every transport uses.
func (o *ClientOptions) dialOptions(counter *wireCounter) []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.MaxMessageSize), grpc.MaxCallSendMsgSize(o.MaxMessageSize)),
		grpc.WithStatsHandler(counter),
	}
	if o.WindowSize > 0 {
		opts = append(opts,
			grpc.WithInitialWindowSize(int32(min(o.WindowSize, 1<<30))),
			grpc.WithInitialConnWindowSize(int32(min(2*o.WindowSize, 1<<30))),
			grpc.WithReadBufferSize(transportBufferSize),
			grpc.WithWriteBufferSize(transportBufferSize))
	}
	return opts
}

// Client is a remote replica reached over gRPC: in process (InProcess), as
// a go-plugin subprocess (Open) or over the network (Dial). It implements
// reconcile.Replica and the engine's key-value calls; every error from the
// remote side is an *Error matching the sentinels of engine, merkle and
// reconcile (errors.Is(err, engine.ErrNotFound) works), and a dead or
// unreachable replica gives an error matching ErrUnavailable.
//
// All methods are safe for concurrent use. Byte slices in results belong to
// the caller.
type Client struct {
	opts    ClientOptions
	counter *wireCounter

	mu struct {
		sync.RWMutex
		rpc    pb.ReplicaClient
		closed bool
		// closer releases the transport (connection, in-process server,
		// plugin process).
		closer func() error
	}
	// restart, if set, replaces the transport (Restart).
	restart func(ctx context.Context) (pb.ReplicaClient, func() error, error)
	// proc is the plugin process of a go-plugin transport.
	proc atomic.Pointer[goplugin.Client]
	// committer groups concurrent writes (coalesce.go).
	committer committer
	// sessions are the WriteSession streams, a pool a sync setting
	// (session.go).
	sessions [2][maxSessions]writeSession
}

var _ reconcile.Replica = (*Client)(nil)

func newClient(opts *ClientOptions, counter *wireCounter) *Client {
	if counter == nil {
		counter = &wireCounter{}
	}
	return &Client{opts: *opts.EnsureDefaults(), counter: counter}
}

// NewClient returns a Client over an established connection (whose dial
// options should include DialOptions, for the limits and the byte
// counting). Close closes conn.
func NewClient(conn grpc.ClientConnInterface, opts *ClientOptions) *Client {
	c := newClient(opts, nil)
	c.mu.rpc = pb.NewReplicaClient(conn)
	if cl, ok := conn.(io.Closer); ok {
		c.mu.closer = cl.Close
	}
	return c
}

// rpc returns the current stub and a context with the call timeout.
func (c *Client) rpc(ctx context.Context) (pb.ReplicaClient, context.Context, context.CancelFunc, error) {
	c.mu.RLock()
	rpc, closed := c.mu.rpc, c.mu.closed
	c.mu.RUnlock()
	if closed || rpc == nil {
		return nil, ctx, func() {}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, ctx, func() {}, err
	}
	if _, ok := ctx.Deadline(); !ok && c.opts.CallTimeout > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		return rpc, ctx, cancel, nil
	}
	return rpc, ctx, func() {}, nil
}

// WireStats returns the bytes this client sent and received (see
// WireStats).
func (c *Client) WireStats() WireStats { return c.counter.snapshot() }

// ResetWireStats zeroes the counters.
func (c *Client) ResetWireStats() { c.counter.reset() }

// Close releases the transport (and stops a plugin process). Calls after
// Close fail with ErrClosed.
func (c *Client) Close() error {
	c.closeSessions()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil
	}
	c.mu.closed = true
	if c.mu.closer != nil {
		return c.mu.closer()
	}
	return nil
}

// Restart replaces the transport: for a plugin, it kills the process (if
// still running) and starts a new one. Transports that cannot restart
// return an error.
func (c *Client) Restart(ctx context.Context) error {
	if c.restart == nil {
		return fmt.Errorf("plugin: this transport cannot restart")
	}
	c.closeSessions()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	if c.mu.closer != nil {
		_ = c.mu.closer()
		c.mu.rpc, c.mu.closer = nil, nil
	}
	rpc, closer, err := c.restart(ctx)
	if err != nil {
		return err
	}
	c.mu.rpc, c.mu.closer = rpc, closer
	return nil
}

// Info implements reconcile.Replica.
func (c *Client) Info(ctx context.Context) (reconcile.Info, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return reconcile.Info{}, err
	}
	resp, err := rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return reconcile.Info{}, fromStatus("Info", err)
	}
	return fromPBInfo(resp)
}

func toUint32(what string, v int, max int) (uint32, error) {
	if v < 0 || v > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s %d out of [0, %d]", engine.ErrBadRequest, what, v, max)
	}
	return uint32(v), nil
}

// RangeHash implements reconcile.Replica.
func (c *Client) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	fanout, err := toUint32("fanout", req.Fanout, engine.MaxFanout)
	if err != nil {
		return nil, err
	}
	depth, err := toUint32("depth", req.Depth, engine.MaxDepth)
	if err != nil {
		return nil, err
	}
	preq := &pb.RangeHashRequest{Partition: req.Partition, Fanout: fanout, Depth: depth, Ranges: make([]*pb.KeyRange, len(req.Ranges))}
	for i, r := range req.Ranges {
		preq.Ranges[i] = toPBRange(r)
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.RangeHash(ctx, preq)
	if err != nil {
		return nil, fromStatus("RangeHash", err)
	}
	if len(resp.GetRanges()) != len(req.Ranges) {
		return nil, fmt.Errorf("%w: RangeHash: %d answers for %d ranges", ErrBadResponse, len(resp.GetRanges()), len(req.Ranges))
	}
	out := make([]reconcile.RangeHash, len(req.Ranges))
	for i, n := range resp.GetRanges() {
		r := reconcile.KeyRange{Start: cloneBytes(req.Ranges[i].Start), End: cloneBytes(req.Ranges[i].End)}
		fp, kids, err := fromPBNode(r, n, 0)
		if err != nil {
			return nil, fmt.Errorf("RangeHash: range %s: %w", r, err)
		}
		out[i] = reconcile.RangeHash{Range: r, Fingerprint: fp, Children: kids}
	}
	return out, nil
}

// RangeScan implements reconcile.Replica: it collects the page's stream.
func (c *Client) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	var res reconcile.RangeScanResult
	limit, err := toUint32("limit", req.Limit, engine.MaxKeysPerRequest)
	if err != nil {
		return res, err
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return res, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := rpc.RangeScan(ctx, &pb.RangeScanRequest{
		Partition: req.Partition, Range: toPBRange(req.Range), WithRecords: req.WithRecords, Limit: limit,
	})
	if err != nil {
		return res, fromStatus("RangeScan", err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if err != nil {
			return reconcile.RangeScanResult{}, fromStatus("RangeScan", err)
		}
		if res.More {
			return reconcile.RangeScanResult{}, fmt.Errorf("%w: RangeScan: a chunk after the last one", ErrBadResponse)
		}
		es, err := fromPBEntries(chunk.GetEntries())
		if err != nil {
			return reconcile.RangeScanResult{}, fmt.Errorf("%w: RangeScan: %v", ErrBadResponse, err)
		}
		res.Entries = append(res.Entries, es...)
		if chunk.GetMore() {
			res.More, res.Next = true, cloneBytes(chunk.GetNext())
		}
	}
}

// Fetch implements reconcile.Replica.
func (c *Client) Fetch(ctx context.Context, partition uint32, keys [][]byte) ([]reconcile.Entry, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.Fetch(ctx, &pb.FetchRequest{Partition: partition, Keys: keys})
	if err != nil {
		return nil, fromStatus("Fetch", err)
	}
	es, err := fromPBEntries(resp.GetEntries())
	if err != nil {
		return nil, fmt.Errorf("%w: Fetch: %v", ErrBadResponse, err)
	}
	return es, nil
}

// Apply implements reconcile.Replica. Up to engine.MaxKeysPerRequest
// entries travel in one Apply call (atomic); more in one ApplyStream call,
// in messages of at most engine.MaxKeysPerRequest entries, each atomic on
// its own (a failure leaves the messages before it applied). Requests of
// at least ClientOptions.CompressAbove bytes (for a stream: its first
// message) are gzip-compressed.
func (c *Client) Apply(ctx context.Context, partition uint32, entries []reconcile.Entry) error {
	_, err := c.apply(ctx, partition, entries, nil)
	return err
}

// ApplyAndHash applies entries, then returns the fingerprints of ranges,
// in one round trip whatever the number of entries (see Apply;
// reconcile.CapApplyAndHash).
func (c *Client) ApplyAndHash(ctx context.Context, partition uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	return c.apply(ctx, partition, entries, ranges)
}

func (c *Client) apply(ctx context.Context, partition uint32, entries []reconcile.Entry, confirm []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	if len(entries) > engine.MaxKeysPerRequest {
		return c.applyStream(ctx, partition, entries, confirm)
	}
	return c.applyOnce(ctx, partition, entries, confirm)
}

// compressIf returns the call options that compress a request of m's size.
func (c *Client) compressIf(m proto.Message) []grpc.CallOption {
	if c.opts.CompressAbove >= 0 && proto.Size(m) >= c.opts.CompressAbove {
		return []grpc.CallOption{grpc.UseCompressor(gzip.Name)}
	}
	return nil
}

func (c *Client) applyOnce(ctx context.Context, partition uint32, entries []reconcile.Entry, confirm []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	req := &pb.ApplyRequest{Partition: partition, Entries: toPBEntries(entries), Confirm: toPBRanges(confirm)}
	callOpts := c.compressIf(req)
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.Apply(ctx, req, callOpts...)
	if err != nil {
		return nil, fromStatus("Apply", err)
	}
	return fromPBApplyResponse("Apply", resp, confirm)
}

// applyStream sends entries in one ApplyStream call, engine.MaxKeysPerRequest
// entries a message, confirm on the last.
func (c *Client) applyStream(ctx context.Context, partition uint32, entries []reconcile.Entry, confirm []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	first := &pb.ApplyRequest{Partition: partition, Entries: toPBEntries(entries[:min(len(entries), engine.MaxKeysPerRequest)])}
	stream, err := rpc.ApplyStream(ctx, c.compressIf(first)...)
	if err != nil {
		return nil, fromStatus("ApplyStream", err)
	}
	for msg := first; ; {
		entries = entries[len(msg.Entries):]
		if len(entries) == 0 {
			msg.Confirm = toPBRanges(confirm)
		}
		if err := stream.Send(msg); err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the call: its status says why.
				_, err = stream.CloseAndRecv()
			}
			return nil, fromStatus("ApplyStream", err)
		}
		if len(entries) == 0 {
			break
		}
		msg = &pb.ApplyRequest{Partition: partition, Entries: toPBEntries(entries[:min(len(entries), engine.MaxKeysPerRequest)])}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, fromStatus("ApplyStream", err)
	}
	return fromPBApplyResponse("ApplyStream", resp, confirm)
}

// fromPBApplyResponse decodes the confirm answers of an Apply (op) for the
// ranges confirm.
func fromPBApplyResponse(op string, resp *pb.ApplyResponse, confirm []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	if len(resp.GetConfirm()) != len(confirm) {
		return nil, fmt.Errorf("%w: %s: %d confirm answers for %d ranges", ErrBadResponse, op, len(resp.GetConfirm()), len(confirm))
	}
	if len(confirm) == 0 {
		return nil, nil
	}
	out := make([]reconcile.RangeHash, len(confirm))
	for i, n := range resp.GetConfirm() {
		r := reconcile.KeyRange{Start: cloneBytes(confirm[i].Start), End: cloneBytes(confirm[i].End)}
		fp, kids, err := fromPBNode(r, n, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: confirm %s: %w", op, r, err)
		}
		out[i] = reconcile.RangeHash{Range: r, Fingerprint: fp, Children: kids}
	}
	return out, nil
}

// RangeSketch returns the set-reconciliation sketch of ranges
// (reconcile.CapSketch).
func (c *Client) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	if err := reconcile.ValidateSketchRequest(req); err != nil {
		return reconcile.RangeSketchResult{}, fmt.Errorf("%w: %w", engine.ErrBadRequest, err)
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	resp, err := rpc.RangeSketch(ctx, &pb.RangeSketchRequest{
		Partition: req.Partition, Ranges: toPBRanges(req.Ranges), Cells: uint32(req.Cells), Strata: uint32(req.Strata),
	})
	if err != nil {
		return reconcile.RangeSketchResult{}, fromStatus("RangeSketch", err)
	}
	cells, err := decodeCells(resp.GetCells())
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	strata, err := decodeStrata(resp.GetStrata())
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	return reconcile.RangeSketchResult{Count: resp.GetCount(), Cells: cells, Strata: strata}, nil
}

// FetchByHash returns the entries of ranges whose sketch IDs are among
// req.IDs (reconcile.CapSketch). Digests are left zero.
func (c *Client) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.FetchByHash(ctx, &pb.FetchByHashRequest{Partition: req.Partition, Ranges: toPBRanges(req.Ranges), Ids: encodeIDs(req.IDs)})
	if err != nil {
		return nil, fromStatus("FetchByHash", err)
	}
	es, err := fromPBEntries(resp.GetEntries())
	if err != nil {
		return nil, fmt.Errorf("%w: FetchByHash: %v", ErrBadResponse, err)
	}
	return es, nil
}

func noSync(wo *engine.WriteOptions) bool { return wo != nil && !wo.Sync }

// Put writes value under key (engine.Engine.Put). A nil wo syncs. It
// travels as a Write of one, grouped with concurrent writes (see Write).
func (c *Client) Put(ctx context.Context, key, value []byte, wo *engine.WriteOptions) error {
	if value == nil {
		value = []byte{}
	}
	return c.commit(ctx, c.singleMember(engine.WriteOp{Kind: engine.OpPut, Key: key, Value: value}, noSync(wo)), noSync(wo))
}

// Get returns key's value (engine.Engine.Get); an error matching
// engine.ErrNotFound if absent or deleted.
func (c *Client) Get(ctx context.Context, key []byte) ([]byte, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.Get(ctx, &pb.GetRequest{Key: key})
	if err != nil {
		return nil, fromStatus("Get", err)
	}
	return nonNil(resp.GetValue()), nil
}

// Delete deletes key (engine.Engine.Delete). It travels as a Write of
// one, grouped with concurrent writes (see Write).
func (c *Client) Delete(ctx context.Context, key []byte, wo *engine.WriteOptions) error {
	return c.commit(ctx, c.singleMember(engine.WriteOp{Kind: engine.OpDelete, Key: key}, noSync(wo)), noSync(wo))
}

// GetVersions returns key's live siblings and causal context
// (engine.Engine.GetVersions; causal mode).
func (c *Client) GetVersions(ctx context.Context, key []byte) (engine.Versions, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return engine.Versions{}, err
	}
	resp, err := rpc.GetVersions(ctx, &pb.GetVersionsRequest{Key: key})
	if err != nil {
		return engine.Versions{}, fromStatus("GetVersions", err)
	}
	vs := engine.Versions{Context: resp.GetCausalContext()}
	for _, v := range resp.GetValues() {
		vs.Values = append(vs.Values, nonNil(v))
	}
	return vs, nil
}

// PutContext writes value superseding the versions causal covers
// (engine.Engine.PutContext; causal mode).
func (c *Client) PutContext(ctx context.Context, key, value, causal []byte, wo *engine.WriteOptions) error {
	return c.putContext(ctx, "PutContext", &pb.PutContextRequest{Key: key, Value: value, CausalContext: causal, NoSync: noSync(wo)})
}

// DeleteContext deletes the versions causal covers
// (engine.Engine.DeleteContext; causal mode).
func (c *Client) DeleteContext(ctx context.Context, key, causal []byte, wo *engine.WriteOptions) error {
	return c.putContext(ctx, "DeleteContext", &pb.PutContextRequest{Key: key, CausalContext: causal, Tombstone: true, NoSync: noSync(wo)})
}

func (c *Client) putContext(ctx context.Context, op string, req *pb.PutContextRequest) error {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	_, err = rpc.PutContext(ctx, req)
	return fromStatus(op, err)
}

// PartitionStatus is one partition's state in a Status answer.
type PartitionStatus struct {
	ID          uint32
	Range       reconcile.KeyRange
	Ready       bool
	Leaves      uint64
	DirtyLeaves uint64
	// Root is the partition's root fingerprint, when asked for and ready.
	Root *reconcile.Fingerprint
}

// Status is a replica's state.
type Status struct {
	ID           record.ReplicaID
	Mode         record.Mode
	Partitions   []PartitionStatus
	LastSessions []SessionSummary
	// Background describes the node's throttles and admission control.
	Background []string
	// Process describes the serving process (zero from a server before
	// it reported one).
	Process ProcessInfo
}

// ProcessInfo describes the process that serves a replica.
type ProcessInfo struct {
	PID int
	// GOMAXPROCS is the Go runtime's setting; NumCPU the CPUs the process
	// may use (a plugin raises GOMAXPROCS above them: engine.ReserveProcs).
	GOMAXPROCS, NumCPU int
	GoVersion          string
}

// Status returns the replica's tree state; withRoots computes each ready
// partition's root (recomputing its dirty leaves).
func (c *Client) Status(ctx context.Context, withRoots bool) (Status, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return Status{}, err
	}
	resp, err := rpc.Status(ctx, &pb.StatusRequest{WithRoots: withRoots})
	if err != nil {
		return Status{}, fromStatus("Status", err)
	}
	st := Status{ID: record.ReplicaID(resp.GetId()), Mode: record.Mode(resp.GetMode())}
	for _, p := range resp.GetPartitions() {
		ps := PartitionStatus{
			ID: p.GetId(), Range: fromPBRange(p.GetRange()), Ready: p.GetReady(),
			Leaves: p.GetLeaves(), DirtyLeaves: p.GetDirtyLeaves(),
		}
		if p.GetRoot() != nil {
			fp, err := fromPBFingerprint(p.GetRoot())
			if err != nil {
				return Status{}, fmt.Errorf("Status: partition %d: %w", p.GetId(), err)
			}
			ps.Root = &fp
		}
		st.Partitions = append(st.Partitions, ps)
	}
	for _, s := range resp.GetLastSessions() {
		st.LastSessions = append(st.LastSessions, fromPBSummary(s))
	}
	st.Background = resp.GetBackground()
	if p := resp.GetProcess(); p != nil {
		st.Process = ProcessInfo{PID: int(p.GetPid()), GOMAXPROCS: int(p.GetGomaxprocs()), NumCPU: int(p.GetNumCpu()), GoVersion: p.GetGoVersion()}
	}
	return st, nil
}

// Repair asks the replica to reconcile partitions (nil: all) with peer.
// Servers without a repair loop fail with an error matching
// ErrRepairUnavailable.
func (c *Client) Repair(ctx context.Context, peer record.ReplicaID, partitions []uint32, naive bool) ([]SessionSummary, error) {
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.Repair(ctx, &pb.RepairRequest{Peer: string(peer), Partitions: partitions, Naive: naive})
	if err != nil {
		return nil, fromStatus("Repair", err)
	}
	var out []SessionSummary
	for _, s := range resp.GetSessions() {
		out = append(out, fromPBSummary(s))
	}
	return out, nil
}

// fromPBSummary decodes a summary; only the totals travel, so the byte
// figures land in Stats.A (sent and received).
func fromPBSummary(s *pb.SessionSummary) SessionSummary {
	out := SessionSummary{Peer: record.ReplicaID(s.GetPeer()), Partition: s.GetPartition(), Err: s.GetError()}
	out.Stats.Partition = s.GetPartition()
	out.Stats.Sessions = 1
	out.Stats.Rounds = int(s.GetRounds())
	out.Stats.A.Sent.Overhead = s.GetBytesSent()
	out.Stats.A.Received.Overhead = s.GetBytesReceived()
	out.Stats.KeysCompared = s.GetKeysCompared()
	out.Stats.KeysTransferred = s.GetKeysTransferred()
	out.Stats.A.KeysRepaired = s.GetKeysRepaired()
	out.Stats.Converged = s.GetConverged()
	out.Stats.Duration = time.Duration(s.GetDurationNanos())
	out.Stats.ClockSkew, out.Stats.Quarantined = time.Duration(s.GetClockSkewNanos()), s.GetQuarantined()
	out.Stats.Method = reconcile.Method(s.GetMethod())
	if s.GetFinishedUnixNanos() != 0 {
		out.Finished = time.Unix(0, s.GetFinishedUnixNanos())
	}
	return out
}

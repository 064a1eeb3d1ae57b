package plugin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"google.golang.org/protobuf/proto"
)

// The application's store over the wire: batched writes (Write, and
// WriteStream for bulk loads), multi-key reads (GetMany) and range scans
// (Scan), server and client side. The Client implements engine.KV with
// them, so a host runs the same code in process and out of process.

var _ engine.KV = (*Client)(nil)

// DefaultLoadMessageBytes is the size a Loader fills a WriteStream message
// to before it sends it.
const DefaultLoadMessageBytes = 1 << 20

// appendPackedOp appends op in WriteRequest's packed layout.
func appendPackedOp(dst []byte, op engine.WriteOp) []byte {
	dst = append(dst, byte(op.Kind))
	dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
	dst = append(dst, op.Key...)
	if op.Value == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(op.Value))+1)
		dst = append(dst, op.Value...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(op.Context)))
	return append(dst, op.Context...)
}

// packedOpBytes is the size of op in WriteRequest's packed layout.
func packedOpBytes(op engine.WriteOp) int {
	return 1 + uvarintLen(len(op.Key)) + len(op.Key) + uvarintLen(len(op.Value)+1) + len(op.Value) + uvarintLen(len(op.Context)) + len(op.Context)
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// toPBWrite encodes b.
func toPBWrite(b *engine.WriteBatch, noSync bool) *pb.WriteRequest {
	n := 0
	for _, op := range b.Ops() {
		n += packedOpBytes(op)
	}
	buf := make([]byte, 0, n)
	for _, op := range b.Ops() {
		buf = appendPackedOp(buf, op)
	}
	return &pb.WriteRequest{Ops: buf, Count: uint32(b.Len()), NoSync: noSync}
}

// fromPBWrite decodes a WriteRequest into b (copying).
func fromPBWrite(req *pb.WriteRequest, b *engine.WriteBatch) error {
	r := packedReader{b: req.GetOps(), what: "WriteRequest"}
	for i := range req.GetCount() {
		if len(r.b) == 0 {
			return badRequest("write %d of %d: the packed writes end early", i, req.GetCount())
		}
		kind := engine.WriteOpKind(r.b[0])
		r.b = r.b[1:]
		if kind < engine.OpPut || kind > engine.OpDeleteContext {
			return badRequest("write %d: unknown kind %d", i, kind)
		}
		op := engine.WriteOp{Kind: kind, Key: r.bytes("key")}
		if n := r.uvarint("value length"); n > 0 {
			if n-1 > uint64(len(r.b)) {
				return badRequest("write %d: truncated value", i)
			}
			op.Value, r.b = r.b[:n-1:n-1], r.b[n-1:]
		}
		op.Context = r.bytes("causal context")
		if r.err != nil {
			return badRequest("write %d: %v", i, r.err)
		}
		b.Add(op)
	}
	if len(r.b) != 0 {
		return badRequest("%d bytes after the %d packed writes", len(r.b), req.GetCount())
	}
	return nil
}

// Write implements the Write call.
func (s *Server) Write(ctx context.Context, req *pb.WriteRequest) (*pb.WriteResponse, error) {
	var b engine.WriteBatch
	if err := fromPBWrite(req, &b); err != nil {
		return nil, err
	}
	if err := s.e.Write(ctx, &b, writeOptions(req.GetNoSync())); err != nil {
		return nil, err
	}
	return &pb.WriteResponse{Applied: uint64(b.Len())}, nil
}

// WriteStream implements the WriteStream call: each message is a batch,
// applied atomically as it arrives.
func (s *Server) WriteStream(stream pb.Replica_WriteStreamServer) error {
	ctx := stream.Context()
	var (
		b       engine.WriteBatch
		applied uint64
	)
	for n := 0; ; n++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.WriteResponse{Applied: applied})
		}
		if err != nil {
			return err
		}
		b.Reset()
		if err := fromPBWrite(req, &b); err != nil {
			return fmt.Errorf("WriteStream: message %d: %w", n, err)
		}
		if err := s.e.Write(ctx, &b, writeOptions(req.GetNoSync())); err != nil {
			return fmt.Errorf("WriteStream: message %d (%d writes applied before it): %w", n, applied, err)
		}
		applied += uint64(b.Len())
	}
}

// GetMany implements the GetMany call.
func (s *Server) GetMany(ctx context.Context, req *pb.GetManyRequest) (*pb.GetManyResponse, error) {
	if err := s.checkKeys(len(req.GetKeys())); err != nil {
		return nil, err
	}
	items, err := s.e.GetMany(ctx, req.GetKeys(), &engine.ReadOptions{Versions: req.GetVersions()})
	if err != nil {
		return nil, err
	}
	slab := make([]pb.Item, len(items))
	out := &pb.GetManyResponse{Items: make([]*pb.Item, len(items))}
	for i, it := range items {
		slab[i].Found, slab[i].Value, slab[i].Versions, slab[i].CausalContext = it.Found, it.Value, it.Versions, it.Context
		out.Items[i] = &slab[i]
	}
	return out, s.checkAnswerSize(out)
}

// Scan implements the Scan call: the engine's Scan (one iterator, one
// snapshot) packed into chunks of at most StoreScanChunkBytes as it reads.
// A second goroutine sends the chunks (gRPC's marshalling of one overlaps
// the reading of the next), one at a time with one more waiting, so gRPC's
// flow control still paces the iterator to the client.
func (s *Server) Scan(req *pb.ScanRequest, stream pb.Replica_ScanServer) error {
	sreq := engine.ScanRequest{Start: req.GetStart(), End: req.GetEnd(), Versions: req.GetVersions()}
	if l := req.GetLimit(); l < 0 || l > int64(^uint(0)>>1) {
		return badRequest("scan limit %d out of [0, max int]", l)
	}
	sreq.Limit = int(req.GetLimit())
	snd := newChunkSender(stream)
	chunkBytes := s.opts.StoreScanChunkBytes
	chunkCap := chunkBytes + chunkBytes/8
	// The first chunk starts small and grows: a short scan allocates
	// little.
	buf := make([]byte, 0, min(chunkCap, firstScanChunkBytes))
	var count uint32
	next, err := s.e.Scan(stream.Context(), sreq, func(it engine.Item) error {
		buf = appendPackedItem(buf, it, sreq.Versions)
		count++
		if len(buf) >= chunkBytes {
			if err := snd.send(&pb.ScanResponse{Items: buf, Count: count}); err != nil {
				return err
			}
			// A new buffer: the sent message may still be read.
			buf, count = make([]byte, 0, chunkCap), 0
		}
		return nil
	})
	if err == nil {
		err = snd.send(&pb.ScanResponse{Items: buf, Count: count, More: next != nil, Next: next})
	}
	if serr := snd.close(); err == nil {
		err = serr
	}
	return err
}

// firstScanChunkBytes is the initial capacity of a Scan's first chunk.
const firstScanChunkBytes = 64 << 10

// chunkSender sends a Scan's chunks from its own goroutine.
type chunkSender struct {
	chunks chan *pb.ScanResponse
	ended  chan error // the goroutine's first Send error (or nil), once
}

func newChunkSender(stream pb.Replica_ScanServer) *chunkSender {
	c := &chunkSender{chunks: make(chan *pb.ScanResponse, 1), ended: make(chan error, 1)}
	go func() {
		for m := range c.chunks {
			if err := stream.Send(m); err != nil {
				c.ended <- err
				for range c.chunks {
					// Drop the rest until close.
				}
				return
			}
		}
		c.ended <- nil
	}()
	return c
}

// send queues m, or returns the error that ended the sending goroutine.
func (c *chunkSender) send(m *pb.ScanResponse) error {
	select {
	case c.chunks <- m:
		return nil
	case err := <-c.ended:
		c.ended <- err // for close
		return err
	}
}

// close waits until every queued chunk is sent (the handler must not
// return before: a stream is not used after its handler returns) and
// returns the first send error.
func (c *chunkSender) close() error {
	close(c.chunks)
	return <-c.ended
}

// appendPackedItem appends it in ScanResponse's packed layout.
func appendPackedItem(dst []byte, it engine.Item, versions bool) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(it.Key)))
	dst = append(dst, it.Key...)
	if it.Found {
		dst = binary.AppendUvarint(dst, uint64(len(it.Value))+1)
		dst = append(dst, it.Value...)
	} else {
		dst = append(dst, 0)
	}
	if versions {
		dst = binary.AppendUvarint(dst, uint64(len(it.Versions)))
		for _, v := range it.Versions {
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
		dst = binary.AppendUvarint(dst, uint64(len(it.Context)))
		dst = append(dst, it.Context...)
	}
	return dst
}

// packedReader decodes ScanResponse.items.
type packedReader struct {
	b    []byte
	what string // the message, for errors
	err  error
}

func (r *packedReader) bytes(what string) []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)-k) {
		r.err = fmt.Errorf("%w: %s: truncated %s", ErrBadResponse, r.what, what)
		return nil
	}
	out := r.b[k : k+int(n) : k+int(n)]
	r.b = r.b[k+int(n):]
	return out
}

func (r *packedReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: %s: truncated %s", ErrBadResponse, r.what, what)
		return 0
	}
	r.b = r.b[k:]
	return n
}

// item decodes the next item; its slices alias r's bytes.
func (r *packedReader) item(versions bool) engine.Item {
	var it engine.Item
	it.Key = r.bytes("key")
	if n := r.uvarint("value length"); n > 0 {
		if n-1 > uint64(len(r.b)) {
			r.err = fmt.Errorf("%w: Scan: truncated value", ErrBadResponse)
			return it
		}
		it.Found, it.Value, r.b = true, r.b[:n-1:n-1], r.b[n-1:]
	}
	if versions {
		n := r.uvarint("version count")
		if n > uint64(len(r.b)) {
			r.err = fmt.Errorf("%w: Scan: %d versions in %d bytes", ErrBadResponse, n, len(r.b))
			return it
		}
		for range n {
			it.Versions = append(it.Versions, r.bytes("version"))
		}
		it.Context = r.bytes("context")
	}
	return it
}

// Write applies b atomically on the replica in one call (engine.KV). A
// batch whose request exceeds ClientOptions.MaxMessageSize fails with an
// error matching ErrLimitExceeded and engine.ErrBadRequest, before
// anything is sent: split it, or stream it with a Loader.
//
// Group commit: the writes of concurrent callers with the same sync
// setting (Put, Delete and Write calls) travel together in one call while
// the most calls of the setting are in flight, and commit together as one batch on the replica,
// as Pebble's own commit pipeline groups writes; a refused group is
// resent caller by caller, so each gets its own answer (see coalesce.go;
// ClientOptions.NoGroupCommit turns it off).
func (c *Client) Write(ctx context.Context, b *engine.WriteBatch, wo *engine.WriteOptions) error {
	if b == nil || b.Len() == 0 {
		return nil
	}
	req := toPBWrite(b, noSync(wo))
	if n := proto.Size(req); n > c.opts.MaxMessageSize {
		return fmt.Errorf("%w: %w: Write: a batch of %d writes is %d bytes, over the maximum message size %d", ErrLimitExceeded, engine.ErrBadRequest, b.Len(), n, c.opts.MaxMessageSize)
	}
	keys := make([][]byte, b.Len())
	for i, op := range b.Ops() {
		keys[i] = op.Key // read only while the caller waits in commit
	}
	m := &member{ops: req.Ops, count: req.Count, keys: keys, alone: func(ctx context.Context) error { return c.writeRPC(ctx, req) }}
	return c.commit(ctx, m, req.NoSync)
}

// writeRPC sends one batch: on the write session of its sync setting
// (session.go), or, if that is busy, in a Write call.
func (c *Client) writeRPC(ctx context.Context, req *pb.WriteRequest) error {
	if sent, err := c.sessionWrite(ctx, syncSlot(req.NoSync), req); sent {
		return err
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return err
	}
	_, err = rpc.Write(ctx, req)
	return fromStatus("Write", err)
}

// GetMany reads keys from one snapshot of the replica in one call
// (engine.KV).
func (c *Client) GetMany(ctx context.Context, keys [][]byte, ro *engine.ReadOptions) ([]engine.Item, error) {
	if len(keys) > engine.MaxKeysPerRequest {
		return nil, fmt.Errorf("%w: %w: %d keys > %d", ErrLimitExceeded, engine.ErrBadRequest, len(keys), engine.MaxKeysPerRequest)
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	resp, err := rpc.GetMany(ctx, &pb.GetManyRequest{Keys: keys, Versions: ro != nil && ro.Versions})
	if err != nil {
		return nil, fromStatus("GetMany", err)
	}
	if len(resp.GetItems()) != len(keys) {
		return nil, fmt.Errorf("%w: GetMany: %d items for %d keys", ErrBadResponse, len(resp.GetItems()), len(keys))
	}
	out := make([]engine.Item, len(keys))
	for i, it := range resp.GetItems() {
		out[i] = engine.Item{Key: cloneBytes(keys[i]), Found: it.GetFound(), Context: it.GetCausalContext()}
		if out[i].Found {
			out[i].Value = nonNil(it.GetValue())
		}
		for _, v := range it.GetVersions() {
			out[i].Versions = append(out[i].Versions, nonNil(v))
		}
	}
	return out, nil
}

// Scan streams the live keys of a range from one snapshot of the replica
// in one call (engine.KV): the server iterates while the client decodes,
// paced by gRPC's flow control. The Item's slices are valid only until fn
// returns. An error from fn cancels the call.
func (c *Client) Scan(ctx context.Context, req engine.ScanRequest, fn func(engine.Item) error) ([]byte, error) {
	if req.Limit < 0 {
		return nil, fmt.Errorf("%w: negative scan limit %d", engine.ErrBadRequest, req.Limit)
	}
	rpc, ctx, cancel, err := c.rpc(ctx)
	defer cancel()
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := rpc.Scan(ctx, &pb.ScanRequest{Start: req.Start, End: req.End, Limit: int64(req.Limit), Versions: req.Versions})
	if err != nil {
		return nil, fromStatus("Scan", err)
	}
	var next []byte // set by the last message, when more
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return next, nil
		}
		if err != nil {
			return nil, fromStatus("Scan", err)
		}
		if next != nil {
			return nil, fmt.Errorf("%w: Scan: a chunk after the last one", ErrBadResponse)
		}
		r := packedReader{b: chunk.GetItems(), what: "Scan"}
		for range chunk.GetCount() {
			it := r.item(req.Versions)
			if r.err != nil {
				return nil, r.err
			}
			if err := fn(it); err != nil {
				return nil, err
			}
		}
		if len(r.b) != 0 {
			return nil, fmt.Errorf("%w: Scan: %d bytes after a chunk's %d items", ErrBadResponse, len(r.b), chunk.GetCount())
		}
		if chunk.GetMore() {
			if len(chunk.GetNext()) == 0 {
				return nil, fmt.Errorf("%w: Scan: more without next", ErrBadResponse)
			}
			next = cloneBytes(chunk.GetNext())
		}
	}
}

// Loader streams writes to the replica in one WriteStream call, for bulk
// loads: it packs the writes into messages of about LoadMessageBytes
// (DefaultLoadMessageBytes, and at most half the maximum message size),
// sends each when full (Send blocks while gRPC's flow control holds the
// client back, so a slow replica paces the loader), and the replica
// applies each message atomically as it arrives. Every message but the
// last is written without sync; the last with the Loader's write options,
// so a synced load is durable as a whole once Close returns (the WAL sync
// covers the earlier messages). A load is not atomic as a whole: after a
// failure, the messages before the failing one stay applied (Close's
// count). Not safe for concurrent use.
type Loader struct {
	c        *Client
	stream   pb.Replica_WriteStreamClient
	cancel   context.CancelFunc
	wo       *engine.WriteOptions
	maxBytes int
	msg      []byte // the next message's packed writes
	count    uint32 // writes in msg
	err      error
}

// LoaderOptions configure a Loader.
type LoaderOptions struct {
	// Write is the write options of the load's last message (nil: Sync).
	Write *engine.WriteOptions
	// MessageBytes is the size of one message (default
	// DefaultLoadMessageBytes; at most half ClientOptions.MaxMessageSize).
	MessageBytes int
}

// NewLoader starts a bulk load (one WriteStream call) bounded by ctx.
func (c *Client) NewLoader(ctx context.Context, opts *LoaderOptions) (*Loader, error) {
	var o LoaderOptions
	if opts != nil {
		o = *opts
	}
	if o.MessageBytes <= 0 {
		o.MessageBytes = DefaultLoadMessageBytes
	}
	o.MessageBytes = min(o.MessageBytes, c.opts.MaxMessageSize/2)
	rpc, ctx, cancel, err := c.rpc(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	stream, err := rpc.WriteStream(ctx)
	if err != nil {
		stop()
		cancel()
		return nil, fromStatus("WriteStream", err)
	}
	return &Loader{c: c, stream: stream, cancel: func() { stop(); cancel() }, wo: o.Write, maxBytes: o.MessageBytes}, nil
}

// Put adds a Put of value under key.
func (l *Loader) Put(key, value []byte) error {
	return l.Add(engine.WriteOp{Kind: engine.OpPut, Key: key, Value: value})
}

// Delete adds a Delete of key.
func (l *Loader) Delete(key []byte) error {
	return l.Add(engine.WriteOp{Kind: engine.OpDelete, Key: key})
}

// Add adds one write (its slices are copied). A write larger than a whole
// message fails with an error matching ErrLimitExceeded. An error from an
// earlier message (the replica refused it) is returned by every later Add
// and by Close.
func (l *Loader) Add(op engine.WriteOp) error {
	if l.err != nil {
		return l.err
	}
	if op.Kind < engine.OpPut || op.Kind > engine.OpDeleteContext {
		return fmt.Errorf("%w: Loader: unknown write kind %d", engine.ErrBadRequest, op.Kind)
	}
	n := packedOpBytes(op)
	if n > l.maxBytes {
		return fmt.Errorf("%w: %w: Loader: a write of %d bytes, over the message size %d", ErrLimitExceeded, engine.ErrBadRequest, n, l.maxBytes)
	}
	if len(l.msg)+n > l.maxBytes {
		if err := l.send(true); err != nil {
			return err
		}
	}
	if l.msg == nil {
		l.msg = make([]byte, 0, l.maxBytes)
	}
	l.msg = appendPackedOp(l.msg, op)
	l.count++
	return nil
}

// send sends the buffered writes as one message.
func (l *Loader) send(noSyncMsg bool) error {
	if err := l.stream.Send(&pb.WriteRequest{Ops: l.msg, Count: l.count, NoSync: noSyncMsg}); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the call: its status says why.
			_, err = l.stream.CloseAndRecv()
		}
		l.err = fromStatus("WriteStream", err)
		return l.err
	}
	// A new buffer for the next message: gRPC may still read this one.
	l.msg, l.count = nil, 0
	return nil
}

// Close sends the last message, ends the load and returns the number of
// writes the replica applied. On error it returns 0: the error's message
// (the server's) says how many writes were applied before the refused
// message.
func (l *Loader) Close() (int, error) {
	defer l.cancel()
	if l.err == nil && l.count > 0 {
		_ = l.send(noSync(l.wo))
	}
	resp, err := l.stream.CloseAndRecv()
	if l.err == nil && err != nil {
		l.err = fromStatus("WriteStream", err)
	}
	if l.err != nil {
		return 0, l.err
	}
	return int(resp.GetApplied()), nil
}

// Abort cancels the load: messages already applied stay applied.
func (l *Loader) Abort() { l.cancel() }

// WriteSession implements the WriteSession call: each message is a batch,
// applied atomically and answered with its own ack (and error) before the
// next is taken. A reader goroutine receives the messages so that Drain can
// end a session that waits for its client's next batch; a batch being
// applied is applied and acknowledged first. A session Drain ends sends no
// ack for a batch it did not apply, and the client resends that batch as
// a Write call.
func (s *Server) WriteSession(stream pb.Replica_WriteSessionServer) error {
	ctx := stream.Context()
	reqs := make(chan *pb.WriteRequest)
	recvErr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-done:
				return
			}
		}
	}()
	var b engine.WriteBatch
	for {
		var req *pb.WriteRequest
		select {
		case req = <-reqs:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-s.draining:
			return nil
		}
		b.Reset()
		err := fromPBWrite(req, &b)
		if err == nil {
			err = s.e.Write(ctx, &b, writeOptions(req.GetNoSync()))
		}
		ack := &pb.WriteAck{Error: toCallError(err)}
		if err == nil {
			ack.Applied = uint64(b.Len())
		}
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// Drain ends the write sessions (WriteSession calls) waiting for their
// clients' next batch, and those that wait from now on, so that a
// graceful stop of the gRPC server does not wait for clients that keep a
// session open. Call it before grpc.Server.GracefulStop (ServeListener
// does); the clients resend as Write calls.
func (s *Server) Drain() {
	s.drainOnce.Do(func() { close(s.draining) })
}

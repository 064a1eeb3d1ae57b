package plugin

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/pebble-ae/pebble-ae/engine"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"google.golang.org/grpc/codes"
)

// Group commit across the RPC layer.
//
// Pebble commits concurrent writes together (one WAL write and, for Sync,
// one fsync for all of them), but only the writes that reach it together:
// through a transport each write first pays a round trip, and concurrent
// callers' round trips overlap only as far as the two processes' CPUs
// allow. The client therefore groups the writes of concurrent callers
// itself, as Pebble's commit pipeline does: while the most calls of a
// sync setting are in flight (one for small synced writes, four for large synced batches, two unsynced: maxInFlight), the
// writes (Put, Delete, Write) that arrive with the same setting wait in
// one open group, which is sent as one call when a call in flight
// returns. A caller that finds room in flight does not wait: its write
// goes at once (with those that join it while it yields once).
//
// Synced groups also linger, as PostgreSQL's commit_delay with
// commit_siblings does: before a synced group is sent, it waits, yielding,
// up to ClientOptions.SyncLinger (50 µs) until it holds as many callers as
// the last synced group sent. The callers a group's ack releases come back
// within a few microseconds of each other; without the wait the first of
// them leads a group of its own, and the cohorts that form never merge:
// each one's writes miss the fsync that another's started, and a write
// waits for two fsyncs and a round trip instead of one of each. The wait
// ends as soon as the group is as large as the last; a caller that does
// not come back costs one wait, after which the next group expects fewer.
// Measured side by side on the 2-core VM (8 writers of synced Puts,
// 2026-12-06): 0.64-0.73 of in process with four calls in flight and no
// wait, 0.94-0.96 with one call and the wait (0.49 with one call and no
// wait; two or four calls with the wait: 0.66-0.70).
//
// A group is one atomic batch on the replica, so the rules of a batch
// hold for it (in causal mode a key may appear once: a write of a key
// already in the open group is sent by itself). If the replica refuses a
// group (one bad write refuses the whole batch and writes nothing), every
// member is resent by itself, so that each caller gets its own answer: the
// valid writes are applied, the bad one gets its own error. A transport
// failure fails every member of the group alike (as it would each call:
// the writes may or may not have been applied).
//
// A caller whose context ends while its write waits in a group returns the
// context's error; the write may still be applied, as with any call
// canceled in flight.

// maxGroupBytes bounds the packed writes of one commit group.
const maxGroupBytes = 4 << 20

// groupLimit is the most packed bytes of one group: maxGroupBytes, or
// half the message limit if that is smaller.
func (c *Client) groupLimit() int { return min(maxGroupBytes, c.opts.MaxMessageSize/2) }

// member is one caller's writes in a commit group.
type member struct {
	ops   []byte // packed (WriteRequest.ops)
	count uint32
	keys  [][]byte // the keys (aliasing ops), for the causal duplicate check
	// alone sends the member's writes by themselves.
	alone func(ctx context.Context) error
	// ctx is the caller's context, when it leads a group.
	ctx context.Context
	err error
}

// commitGroup is the writes of concurrent callers sent as one Write call.
type commitGroup struct {
	ctx     context.Context
	members []*member
	bytes   int
	// keys are the keys of the members, built when a second member joins
	// (a group of one, the common case of a lone writer, needs none).
	keys map[string]struct{}
	done chan struct{} // closed once every member's err is set
	// led: a goroutine has taken the group to send (its first caller,
	// or the successor of a call that returned), so a returning call
	// does not send it; it may still gather joiners until it is sealed.
	led bool
}

// index builds g.keys, if not yet built.
func (g *commitGroup) index() {
	if g.keys != nil {
		return
	}
	n := 0
	for _, m := range g.members {
		n += len(m.keys)
	}
	g.keys = make(map[string]struct{}, 2*n)
	for _, m := range g.members {
		for _, k := range m.keys {
			g.keys[string(k)] = struct{}{}
		}
	}
}

func (g *commitGroup) has(keys [][]byte) bool {
	g.index()
	for _, k := range keys {
		if _, ok := g.keys[string(k)]; ok {
			return true
		}
	}
	return false
}

func (g *commitGroup) add(m *member) {
	g.members = append(g.members, m)
	g.bytes += len(m.ops)
	if len(g.members) == 1 {
		return
	}
	g.index() // covers m if built now
	for _, k := range m.keys {
		g.keys[string(k)] = struct{}{}
	}
}

// committer holds the open groups, one per sync setting.
type committer struct {
	mu sync.Mutex
	// open is the group gathering writes while calls are in flight;
	// inFlight the calls of the setting in flight (or being started).
	open     [2]*commitGroup
	inFlight [2]int
	// lastSize is the number of callers of the last group of each setting
	// sent: as many as a synced group lingers for.
	lastSize [2]int
}

// maxInFlight is the number of write calls of a sync setting (slot:
// syncSlot) a client keeps in flight before it groups further writes;
// large tells whether the write at hand is a large synced one
// (largeSyncBytes). Small synced writes keep one call: with the linger
// (above), every caller's write rides the one call, and an fsync carries
// them all; more calls split the callers into cohorts again. Large synced
// batches keep four: their cost is the replica's CPU (decoding, the
// memtable), which concurrent calls spread over its cores (Pebble applies
// concurrent batches to the memtable in parallel) and one merged batch
// would not. Unsynced writes cost CPU a call, so few, large groups win.
// Measured side by side on the 2-core VM (8 writers, 5 rounds): synced
// single-key puts 0.87 [0.80, 0.96] of in process with one call and the
// linger, 0.64 [0.63, 0.80] with four and no linger; synced batches of
// 100 0.72 [0.67, 0.77] with one call, 0.83 [0.81, 0.87] with four;
// unsynced single-key puts 48-50k/s with two calls, 33-35k/s with four.
func maxInFlight(slot int, large bool) int {
	switch {
	case slot == 1:
		return noSyncInFlight
	case large:
		return syncInFlightLarge
	}
	return syncInFlight
}

const (
	syncInFlight      = 1
	syncInFlightLarge = 4
	noSyncInFlight    = 2
	// maxSessions is the size of a sync setting's write-session pool.
	maxSessions = max(syncInFlight, syncInFlightLarge, noSyncInFlight)
	// largeSyncBytes is the packed size from which a synced write is
	// large: it may start a call while others are in flight, and a group
	// holding it does not linger.
	largeSyncBytes = 8 << 10
)

// lingers reports whether g, expecting want callers, lingers before it is
// sent: a synced group (slot 0) of small writes (under largeSyncBytes),
// expecting more than one caller, with a positive SyncLinger. The
// committer's lock is held.
func (c *Client) lingers(slot int, g *commitGroup, want int) bool {
	return slot == 0 && c.opts.SyncLinger > 0 && want > 1 && g.bytes < largeSyncBytes
}

// linger waits, yielding, until g (led by the caller, and open to
// joiners) holds want callers, turns large, or the client's SyncLinger has
// passed. It spins rather than sleeps: a timer of a few tens of
// microseconds can sleep a millisecond in an idle runtime.
func (c *Client) linger(g *commitGroup, want int) {
	cm := &c.committer
	start := time.Now()
	for {
		cm.mu.Lock()
		done := len(g.members) >= want || g.bytes >= largeSyncBytes
		cm.mu.Unlock()
		if done || time.Since(start) >= c.opts.SyncLinger {
			return
		}
		runtime.Gosched()
	}
}

func syncSlot(noSync bool) int {
	if noSync {
		return 1
	}
	return 0
}

// commit sends m's writes, grouped with those of concurrent callers
// (unless ClientOptions.NoGroupCommit).
func (c *Client) commit(ctx context.Context, m *member, noSync bool) error {
	if c.opts.NoGroupCommit {
		return m.alone(ctx)
	}
	slot := syncSlot(noSync)
	cm := &c.committer
	cm.mu.Lock()
	switch g := cm.open[slot]; {
	case cm.inFlight[slot] < maxInFlight(slot, len(m.ops) >= largeSyncBytes):
		// Room in flight: this caller leads a group. It yields once
		// before sealing it, so that writers already runnable (those a
		// finished group just woke) join instead of each leading a call.
		cm.inFlight[slot]++
		g := newGroup(ctx, m)
		g.led = true
		cm.open[slot] = g
		want := cm.lastSize[slot]
		cm.mu.Unlock()
		runtime.Gosched()
		cm.mu.Lock()
		lingers := c.lingers(slot, g, want)
		cm.mu.Unlock()
		if lingers {
			c.linger(g, want)
		}
		c.seal(slot, g)
		c.sendGroup(slot, g)
		return m.err
	case len(m.ops) > c.groupLimit()/2 || (g != nil && (g.bytes+len(m.ops) > c.groupLimit() || g.has(m.keys))):
		// Too big to group, or its key is in the group already.
		cm.mu.Unlock()
		return m.alone(ctx)
	case g == nil:
		g = newGroup(ctx, m)
		cm.open[slot] = g
		cm.mu.Unlock()
		return c.wait(ctx, g, m)
	default:
		g.add(m)
		cm.mu.Unlock()
		return c.wait(ctx, g, m)
	}
}

// wait waits for m's group to be sent, or for ctx to end.
func (c *Client) wait(ctx context.Context, g *commitGroup, m *member) error {
	select {
	case <-g.done:
		return m.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newGroup returns a group of m. A group is sent under its first
// member's context values without its cancellation (the others' writes
// must not fail because the first caller gave up); a member alone is
// sent under its own context.
func newGroup(ctx context.Context, m *member) *commitGroup {
	m.ctx = ctx
	g := &commitGroup{ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
	g.add(m)
	return g
}

// seal closes g (led by the caller) to joiners: later writes gather in a
// new group. It records g's size for the next group's linger.
func (c *Client) seal(slot int, g *commitGroup) {
	cm := &c.committer
	cm.mu.Lock()
	if cm.open[slot] == g {
		cm.open[slot] = nil
	}
	cm.lastSize[slot] = len(g.members)
	cm.mu.Unlock()
}

// sendGroup sends g (counted in flight), then the group that gathered
// meanwhile, if any, on a new goroutine, which takes over g's place in
// flight: sealed at once, or, if it lingers, led by that goroutine and
// open to joiners until it has lingered.
func (c *Client) sendGroup(slot int, g *commitGroup) {
	cm := &c.committer
	c.sendMembers(g.ctx, g.members, slot == 1)
	close(g.done)

	cm.mu.Lock()
	next := cm.open[slot]
	if next != nil && next.led {
		next = nil // its leader sends it
	}
	want := cm.lastSize[slot]
	lingers := false
	switch {
	case next == nil:
		cm.inFlight[slot]--
	case c.lingers(slot, next, want):
		next.led = true // this call's successor sends it, open meanwhile
		lingers = true
	default:
		cm.open[slot] = nil // sealed: later writes gather in a new group
		cm.lastSize[slot] = len(next.members)
	}
	cm.mu.Unlock()
	if next != nil {
		go func() {
			if lingers {
				c.linger(next, want)
				c.seal(slot, next)
			}
			c.sendGroup(slot, next)
		}()
	}
}

// sendMembers sends the members' writes as one Write call and sets each
// member's err; a refused group is resent member by member.
func (c *Client) sendMembers(ctx context.Context, ms []*member, noSync bool) {
	if len(ms) == 1 {
		if ms[0].ctx != nil {
			ctx = ms[0].ctx
		}
		ms[0].err = ms[0].alone(ctx)
		return
	}
	n, count := 0, uint32(0)
	for _, m := range ms {
		n += len(m.ops)
		count += m.count
	}
	ops := make([]byte, 0, n)
	for _, m := range ms {
		ops = append(ops, m.ops...)
	}
	err := c.writeRPC(ctx, &pb.WriteRequest{Ops: ops, Count: count, NoSync: noSync})
	if refused(err) {
		for _, m := range ms {
			m.err = m.alone(ctx)
		}
		return
	}
	for _, m := range ms {
		m.err = err
	}
}

// refused reports an error with which the replica refused a request
// without writing anything (a bad write, a limit, the wrong mode).
func refused(err error) bool {
	var re *Error
	if !errors.As(err, &re) {
		return false
	}
	switch re.Code {
	case codes.InvalidArgument, codes.ResourceExhausted, codes.FailedPrecondition:
		return true
	}
	return false
}

// singleMember is the member for one Put or Delete: its writes packed,
// sent alone as a Write of one.
func (c *Client) singleMember(op engine.WriteOp, noSync bool) *member {
	ops := appendPackedOp(make([]byte, 0, packedOpBytes(op)), op)
	req := &pb.WriteRequest{Ops: ops, Count: 1, NoSync: noSync}
	return &member{ops: ops, count: 1, keys: [][]byte{op.Key}, alone: func(ctx context.Context) error { return c.writeRPC(ctx, req) }}
}

package plugin_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pebble-ae/pebble-ae/engine"
	"github.com/pebble-ae/pebble-ae/plugin"
	pb "github.com/pebble-ae/pebble-ae/plugin/gen/pebbleae/v1"
	"github.com/pebble-ae/pebble-ae/reconcile"
	"github.com/pebble-ae/pebble-ae/reconcile/record"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sourceEntries writes n keys to a new engine and returns its entries (with
// records) and its root.
func sourceEntries(t *testing.T, n int) ([]reconcile.Entry, reconcile.Fingerprint) {
	t.Helper()
	ctx := testCtx(t)
	src := openEngine(t, "src", record.ModeLWW)
	for i := range n {
		if err := src.Put(ctx, fmt.Appendf(nil, "k%06d", i), fmt.Appendf(nil, "value-%d", i), engine.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	es := allEntries(t, src)
	if len(es) != n {
		t.Fatalf("source holds %d entries, want %d", len(es), n)
	}
	return es, rootOf(t, src)
}

// TestApplyStreamOneRoundTrip applies 2.5 times engine.MaxKeysPerRequest
// entries through gRPC (a plugin.Server on 127.0.0.1, and a plugin
// subprocess), with and without confirm ranges: one call (ApplyStream) of
// three messages, and every entry lands (the replica's root is the
// source's, and the confirm answer says so).
func TestApplyStreamOneRoundTrip(t *testing.T) {
	n := engine.MaxKeysPerRequest*5/2 + 1
	entries, want := sourceEntries(t, n)
	for _, tc := range []struct {
		name string
		open func(t *testing.T) *plugin.Client
	}{
		{"loopback", func(t *testing.T) *plugin.Client {
			_, c := serveLoopback(t, openEngine(t, "b", record.ModeLWW), nil)
			return c
		}},
		{"subprocess", func(t *testing.T) *plugin.Client {
			c := openPlugin(t, t.TempDir(), "b", quietOpen())
			waitReady(t, c)
			return c
		}},
	} {
		for _, confirm := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/confirm=%t", tc.name, confirm), func(t *testing.T) {
				ctx := testCtx(t)
				c := tc.open(t)
				c.ResetWireStats()
				if confirm {
					hashes, err := c.ApplyAndHash(ctx, 0, entries, []reconcile.KeyRange{{}})
					if err != nil {
						t.Fatal(err)
					}
					if len(hashes) != 1 || hashes[0].Fingerprint != want {
						t.Fatalf("confirm answered %v, want the source's root %v", hashes, want)
					}
				} else if err := c.Apply(ctx, 0, entries); err != nil {
					t.Fatal(err)
				}
				ws := c.WireStats()
				t.Logf("wire: %+v", ws)
				if ws.Calls != 1 || ws.MessagesSent != 3 || ws.MessagesReceived != 1 {
					t.Fatalf("%d calls, %d messages sent, %d received; want 1 call of 3 messages and 1 answer", ws.Calls, ws.MessagesSent, ws.MessagesReceived)
				}
				if got := rootOf(t, c); got != want {
					t.Fatalf("root %v after the apply, want the source's %v", got, want)
				}
				if got := len(allEntries(t, c)); got != n {
					t.Fatalf("%d entries landed, want %d", got, n)
				}
			})
		}
	}
}

// TestApplyStreamBadMessage: a stream whose second message holds a bad
// entry fails with a typed error after applying the first message (each
// message is atomic on its own, as documented); a message naming another
// partition, or one after the message with confirm ranges, fails with
// INVALID_ARGUMENT; the server keeps serving.
func TestApplyStreamBadMessage(t *testing.T) {
	ctx := testCtx(t)
	entries, _ := sourceEntries(t, engine.MaxKeysPerRequest+500)
	e := openEngine(t, "b", record.ModeLWW, "m") // two partitions: keys < "m" in 0
	s := plugin.NewServer(e, nil)
	addr := serveTCP(t, s.Register, s.GRPCServerOptions()...)
	c, err := plugin.Dial(ctx, addr, nil, "b", &plugin.DialOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	bad := append([]reconcile.Entry(nil), entries...)
	bad[engine.MaxKeysPerRequest+10].Record = nil
	err = c.Apply(ctx, 0, bad)
	if !errors.Is(err, engine.ErrBadRequest) || !errors.Is(err, record.ErrMalformedRecord) {
		t.Fatalf("Apply with an empty record in message 2: %v, want ErrBadRequest and ErrMalformedRecord", err)
	}
	if got := len(allEntries(t, c)); got != engine.MaxKeysPerRequest {
		t.Fatalf("%d entries applied, want the first message's %d", got, engine.MaxKeysPerRequest)
	}

	raw := pb.NewReplicaClient(dialRaw(t, addr))
	msg := func(part uint32, es []reconcile.Entry, confirm bool) *pb.ApplyRequest {
		m := &pb.ApplyRequest{Partition: part}
		for _, e := range es {
			m.Entries = append(m.Entries, &pb.Entry{Key: e.Key, Record: e.Record})
		}
		if confirm {
			m.Confirm = []*pb.KeyRange{{}}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		msgs []*pb.ApplyRequest
	}{
		{"partition changes", []*pb.ApplyRequest{msg(0, entries[:10], false), msg(1, entries[10:20], false)}},
		{"message after confirm", []*pb.ApplyRequest{msg(0, entries[:10], true), msg(0, entries[10:20], false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := raw.ApplyStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.msgs {
				if err := stream.Send(m); err != nil {
					break // the server ended the call: CloseAndRecv says why
				}
			}
			_, err = stream.CloseAndRecv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(remoteSentinels(err), "engine.ErrBadRequest") {
				t.Fatalf("%v (sentinels %q), want INVALID_ARGUMENT naming engine.ErrBadRequest", err, remoteSentinels(err))
			}
		})
	}

	// The server still serves: the rest lands.
	if err := c.Apply(ctx, 0, entries); err != nil {
		t.Fatal(err)
	}
	if got := len(allEntries(t, c)); got != len(entries) {
		t.Fatalf("%d entries after the good apply, want %d", got, len(entries))
	}
}

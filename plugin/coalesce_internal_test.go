package plugin

import (
	"context"
	"testing"
	"time"
)

// TestSyncLinger: a synced group of small writes waits for as many
// callers as the last group held, and no longer once they have joined; it
// gives up at SyncLinger; unsynced groups, groups of large writes, groups
// expecting one caller and a negative SyncLinger do not wait. (No speed is
// asserted: the wait that must end by the count has a minute to, the
// test's deadline far less.)
func TestSyncLinger(t *testing.T) {
	ctx := context.Background()
	small := func() *member { return &member{ops: make([]byte, 64)} }
	join := func(c *Client, g *commitGroup, m *member) {
		c.committer.mu.Lock()
		g.add(m)
		c.committer.mu.Unlock()
	}
	lingering := func(c *Client, g *commitGroup, want int) chan struct{} {
		done := make(chan struct{})
		go func() {
			c.linger(g, want)
			close(done)
		}()
		return done
	}

	c := newClient(&ClientOptions{SyncLinger: time.Minute}, nil)
	g := newGroup(ctx, small())
	if !c.lingers(0, g, 3) {
		t.Fatal("a synced group of a small write expecting 3 callers does not linger")
	}
	done := lingering(c, g, 3)
	join(c, g, small())
	select {
	case <-done:
		t.Fatal("the group stopped waiting with 2 callers of the 3 expected")
	case <-time.After(20 * time.Millisecond):
	}
	join(c, g, small())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the group still waits with the 3 callers expected")
	}
	// A group that turns large while it waits stops waiting.
	g = newGroup(ctx, small())
	done = lingering(c, g, 3)
	join(c, g, &member{ops: make([]byte, largeSyncBytes)})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a group turned large still waits")
	}

	for name, tc := range map[string]struct {
		linger time.Duration
		slot   int
		m      *member
		want   int
	}{
		"unsynced":        {time.Minute, 1, small(), 3},
		"large":           {time.Minute, 0, &member{ops: make([]byte, largeSyncBytes)}, 3},
		"one expected":    {time.Minute, 0, small(), 1},
		"negative linger": {-1, 0, small(), 3},
	} {
		c := newClient(&ClientOptions{SyncLinger: tc.linger}, nil)
		if c.lingers(tc.slot, newGroup(ctx, tc.m), tc.want) {
			t.Errorf("%s: the group lingers", name)
		}
	}
	c = newClient(&ClientOptions{SyncLinger: 20 * time.Millisecond}, nil)
	select {
	case <-lingering(c, newGroup(ctx, small()), 3):
	case <-time.After(10 * time.Second):
		t.Error("the group waits past SyncLinger")
	}
	if d := newClient(nil, nil).opts.SyncLinger; d != DefaultSyncLinger {
		t.Errorf("default SyncLinger %v, want %v", d, DefaultSyncLinger)
	}
}

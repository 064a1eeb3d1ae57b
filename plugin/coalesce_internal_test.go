package plugin

import (
	"context"
	"testing"
	"time"
)

// TestSyncLinger: a synced group waits for as many callers as the last
// group held, and no longer once they have joined; it gives up at
// SyncLinger; unsynced groups, groups expecting one caller and a negative
// SyncLinger do not wait. (No speed is asserted: the waits that must end
// by the count have a minute to, the test's deadline far less.)
func TestSyncLinger(t *testing.T) {
	ctx := context.Background()
	join := func(c *Client, g *commitGroup) {
		c.committer.mu.Lock()
		g.add(&member{})
		c.committer.mu.Unlock()
	}
	lingering := func(c *Client, slot int, g *commitGroup, want int) chan struct{} {
		done := make(chan struct{})
		go func() {
			c.linger(slot, g, want)
			close(done)
		}()
		return done
	}

	c := newClient(&ClientOptions{SyncLinger: time.Minute}, nil)
	g := newGroup(ctx, &member{})
	done := lingering(c, 0, g, 3)
	join(c, g)
	select {
	case <-done:
		t.Fatal("the group stopped waiting with 2 callers of the 3 expected")
	case <-time.After(20 * time.Millisecond):
	}
	join(c, g)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the group still waits with the 3 callers expected")
	}

	for name, tc := range map[string]struct {
		linger time.Duration
		slot   int
		want   int
	}{
		"unsynced":         {time.Minute, 1, 3},
		"one expected":     {time.Minute, 0, 1},
		"negative linger":  {-1, 0, 3},
		"after the linger": {20 * time.Millisecond, 0, 3},
	} {
		c := newClient(&ClientOptions{SyncLinger: tc.linger}, nil)
		select {
		case <-lingering(c, tc.slot, newGroup(ctx, &member{}), tc.want):
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the group waits on", name)
		}
	}
	if d := newClient(nil, nil).opts.SyncLinger; d != DefaultSyncLinger {
		t.Errorf("default SyncLinger %v, want %v", d, DefaultSyncLinger)
	}
}

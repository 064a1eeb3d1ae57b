package node

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"

	"github.com/pebble-ae/pebble-ae/plugin"
	"github.com/pebble-ae/pebble-ae/reconcile"
)

// lazyPeer is a remote replica reached over the network, dialed on first
// use and redialed after a failure, so a node can start before its peers.
type lazyPeer struct {
	peer     Peer
	tls      *tls.Config
	insecure bool

	mu     sync.Mutex
	client *plugin.Client
}

func newLazyPeer(p Peer, cfg *tls.Config, insecure bool) *lazyPeer {
	return &lazyPeer{peer: p, tls: cfg, insecure: insecure}
}

func (l *lazyPeer) get(ctx context.Context) (*plugin.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	c, err := plugin.Dial(ctx, l.peer.Addr, l.tls, l.peer.ID, &plugin.DialOptions{Insecure: l.insecure})
	if err != nil {
		return nil, err
	}
	l.client = c
	return c, nil
}

// done drops the client after a transport failure, so the next call dials.
func (l *lazyPeer) done(c *plugin.Client, err error) error {
	if err != nil && errors.Is(err, plugin.ErrUnavailable) {
		l.mu.Lock()
		if l.client == c {
			l.client = nil
			_ = c.Close()
		}
		l.mu.Unlock()
	}
	return err
}

func (l *lazyPeer) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		_ = l.client.Close()
		l.client = nil
	}
}

func (l *lazyPeer) Info(ctx context.Context) (reconcile.Info, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.Info{}, err
	}
	info, err := c.Info(ctx)
	return info, l.done(c, err)
}

func (l *lazyPeer) RangeHash(ctx context.Context, req reconcile.RangeHashRequest) ([]reconcile.RangeHash, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.RangeHash(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) RangeScan(ctx context.Context, req reconcile.RangeScanRequest) (reconcile.RangeScanResult, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.RangeScanResult{}, err
	}
	r, err := c.RangeScan(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) Fetch(ctx context.Context, part uint32, keys [][]byte) ([]reconcile.Entry, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.Fetch(ctx, part, keys)
	return r, l.done(c, err)
}

func (l *lazyPeer) Apply(ctx context.Context, part uint32, entries []reconcile.Entry) error {
	c, err := l.get(ctx)
	if err != nil {
		return err
	}
	return l.done(c, c.Apply(ctx, part, entries))
}

func (l *lazyPeer) RangeSketch(ctx context.Context, req reconcile.RangeSketchRequest) (reconcile.RangeSketchResult, error) {
	c, err := l.get(ctx)
	if err != nil {
		return reconcile.RangeSketchResult{}, err
	}
	r, err := c.RangeSketch(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) FetchByHash(ctx context.Context, req reconcile.FetchByHashRequest) ([]reconcile.Entry, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.FetchByHash(ctx, req)
	return r, l.done(c, err)
}

func (l *lazyPeer) ApplyAndHash(ctx context.Context, part uint32, entries []reconcile.Entry, ranges []reconcile.KeyRange) ([]reconcile.RangeHash, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	r, err := c.ApplyAndHash(ctx, part, entries, ranges)
	return r, l.done(c, err)
}

// OpenSymbols implements reconcile.Replica.
func (l *lazyPeer) OpenSymbols(ctx context.Context, req reconcile.SymbolsRequest) (reconcile.SymbolStream, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenSymbols(ctx, req)
	return s, l.done(c, err)
}

var _ reconcile.Replica = (*lazyPeer)(nil)

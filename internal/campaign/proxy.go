package campaign

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what a Proxy does to the traffic it forwards. The zero Fault
// forwards faithfully.
type Fault struct {
	// Refuse resets every new connection at once (a partition, or a node
	// that is down).
	Refuse bool
	// Delay is added before forwarding each chunk read, in either
	// direction.
	Delay time.Duration
	// DelayAfter, if positive, applies Delay only once the proxy has
	// forwarded this many bytes (all connections, both directions) since
	// the fault was set: a slowdown that starts mid-session whatever the
	// session's speed.
	DelayAfter int64
	// ResetAfter, if positive, resets a connection (TCP RST on both sides)
	// once it has forwarded this many bytes in total: a reset mid-stream.
	ResetAfter int64
}

// Proxy is a loopback TCP proxy that forwards every accepted connection to
// a target address, applying the current Fault. It is safe for concurrent
// use.
type Proxy struct {
	lis    net.Listener
	target string
	fault  atomic.Pointer[Fault]
	// sinceFault counts the bytes forwarded since the last SetFault.
	sinceFault atomic.Int64
	// Counters of what the proxy did, for reports.
	Accepted, Refused, Resets atomic.Int64

	mu struct {
		sync.Mutex
		conns  map[*proxyConn]struct{}
		closed bool
	}
	wg sync.WaitGroup
}

type proxyConn struct {
	client, server *net.TCPConn
	forwarded      atomic.Int64
	once           sync.Once
}

// reset closes both sides with SO_LINGER 0, so that each peer sees a
// connection reset rather than an orderly close.
func (c *proxyConn) reset() {
	c.once.Do(func() {
		for _, s := range []*net.TCPConn{c.client, c.server} {
			if s != nil {
				_ = s.SetLinger(0)
				_ = s.Close()
			}
		}
	})
}

// NewProxy listens on 127.0.0.1 (a free port) and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, target: target}
	p.fault.Store(&Fault{})
	p.mu.conns = map[*proxyConn]struct{}{}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// SetFault sets the fault applied from now on; connections already open
// get the new Delay and ResetAfter too.
func (p *Proxy) SetFault(f Fault) {
	p.sinceFault.Store(0)
	p.fault.Store(&f)
}

// ResetAll resets every open connection.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.mu.conns))
	for c := range p.mu.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		p.Resets.Add(1)
		c.reset()
	}
}

// Close stops accepting, resets every open connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.mu.closed = true
	p.mu.Unlock()
	err := p.lis.Close()
	p.ResetAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		client := c.(*net.TCPConn)
		p.Accepted.Add(1)
		if p.fault.Load().Refuse {
			p.Refused.Add(1)
			_ = client.SetLinger(0)
			_ = client.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = client.SetLinger(0)
			_ = client.Close()
			continue
		}
		pc := &proxyConn{client: client, server: s.(*net.TCPConn)}
		p.mu.Lock()
		if p.mu.closed {
			p.mu.Unlock()
			pc.reset()
			return
		}
		p.mu.conns[pc] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		done := make(chan struct{}, 2)
		go p.pipe(pc, pc.client, pc.server, done)
		go p.pipe(pc, pc.server, pc.client, done)
		go func() {
			<-done
			<-done
			p.mu.Lock()
			delete(p.mu.conns, pc)
			p.mu.Unlock()
		}()
	}
}

// pipe forwards from src to dst until either fails, applying the fault.
func (p *Proxy) pipe(pc *proxyConn, src, dst *net.TCPConn, done chan<- struct{}) {
	defer p.wg.Done()
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f := p.fault.Load()
			if f.Refuse {
				p.Resets.Add(1)
				pc.reset()
				return
			}
			if since := p.sinceFault.Add(int64(n)); f.Delay > 0 && since > f.DelayAfter {
				time.Sleep(f.Delay)
			}
			total := pc.forwarded.Add(int64(n))
			if f.ResetAfter > 0 && total >= f.ResetAfter {
				// Forward part of the chunk, then reset: the peer sees a
				// message cut short.
				_, _ = dst.Write(buf[:n/2])
				p.Resets.Add(1)
				pc.reset()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pc.reset()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Orderly close: pass the half-close on.
				_ = dst.CloseWrite()
				return
			}
			pc.reset()
			return
		}
	}
}

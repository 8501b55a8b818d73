// Package dial holds the gRPC client connections a process keeps to its
// peers: one shared connection per address (matching owners, driver gateways)
// with the process's dial options, closed together on shutdown.
package dial

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
)

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("dial: pool closed")

// Pool caches one *grpc.ClientConn per target. Safe for concurrent use.
type Pool struct {
	opts   []grpc.DialOption
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// NewPool returns a pool that dials with opts (credentials, stats handlers).
func NewPool(opts ...grpc.DialOption) *Pool {
	return &Pool{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// Get returns the connection to target, creating it on first use. Creating
// does not block on the network: gRPC connects lazily.
func (p *Pool) Get(target string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if cc, ok := p.conns[target]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(target, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	p.conns[target] = cc
	return cc, nil
}

// Forget closes and drops the connection to target (a peer that left).
func (p *Pool) Forget(target string) {
	p.mu.Lock()
	cc, ok := p.conns[target]
	delete(p.conns, target)
	p.mu.Unlock()
	if ok {
		_ = cc.Close()
	}
}

// Close closes every connection.
func (p *Pool) Close() error {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, cc := range conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

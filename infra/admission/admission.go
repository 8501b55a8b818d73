// Package admission bounds the work a process takes on at once and refuses
// the rest immediately, so overload is answered fast with a retry delay
// instead of growing queues that time out later (by which point the work
// may have committed for a caller who gave up).
//
// A Gate counts work in flight. Work comes in two classes: Ongoing (a ride
// already in progress: driver actions, cancels, assignments, reads) and
// New (a new ride request). New work is admitted only while a reserve of
// the gate stays free for ongoing work, so under overload rides in
// progress keep moving and new requests are the ones refused.
//
// The gRPC interceptors put every unary call through a Gate, classed by
// method; the class travels in the context (WithClass, ClassOf) so a
// store below the handler can give the same call the same priority at its
// own gate (the database pool's).
package admission

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hexride/hexride/infra/auth"
)

// Class is the priority of a piece of work.
type Class uint8

const (
	// Ongoing is work for a ride in progress (the default).
	Ongoing Class = iota
	// New is a new ride request: refused first.
	New
)

func (c Class) String() string {
	if c == New {
		return "new"
	}
	return "ongoing"
}

// ReasonOverloaded is the ErrorInfo reason on refusals.
const ReasonOverloaded = "OVERLOADED"

// ErrorDomain is the ErrorInfo domain on refusals.
const ErrorDomain = "hexride.io"

// ErrOverloaded is returned (wrapped) when a gate refuses work.
var ErrOverloaded = errors.New("admission: at capacity")

// Config sizes a Gate.
type Config struct {
	// Limit is the most work admitted at once.
	Limit int
	// Reserve is how much of Limit only Ongoing work may use (New work is
	// admitted while fewer than Limit-Reserve are in flight).
	Reserve int
	// RetryAfter is the delay refusals tell callers to wait.
	RetryAfter time.Duration
	// Target turns on latency-driven shedding of New work (0: off). A
	// busy CPU or a slow peer makes every call slower before the count of
	// calls in flight reaches Limit, and by then callers time out: work
	// done for nobody. So when even the fastest New call finishing in a
	// Window took longer than Target (a standing queue, as in CoDel), New
	// work is limited to 90% of what is in flight; while they finish
	// faster, the limit grows by a quarter per Window.
	Target time.Duration
	// Window is the period over which latencies are judged (default 1s).
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Validate reports the first problem with c; name prefixes the message (the
// flag or field that set it).
func (c Config) Validate(name string) error {
	switch {
	case c.Limit < 1:
		return fmt.Errorf("%s: limit %d must be at least 1", name, c.Limit)
	case c.Reserve < 0 || c.Reserve >= c.Limit:
		return fmt.Errorf("%s: reserve %d must be in [0, limit %d)", name, c.Reserve, c.Limit)
	case c.RetryAfter <= 0:
		return fmt.Errorf("%s: retry delay must be positive", name)
	case c.Target < 0 || c.Window < 0:
		return fmt.Errorf("%s: latency target and window must not be negative", name)
	}
	return nil
}

// minNewLimit is the floor of the adaptive New limit: a few requests
// always get through to measure whether the queue has gone.
const minNewLimit = 4

// WithLimit is a Config with Limit n, a quarter of it reserved for ongoing
// work and a one second retry delay.
func WithLimit(n int) Config {
	return Config{Limit: n, Reserve: n / 4, RetryAfter: time.Second}
}

// Gate admits work up to its limit. The zero value is not usable; use New.
type Gate struct {
	cfg         Config
	inflight    atomic.Int64
	inflightNew atomic.Int64
	newLimit    atomic.Int64 // adaptive cap on New work in flight
	refused     [2]atomic.Int64

	mu          sync.Mutex // the latency window
	windowStart time.Time
	minLatency  time.Duration
}

// NewGate validates cfg and returns a Gate.
func NewGate(cfg Config) (*Gate, error) {
	if err := cfg.Validate("admission"); err != nil {
		return nil, err
	}
	if cfg.Window == 0 {
		cfg.Window = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Gate{cfg: cfg, minLatency: math.MaxInt64}
	g.newLimit.Store(g.maxNew())
	g.windowStart = cfg.Now()
	return g, nil
}

func (g *Gate) maxNew() int64 { return int64(g.cfg.Limit - g.cfg.Reserve) }

// TryAcquire admits one piece of work of class c, or refuses it at once.
// Each admitted piece must be released exactly once, with Release(c,
// start) where start is the time TryAcquire returned.
func (g *Gate) TryAcquire(c Class) (start time.Time, ok bool) {
	limit := int64(g.cfg.Limit)
	if c == New {
		limit -= int64(g.cfg.Reserve)
		if g.inflightNew.Load() >= g.newLimit.Load() {
			g.refused[New].Add(1)
			return time.Time{}, false
		}
	}
	for {
		n := g.inflight.Load()
		if n >= limit {
			g.refused[c&1].Add(1)
			return time.Time{}, false
		}
		if g.inflight.CompareAndSwap(n, n+1) {
			break
		}
	}
	if c == New {
		g.inflightNew.Add(1)
		if g.cfg.Target > 0 {
			start = g.cfg.Now()
		}
	}
	return start, true
}

// Release ends one admitted piece of work of class c that TryAcquire
// admitted at start.
func (g *Gate) Release(c Class, start time.Time) {
	g.inflight.Add(-1)
	if c != New {
		return
	}
	inflightNew := g.inflightNew.Add(-1) + 1
	if g.cfg.Target > 0 {
		now := g.cfg.Now()
		g.observe(now.Sub(start), now, inflightNew)
	}
}

// observe folds one New call's latency into the window and, when the
// window is over, moves the New limit.
func (g *Gate) observe(latency time.Duration, now time.Time, inflightNew int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.minLatency = min(g.minLatency, latency)
	if now.Sub(g.windowStart) < g.cfg.Window {
		return
	}
	limit := g.newLimit.Load()
	if g.minLatency > g.cfg.Target {
		limit = min(limit, inflightNew*9/10)
	} else {
		limit += limit/4 + 1
	}
	g.newLimit.Store(max(minNewLimit, min(limit, g.maxNew())))
	g.windowStart, g.minLatency = now, math.MaxInt64
}

// NewLimit is the current cap on New work in flight.
func (g *Gate) NewLimit() int { return int(g.newLimit.Load()) }

// InFlight is the work admitted and not yet released.
func (g *Gate) InFlight() int { return int(g.inflight.Load()) }

// Refused is how many pieces of class c were refused so far.
func (g *Gate) Refused(c Class) int64 { return g.refused[c&1].Load() }

// RetryAfter is the delay refusals carry.
func (g *Gate) RetryAfter() time.Duration { return g.cfg.RetryAfter }

// Limit is the most work admitted at once.
func (g *Gate) Limit() int { return g.cfg.Limit }

type classKey struct{}

// WithClass returns ctx carrying class c.
func WithClass(ctx context.Context, c Class) context.Context {
	return context.WithValue(ctx, classKey{}, c)
}

// ClassOf is the class ctx carries (Ongoing when none).
func ClassOf(ctx context.Context) Class {
	c, _ := ctx.Value(classKey{}).(Class)
	return c
}

// Refusal is the status a refused call gets: ResourceExhausted with
// RetryInfo and ErrorInfo reason OVERLOADED. Nothing was done for the
// call, so a retry (after the delay) is always safe.
func Refusal(what string, retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, what+" is at capacity; nothing was done, retry after the delay")
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonOverloaded, Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)},
	); err == nil {
		st = d
	}
	return st.Err()
}

// Classifier names the class of a gRPC method.
type Classifier func(fullMethod string) Class

// NewMethods is a Classifier: the listed full methods are New, every other
// Ongoing.
func NewMethods(methods ...string) Classifier {
	set := make(map[string]bool, len(methods))
	for _, m := range methods {
		set[m] = true
	}
	return func(fullMethod string) Class {
		if set[fullMethod] {
			return New
		}
		return Ongoing
	}
}

// exempt: health checks must be answered whatever the load (a refused
// health check takes the instance out of discovery and makes overload
// worse), and reflection is a tool's, not traffic.
func exempt(fullMethod string) bool {
	return auth.IsHealthCheck(fullMethod) || auth.IsReflection(fullMethod)
}

// UnaryServerInterceptor admits every unary call through g (health checks
// excepted), classed by classify, and puts the class in the handler's
// context. Refused calls get Refusal at once; their handler never runs.
func UnaryServerInterceptor(g *Gate, classify Classifier) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if exempt(info.FullMethod) {
			return handler(ctx, req)
		}
		c := classify(info.FullMethod)
		start, ok := g.TryAcquire(c)
		if !ok {
			return nil, Refusal("the server", g.cfg.RetryAfter)
		}
		defer g.Release(c, start)
		return handler(WithClass(ctx, c), req)
	}
}

// Admit runs work through g with the class ctx carries; a refusal is
// ErrOverloaded wrapped with what.
func (g *Gate) Admit(ctx context.Context, what string, work func(context.Context) error) error {
	c := ClassOf(ctx)
	start, ok := g.TryAcquire(c)
	if !ok {
		return fmt.Errorf("%s: %w", what, ErrOverloaded)
	}
	defer g.Release(c, start)
	return work(ctx)
}

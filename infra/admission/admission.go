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
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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
	}
	return nil
}

// WithLimit is a Config with Limit n, a quarter of it reserved for ongoing
// work and a one second retry delay.
func WithLimit(n int) Config {
	return Config{Limit: n, Reserve: n / 4, RetryAfter: time.Second}
}

// Gate admits work up to its limit. The zero value is not usable; use New.
type Gate struct {
	cfg      Config
	inflight atomic.Int64
	refused  [2]atomic.Int64
}

// NewGate validates cfg and returns a Gate.
func NewGate(cfg Config) (*Gate, error) {
	if err := cfg.Validate("admission"); err != nil {
		return nil, err
	}
	return &Gate{cfg: cfg}, nil
}

// TryAcquire admits one piece of work of class c, or refuses it at once.
// Each admitted piece must be released exactly once.
func (g *Gate) TryAcquire(c Class) bool {
	limit := int64(g.cfg.Limit)
	if c == New {
		limit -= int64(g.cfg.Reserve)
	}
	for {
		n := g.inflight.Load()
		if n >= limit {
			g.refused[c&1].Add(1)
			return false
		}
		if g.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release ends one admitted piece of work.
func (g *Gate) Release() { g.inflight.Add(-1) }

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
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
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
		if !g.TryAcquire(c) {
			return nil, Refusal("the server", g.cfg.RetryAfter)
		}
		defer g.Release()
		return handler(WithClass(ctx, c), req)
	}
}

// Admit runs work through g with the class ctx carries; a refusal is
// ErrOverloaded wrapped with what.
func (g *Gate) Admit(ctx context.Context, what string, work func(context.Context) error) error {
	if !g.TryAcquire(ClassOf(ctx)) {
		return fmt.Errorf("%s: %w", what, ErrOverloaded)
	}
	defer g.Release()
	return work(ctx)
}

// Package ratelimit throttles callers with token buckets: one bucket per
// (principal, RPC), sized by a per-method table, held in a bounded,
// idle-evicting map so a flood of distinct principals cannot exhaust
// memory. Refused calls fail ResourceExhausted with an errdetails.RetryInfo
// saying when to retry.
//
// Put the interceptors after authentication (infra/auth's Authorizer), so
// buckets are keyed by the authenticated principal; calls without one are
// keyed by the peer address.
package ratelimit

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limit is a token bucket: Rate tokens per second, up to Burst.
type Limit struct {
	Rate  rate.Limit
	Burst int
}

// Unlimited never refuses.
var Unlimited = Limit{Rate: rate.Inf}

// PerMinute is n calls a minute with burst b.
func PerMinute(n float64, b int) Limit { return Limit{Rate: rate.Limit(n / 60), Burst: b} }

// PerSecond is n calls a second with burst b.
func PerSecond(n float64, b int) Limit { return Limit{Rate: rate.Limit(n), Burst: b} }

func (l Limit) unlimited() bool { return l.Rate == rate.Inf }

func (l Limit) validate() error {
	if l.unlimited() {
		return nil
	}
	if !(l.Rate > 0) || math.IsNaN(float64(l.Rate)) || l.Burst < 1 {
		return fmt.Errorf("%w: rate %v burst %d", ErrBadLimit, l.Rate, l.Burst)
	}
	return nil
}

// Config configures a Limiter.
type Config struct {
	// Default applies to every RPC without an override.
	Default Limit
	// Methods overrides Default per gRPC full method.
	Methods map[string]Limit
	// MaxEntries bounds the buckets held (at least 16: one per shard);
	// the least recently used of a shard goes first. A forgotten bucket comes back full, so MaxEntries should
	// exceed the callers active within IdleTTL.
	MaxEntries int
	// IdleTTL forgets buckets unused this long (a full bucket refills in
	// Burst/Rate anyway).
	IdleTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ExemptRoles are principals never limited here (hexride's own
	// services: their fan-in is bounded by the callers they serve, whose
	// limits apply at the edge).
	ExemptRoles []auth.Role
}

// Config errors.
var (
	ErrBadLimit   = errors.New("ratelimit: rate must be positive (or rate.Inf) and burst at least 1")
	ErrBadEntries = errors.New("ratelimit: MaxEntries must be positive")
	ErrBadTTL     = errors.New("ratelimit: IdleTTL must be positive")
)

// Full method names with hexride's overrides.
const (
	MethodRequestRide = "/hexride.rider.v1.RiderService/RequestRide"
	MethodGetQuote    = "/hexride.rider.v1.RiderService/GetQuote"
	MethodConnect     = "/hexride.driver.v1.DriverService/Connect"
)

// DefaultConfig is hexride's table: 20/s burst 40 per principal and RPC;
// RequestRide 6/min burst 3 (a ride request starts a dispatch: the costly
// and abusable call); GetQuote 1/s burst 10; Connect 1 stream open per
// 2 s burst 5 (reconnect storms). Internal service-to-service calls are
// limited per service identity, so give service traffic its own overrides
// (or Unlimited) when wiring a process that fans in many calls.
func DefaultConfig() Config {
	return Config{
		Default: PerSecond(20, 40),
		Methods: map[string]Limit{
			MethodRequestRide: PerMinute(6, 3),
			MethodGetQuote:    PerSecond(1, 10),
			MethodConnect:     PerSecond(0.5, 5),
		},
		MaxEntries: 100_000,
		IdleTTL:    10 * time.Minute,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if err := c.Default.validate(); err != nil {
		return fmt.Errorf("default: %w", err)
	}
	for m, l := range c.Methods {
		if err := l.validate(); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	if c.MaxEntries <= 0 {
		return ErrBadEntries
	}
	if c.IdleTTL <= 0 {
		return ErrBadTTL
	}
	return nil
}

// numShards spreads lock contention; each shard holds MaxEntries/numShards.
const numShards = 16

// Limiter holds the buckets.
type Limiter struct {
	cfg    Config
	seed   maphash.Seed
	shards [numShards]shard
}

type shard struct {
	mu    sync.Mutex
	max   int
	items map[string]*list.Element
	lru   list.List // front: most recently used
}

type entry struct {
	key     string
	lim     *rate.Limiter
	lastUse time.Time
	// charged holds the idempotency keys of the last calls that took a
	// token (a small ring): a retry of one of them is the same request
	// again, not a new one, and passes without a token.
	charged [chargedKeys]string
	next    int
}

// chargedKeys is how many idempotency keys a bucket remembers; an app
// retries one request at a time, a few at most.
const chargedKeys = 8

// New validates cfg and returns a Limiter. It starts no goroutines:
// eviction happens on access.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{cfg: cfg, seed: maphash.MakeSeed()}
	// Shards split MaxEntries exactly (each holds at least one).
	for i := range l.shards {
		per := cfg.MaxEntries / numShards
		if i < cfg.MaxEntries%numShards {
			per++
		}
		l.shards[i].max = max(1, per)
		l.shards[i].items = make(map[string]*list.Element)
	}
	return l, nil
}

// limitFor returns the limit of method.
func (l *Limiter) limitFor(method string) Limit {
	if lim, ok := l.cfg.Methods[method]; ok {
		return lim
	}
	return l.cfg.Default
}

// Allow takes a token for key calling method; when there is none it returns
// false and how long until one is available.
func (l *Limiter) Allow(key, method string) (bool, time.Duration) {
	return l.AllowRequest(key, method, "")
}

// AllowRequest is Allow for a request carrying an idempotency key: a key
// that already took a token from this bucket (within the bucket's idle
// lifetime, among its last few keys) passes free, so an app retrying one
// request through an outage does not spend the budget meant for new ones.
// An empty idemKey is always charged.
func (l *Limiter) AllowRequest(key, method, idemKey string) (bool, time.Duration) {
	lim := l.limitFor(method)
	if lim.unlimited() {
		return true, 0
	}
	now := l.cfg.Now()
	k := key + "\x00" + method
	sh := &l.shards[maphash.String(l.seed, k)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.evictIdle(now, l.cfg.IdleTTL)
	var e *entry
	if el, ok := sh.items[k]; ok {
		e = el.Value.(*entry)
		sh.lru.MoveToFront(el)
	} else {
		for sh.lru.Len() >= sh.max {
			sh.remove(sh.lru.Back())
		}
		e = &entry{key: k, lim: rate.NewLimiter(lim.Rate, lim.Burst)}
		sh.items[k] = sh.lru.PushFront(e)
	}
	e.lastUse = now
	if idemKey != "" && slices.Contains(e.charged[:], idemKey) {
		return true, 0
	}
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	if idemKey != "" {
		e.charged[e.next] = idemKey
		e.next = (e.next + 1) % chargedKeys
	}
	return true, 0
}

func (sh *shard) evictIdle(now time.Time, ttl time.Duration) {
	for el := sh.lru.Back(); el != nil; el = sh.lru.Back() {
		if now.Sub(el.Value.(*entry).lastUse) < ttl {
			return
		}
		sh.remove(el)
	}
}

func (sh *shard) remove(el *list.Element) {
	delete(sh.items, el.Value.(*entry).key)
	sh.lru.Remove(el)
}

// Len is the number of buckets held.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].items)
		l.shards[i].mu.Unlock()
	}
	return n
}

// exempt: health checks are never limited (Consul and load balancers call
// them without credentials). Reflection is not exempt: it needs an
// authenticated caller, and each caller's stream opens are limited like
// any other RPC's (the default bucket is far above what grpcurl needs).
func exempt(fullMethod string) bool { return auth.IsHealthCheck(fullMethod) }

// Key is the bucket owner of a call: the authenticated principal, else
// the peer's IP address.
func Key(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.String()
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr := p.Addr.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host // every port of a host shares a bucket
		}
		return "peer:" + addr
	}
	return "anonymous"
}

// idempotent is a request that names its idempotency key.
type idempotent interface{ GetIdempotencyKey() string }

// check is Allow for an incoming call with request req (nil for a stream).
func (l *Limiter) check(ctx context.Context, method string, req any) error {
	if exempt(method) {
		return nil
	}
	if p, ok := auth.FromContext(ctx); ok && slices.Contains(l.cfg.ExemptRoles, p.Role) {
		return nil
	}
	var idemKey string
	if r, ok := req.(idempotent); ok {
		idemKey = r.GetIdempotencyKey()
	}
	ok, wait := l.AllowRequest(Key(ctx), method, idemKey)
	if ok {
		return nil
	}
	return Exhausted("rate limit exceeded for "+method, wait)
}

// Exhausted is a ResourceExhausted status error carrying RetryInfo with
// the delay (rounded up to a millisecond).
func Exhausted(msg string, retryAfter time.Duration) error {
	if retryAfter < time.Millisecond {
		retryAfter = time.Millisecond
	}
	retryAfter = retryAfter.Round(time.Millisecond)
	if retryAfter > 24*time.Hour {
		retryAfter = 24 * time.Hour
	}
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfter)})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// RetryDelay returns the RetryInfo delay of a status error, if any.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// UnaryServerInterceptor limits unary calls.
func (l *Limiter) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := l.check(ctx, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor limits stream opens; the messages on a stream are
// the stream handler's to limit (the driver gateway keeps a token bucket
// per stream).
func (l *Limiter) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := l.check(ss.Context(), info.FullMethod, nil); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

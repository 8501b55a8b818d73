package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(t *testing.T, cfg Config, clk *fakeClock) *Limiter {
	t.Helper()
	cfg.Now = clk.Now
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	tests := []struct {
		name string
		mut  func(*Config)
		want error
	}{
		{"default is valid", func(*Config) {}, nil},
		{"zero default rate", func(c *Config) { c.Default = Limit{} }, ErrBadLimit},
		{"zero burst override", func(c *Config) { c.Methods = map[string]Limit{"/a.B/C": {Rate: 1}} }, ErrBadLimit},
		{"negative rate", func(c *Config) { c.Default = Limit{Rate: -1, Burst: 1} }, ErrBadLimit},
		{"unlimited override", func(c *Config) { c.Methods = map[string]Limit{"/a.B/C": Unlimited} }, nil},
		{"no entries", func(c *Config) { c.MaxEntries = 0 }, ErrBadEntries},
		{"no ttl", func(c *Config) { c.IdleTTL = 0 }, ErrBadTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			c.Methods = map[string]Limit{}
			for k, v := range good.Methods {
				c.Methods[k] = v
			}
			tt.mut(&c)
			err := c.Validate()
			if !errors.Is(err, tt.want) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBucketsPerPrincipalAndMethod(t *testing.T) {
	clk := newClock()
	l := newLimiter(t, DefaultConfig(), clk)
	// RequestRide: burst 3, then one every 10 s.
	for i := range 3 {
		if ok, _ := l.Allow("rider:a", MethodRequestRide); !ok {
			t.Fatalf("call %d refused within burst", i)
		}
	}
	ok, wait := l.Allow("rider:a", MethodRequestRide)
	if ok || wait != 10*time.Second {
		t.Fatalf("4th RequestRide: ok=%v wait=%v, want refused with 10s", ok, wait)
	}
	// Other principals and other methods have their own buckets.
	if ok, _ := l.Allow("rider:b", MethodRequestRide); !ok {
		t.Fatal("rider:b limited by rider:a's bucket")
	}
	if ok, _ := l.Allow("rider:a", "/hexride.rider.v1.RiderService/GetTrip"); !ok {
		t.Fatal("GetTrip limited by RequestRide's bucket")
	}
	// A refused call costs nothing: after the wait exactly one more fits.
	clk.Advance(10 * time.Second)
	if ok, _ := l.Allow("rider:a", MethodRequestRide); !ok {
		t.Fatal("refused after the advertised wait")
	}
	if ok, _ := l.Allow("rider:a", MethodRequestRide); ok {
		t.Fatal("allowed twice after one refill")
	}
}

func TestMemoryStaysBounded(t *testing.T) {
	clk := newClock()
	cfg := DefaultConfig()
	cfg.MaxEntries = 1000
	cfg.IdleTTL = time.Minute
	l := newLimiter(t, cfg, clk)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 200_000 {
		l.Allow(fmt.Sprintf("rider:%d", i), MethodGetQuote)
		if n := l.Len(); i%10_000 == 0 && n > cfg.MaxEntries {
			t.Fatalf("after %d principals: %d buckets > %d", i, n, cfg.MaxEntries)
		}
	}
	if n := l.Len(); n > cfg.MaxEntries {
		t.Fatalf("%d buckets > MaxEntries %d", n, cfg.MaxEntries)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 8<<20 {
		t.Fatalf("heap grew %d bytes for 1000 buckets", grew)
	}

	// Idle buckets go on the next access to their shard.
	// Touch every shard once with a fresh key.
	clk.Advance(2 * time.Minute)
	var hit [numShards]bool
	fresh := 0
	for i := 0; fresh < numShards; i++ {
		key := fmt.Sprintf("fresh:%d", i)
		sh := maphash.String(l.seed, key+"\x00"+MethodGetQuote) % numShards
		if hit[sh] {
			continue
		}
		hit[sh] = true
		fresh++
		l.Allow(key, MethodGetQuote)
	}
	if n := l.Len(); n != numShards {
		t.Fatalf("%d buckets after idle eviction, want %d", n, numShards)
	}
}

func TestLRUKeepsActiveCaller(t *testing.T) {
	clk := newClock()
	cfg := DefaultConfig()
	cfg.MaxEntries = numShards // one bucket per shard
	l := newLimiter(t, cfg, clk)
	for range 3 {
		l.Allow("rider:hot", MethodRequestRide)
	}
	if ok, _ := l.Allow("rider:hot", MethodRequestRide); ok {
		t.Fatal("hot rider not limited")
	}
	// Still in its bucket as long as no other key lands on its shard; the
	// point is that eviction (not a reset) is the only way it refills
	// early, and that eviction is bounded by capacity.
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d", n)
	}
}

func TestKey(t *testing.T) {
	withPeer := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 5555}})
	withPeer6 := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("::1"), Port: 5555}})
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"principal wins", auth.WithPrincipal(withPeer, auth.Principal{Role: auth.RoleRider, Subject: "r1"}), "rider:r1"},
		{"peer host without port", withPeer, "peer:10.1.2.3"},
		{"ipv6 peer", withPeer6, "peer:::1"},
		{"nothing", context.Background(), "anonymous"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Key(tt.ctx); got != tt.want {
				t.Fatalf("Key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestInterceptors(t *testing.T) {
	clk := newClock()
	cfg := DefaultConfig()
	cfg.Default = Limit{Rate: 1, Burst: 1}
	l := newLimiter(t, cfg, clk)
	unary := l.UnaryServerInterceptor()
	stream := l.StreamServerInterceptor()
	rider := auth.WithPrincipal(context.Background(), auth.Principal{Role: auth.RoleRider, Subject: "r"})
	driver := auth.WithPrincipal(context.Background(), auth.Principal{Role: auth.RoleDriver, Subject: "d"})
	okUnary := func(context.Context, any) (any, error) { return "ok", nil }
	okStream := func(any, grpc.ServerStream) error { return nil }

	type call struct {
		ctx      context.Context
		method   string
		isStream bool
		want     codes.Code
		retry    time.Duration
	}
	calls := []call{
		{rider, "/hexride.rider.v1.RiderService/GetTrip", false, codes.OK, 0},
		{rider, "/hexride.rider.v1.RiderService/GetTrip", false, codes.ResourceExhausted, time.Second},
		{rider, "/grpc.health.v1.Health/Check", false, codes.OK, 0},
		{rider, "/grpc.health.v1.Health/Check", false, codes.OK, 0},
		{rider, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true, codes.OK, 0},
		{rider, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true, codes.ResourceExhausted, time.Second},
		{rider, "/grpc.health.v1.Health/Watch", true, codes.OK, 0},
		{rider, "/grpc.health.v1.Health/Watch", true, codes.OK, 0},
		{driver, MethodConnect, true, codes.OK, 0},
		{driver, MethodConnect, true, codes.OK, 0},
		{driver, MethodConnect, true, codes.OK, 0},
		{driver, MethodConnect, true, codes.OK, 0},
		{driver, MethodConnect, true, codes.OK, 0},
		{driver, MethodConnect, true, codes.ResourceExhausted, 2 * time.Second},
	}
	for i, c := range calls {
		var err error
		if c.isStream {
			err = stream(nil, &ctxStream{ctx: c.ctx}, &grpc.StreamServerInfo{FullMethod: c.method}, okStream)
		} else {
			_, err = unary(c.ctx, nil, &grpc.UnaryServerInfo{FullMethod: c.method}, okUnary)
		}
		if got := status.Code(err); got != c.want {
			t.Fatalf("call %d %s: code %v, want %v (%v)", i, c.method, got, c.want, err)
		}
		if c.retry > 0 {
			d, ok := RetryDelay(err)
			if !ok || d != c.retry {
				t.Fatalf("call %d: RetryInfo %v %v, want %v", i, d, ok, c.retry)
			}
		}
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context     { return s.ctx }
func (s *ctxStream) SetHeader(metadata.MD) error  { return nil }
func (s *ctxStream) SendHeader(metadata.MD) error { return nil }

func TestExhaustedClampsDelay(t *testing.T) {
	tests := []struct {
		in, want time.Duration
	}{
		{0, time.Millisecond},
		{1500 * time.Microsecond, 2 * time.Millisecond},
		{time.Duration(1 << 62), 24 * time.Hour},
	}
	for _, tt := range tests {
		d, ok := RetryDelay(Exhausted("x", tt.in))
		if !ok || d != tt.want {
			t.Errorf("Exhausted(%v): %v %v, want %v", tt.in, d, ok, tt.want)
		}
	}
	if _, ok := RetryDelay(errors.New("plain")); ok {
		t.Error("RetryDelay of a plain error")
	}
}

func TestConcurrentAllow(t *testing.T) {
	l, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				ok, _ := l.Allow("rider:shared", MethodRequestRide)
				l.Allow(fmt.Sprintf("rider:%d-%d", g, i), MethodGetQuote)
				if ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed < 3 || allowed > 4 { // burst 3, plus at most one refill in wall time
		t.Fatalf("shared bucket allowed %d", allowed)
	}
}

func TestRetryOfChargedKeyIsFree(t *testing.T) {
	type call struct {
		key    string
		wantOK bool
	}
	tests := []struct {
		name  string
		calls []call
	}{
		{"same key retried 50 times costs one token", func() []call {
			cs := []call{{"k1", true}}
			for range 49 {
				cs = append(cs, call{"k1", true})
			}
			// Two new keys fit the remaining burst of 3, the third does not.
			return append(cs, call{"k2", true}, call{"k3", true}, call{"k4", false})
		}()},
		{"a refused key was not charged and stays refused", []call{
			{"a", true}, {"b", true}, {"c", true}, {"d", false}, {"d", false}, {"a", true},
		}},
		{"no key is always charged", []call{{"", true}, {"", true}, {"", true}, {"", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, DefaultConfig(), newClock())
			for i, c := range tt.calls {
				if ok, _ := l.AllowRequest("rider:a", MethodRequestRide, c.key); ok != c.wantOK {
					t.Fatalf("call %d key %q: ok=%v, want %v", i, c.key, ok, c.wantOK)
				}
			}
		})
	}
	t.Run("ring forgets the oldest key", func(t *testing.T) {
		clk := newClock()
		l := newLimiter(t, Config{Default: PerSecond(1, 1), MaxEntries: 16, IdleTTL: time.Hour}, clk)
		for i := range chargedKeys + 1 {
			clk.Advance(time.Second)
			if ok, _ := l.AllowRequest("p", "/m", fmt.Sprint("k", i)); !ok {
				t.Fatalf("key %d refused after refill", i)
			}
		}
		if ok, _ := l.AllowRequest("p", "/m", "k0"); ok {
			t.Fatal("the oldest key was still free after the ring wrapped")
		}
		if ok, _ := l.AllowRequest("p", "/m", fmt.Sprint("k", chargedKeys)); !ok {
			t.Fatal("the newest key was charged again")
		}
	})
}

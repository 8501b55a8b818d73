package admission

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"WithLimit", WithLimit(8), true},
		{"limit 1 no reserve", Config{Limit: 1, RetryAfter: time.Second}, true},
		{"zero limit", Config{Limit: 0, RetryAfter: time.Second}, false},
		{"reserve = limit", Config{Limit: 4, Reserve: 4, RetryAfter: time.Second}, false},
		{"negative reserve", Config{Limit: 4, Reserve: -1, RetryAfter: time.Second}, false},
		{"no retry delay", Config{Limit: 4}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate("--max-inflight")
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "--max-inflight") {
				t.Fatalf("error %q does not name the flag", err)
			}
		})
	}
}

func TestGateReservesOngoingWork(t *testing.T) {
	g, err := NewGate(Config{Limit: 4, Reserve: 1, RetryAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		class Class
		want  bool
	}{
		{New, true}, {New, true}, {New, true},
		{New, false},    // 3 in flight: the last slot is ongoing work's
		{Ongoing, true}, // takes the reserve
		{Ongoing, false},
	}
	for i, s := range steps {
		if _, got := g.TryAcquire(s.class); got != s.want {
			t.Fatalf("step %d (%v): admitted=%v, want %v", i, s.class, got, s.want)
		}
	}
	if g.InFlight() != 4 || g.Refused(New) != 1 || g.Refused(Ongoing) != 1 {
		t.Fatalf("inflight %d refused new %d ongoing %d", g.InFlight(), g.Refused(New), g.Refused(Ongoing))
	}
	g.Release(New, time.Time{})
	g.Release(New, time.Time{})
	if _, ok := g.TryAcquire(New); !ok {
		t.Fatal("new work refused with 2 of 4 in flight")
	}
}

func TestGateNeverExceedsLimit(t *testing.T) {
	g, _ := NewGate(Config{Limit: 5, Reserve: 0, RetryAfter: time.Second})
	var mu sync.Mutex
	peak, cur := 0, 0
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if _, ok := g.TryAcquire(Ongoing); !ok {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				g.Release(Ongoing, time.Time{})
			}
		}()
	}
	wg.Wait()
	if peak > 5 || g.InFlight() != 0 {
		t.Fatalf("peak %d (limit 5), left in flight %d", peak, g.InFlight())
	}
}

func TestAdmitWrapsOverloaded(t *testing.T) {
	g, _ := NewGate(Config{Limit: 1, RetryAfter: time.Second})
	ctx := WithClass(context.Background(), New)
	err := g.Admit(ctx, "outer", func(ctx context.Context) error {
		if ClassOf(ctx) != New {
			t.Errorf("class lost: %v", ClassOf(ctx))
		}
		return g.Admit(ctx, "inner", func(context.Context) error { return nil })
	})
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("nested Admit on a full gate = %v, want ErrOverloaded", err)
	}
	if g.InFlight() != 0 {
		t.Fatalf("%d left in flight", g.InFlight())
	}
}

// gatedServer is a one-method gRPC service whose Hold call blocks until
// released, to keep the gate full.
type gatedServer struct {
	entered chan struct{}
	release chan struct{}
}

func (g *gatedServer) hold(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return &emptypb.Empty{}, nil
}

var gatedDesc = grpc.ServiceDesc{
	ServiceName: "hexride.test.v1.Gated",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Hold",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(*gatedServer).hold(ctx, req.(*emptypb.Empty))
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/hexride.test.v1.Gated/Hold"}, h)
		},
	}},
}

// TestInterceptorOverGRPC fills the gate with a blocked call and shows,
// over a real socket, that the next call is refused at once with
// ResourceExhausted, a retry delay and reason OVERLOADED, while health
// checks are still answered.
func TestInterceptorOverGRPC(t *testing.T) {
	g, _ := NewGate(Config{Limit: 1, RetryAfter: 1500 * time.Millisecond})
	gs := &gatedServer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryServerInterceptor(g, NewMethods())))
	srv.RegisterService(&gatedDesc, gs)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-served }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		first <- cc.Invoke(ctx, "/hexride.test.v1.Gated/Hold", &emptypb.Empty{}, &emptypb.Empty{})
	}()
	<-gs.entered
	err = cc.Invoke(ctx, "/hexride.test.v1.Gated/Hold", &emptypb.Empty{}, &emptypb.Empty{})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("second call: %v, want ResourceExhausted", err)
	}
	var reason string
	var delay time.Duration
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			delay = d.GetRetryDelay().AsDuration()
		}
	}
	if reason != ReasonOverloaded || delay != 1500*time.Millisecond {
		t.Fatalf("refusal details: reason %q delay %v", reason, delay)
	}
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check refused while the gate is full: %v", err)
	}
	close(gs.release)
	if err := <-first; err != nil {
		t.Fatalf("held call: %v", err)
	}
	if g.InFlight() != 0 {
		t.Fatalf("%d left in flight", g.InFlight())
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestAdaptiveNewLimit drives the gate with New calls whose latency the
// test chooses: a standing queue (every call slow for a window) cuts the
// New limit to 90% of what is in flight; fast calls grow it back to its
// maximum. Ongoing work is never limited by it.
func TestAdaptiveNewLimit(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
	g, err := NewGate(Config{Limit: 200, Reserve: 50, RetryAfter: time.Second, Target: 500 * time.Millisecond, Window: time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if g.NewLimit() != 150 {
		t.Fatalf("initial New limit %d, want 150", g.NewLimit())
	}
	// 100 New calls in flight, all finishing slowly over a window.
	hold := func(n int) []time.Time {
		var starts []time.Time
		for range n {
			s, ok := g.TryAcquire(New)
			if !ok {
				break
			}
			starts = append(starts, s)
		}
		return starts
	}
	starts := hold(100)
	clk.advance(2 * time.Second)
	g.Release(New, starts[0]) // the window is over: judged on this call
	if got := g.NewLimit(); got != 90 {
		t.Fatalf("after a slow window the New limit is %d, want 90 (90%% of 100 in flight)", got)
	}
	// 99 still in flight: New work is refused, ongoing work is not.
	if _, ok := g.TryAcquire(New); ok {
		t.Fatal("New work admitted above the cut limit")
	}
	if s, ok := g.TryAcquire(Ongoing); !ok {
		t.Fatal("ongoing work refused by the New limit")
	} else {
		g.Release(Ongoing, s)
	}
	for _, s := range starts[1:] {
		g.Release(New, s)
	}
	// Fast calls: the limit grows back, a quarter per window, to 150.
	for range 10 {
		clk.advance(time.Second)
		s, ok := g.TryAcquire(New)
		if !ok {
			t.Fatal("New work refused with nothing in flight")
		}
		clk.advance(10 * time.Millisecond)
		g.Release(New, s) // ends a window of fast calls
	}
	if got := g.NewLimit(); got != 150 {
		t.Fatalf("after fast windows the New limit is %d, want back at 150", got)
	}
	// A slow call among fast ones in a window is no standing queue.
	slow, _ := g.TryAcquire(New)
	fast, _ := g.TryAcquire(New)
	clk.advance(10 * time.Millisecond)
	g.Release(New, fast)
	clk.advance(2 * time.Second)
	g.Release(New, slow)
	if got := g.NewLimit(); got != 150 {
		t.Fatalf("one slow call cut the limit to %d", got)
	}
}

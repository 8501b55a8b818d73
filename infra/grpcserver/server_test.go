package grpcserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"defaults", DefaultConfig("127.0.0.1:0"), nil},
		{"no address", DefaultConfig(""), ErrNoAddr},
		{"negative wait", func() Config { c := DefaultConfig("x:1"); c.DrainWait = -1; return c }(), ErrNegativeTimeout},
		{"negative window", func() Config { c := DefaultConfig("x:1"); c.StreamWindowBytes = -1; return c }(), ErrNegativeTimeout},
		{"dynamic windows", func() Config { c := DefaultConfig("x:1"); c.StreamWindowBytes, c.ConnWindowBytes = 0, 0; return c }(), nil},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestDrain: draining reports NOT_SERVING at once, signals stream handlers
// through Draining, and stops; a stream that ignores Draining (the health
// Watch here) is cut at StopTimeout.
func TestDrain(t *testing.T) {
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.DrainWait, cfg.StopTimeout = 300*time.Millisecond, time.Second
	s, err := New(cfg, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A health Watch is a server stream that never ends on its own.
	s.SetServing("test.Svc", true)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "test.Svc"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before drain: %v %v", r, err)
	}
	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: "test.Svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() { s.Drain(context.Background()); close(drained) }()
	// The watcher hears NOT_SERVING during the drain wait.
	r, err := watch.Recv()
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("during drain: %v %v", r, err)
	}
	select {
	case <-s.Draining():
	case <-time.After(5 * time.Second):
		t.Fatal("Draining never closed")
	}
	<-drained
	if err := <-served; err != nil {
		t.Fatalf("Serve after drain: %v", err)
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("after drain: %v", err)
	}
}

// TestHealthListener: the health-only listener answers the health service
// from the same statuses as the main listener, nothing else, reports
// NOT_SERVING through a drain and closes with the server.
func TestHealthListener(t *testing.T) {
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.HealthAddr = "127.0.0.1:0"
	cfg.DrainWait, cfg.StopTimeout = 300*time.Millisecond, time.Second
	s, err := New(cfg, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.HealthAddr() == "" || s.HealthAddr() == s.Addr() {
		t.Fatalf("health address %q, main %q", s.HealthAddr(), s.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	s.SetServing("test.Svc", true)
	cc, err := grpc.NewClient(s.HealthAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	health := healthpb.NewHealthClient(cc)
	ctx := context.Background()
	for _, name := range []string{"", "test.Svc"} {
		if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: name}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q): %v %v", name, r, err)
		}
	}
	s.SetServing("test.Svc", false)
	if r, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "test.Svc"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check after SetServing(false): %v %v", r, err)
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.Such"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Check of an unknown service: %v", err)
	}
	if r, err := health.List(ctx, &healthpb.HealthListRequest{}); err != nil || r.GetStatuses()["test.Svc"].GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("List: %v %v", r, err)
	}
	// Nothing but health: reflection (registered on the main listener) is
	// not there.
	err = cc.Invoke(ctx, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("reflection on the health listener: %v", err)
	}
	s.SetServing("test.Svc", true)
	watch, err := health.Watch(ctx, &healthpb.HealthCheckRequest{Service: "test.Svc"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	drained := make(chan struct{})
	go func() { s.Drain(context.Background()); close(drained) }()
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during drain: %v %v", r, err)
	}
	<-drained
	if err := <-served; err != nil {
		t.Fatalf("Serve after drain: %v", err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("watch after drain: %v", err)
	}
	if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("after drain: %v", err)
	}
}

// TestHealthListenerStopBeforeServe: a server stopped before it served
// (a process that failed to start) releases the health port.
func TestHealthListenerStopBeforeServe(t *testing.T) {
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.HealthAddr = "127.0.0.1:0"
	s, err := New(cfg, slog.New(slog.DiscardHandler), Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.HealthAddr()
	s.Stop()
	if err := s.Serve(); err != nil {
		t.Fatalf("Serve after Stop: %v", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("health port still held after Stop: %v", err)
	}
	lis.Close()
}

// TestHealthListenerBadAddr: New fails, naming the health listener.
func TestHealthListenerBadAddr(t *testing.T) {
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.HealthAddr = "127.0.0.1:99999"
	if _, err := New(cfg, slog.New(slog.DiscardHandler), Options{}); !errors.Is(err, ErrHealthListen) || !strings.Contains(err.Error(), cfg.HealthAddr) {
		t.Fatalf("err = %v, want one about the health listener", err)
	}
}

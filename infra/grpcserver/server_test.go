package grpcserver

import (
	"context"
	"log/slog"
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

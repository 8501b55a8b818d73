package consul_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hexride/hexride/infra/consul"
)

// How `hexride serve` wires discovery for one service: register with a gRPC
// health check, dial peers through consul://, watch the matching ring, and
// drain on shutdown.
func Example_serve() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	log := slog.Default()

	client, err := consul.NewAPIClient("") // CONSUL_HTTP_ADDR or 127.0.0.1:8500
	if err != nil {
		log.Error("consul client", "err", err)
		return
	}

	// Server side: health server + registration.
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	hs.SetServingStatus("hexride-matching", healthpb.HealthCheckResponse_SERVING)

	cfg := consul.DefaultRegistrationConfig("hexride-matching", "10.0.0.7", 7001)
	cfg.Region, cfg.Zone, cfg.Version = "eu-west-1", "eu-west-1a", "v0.1.0"
	cfg.Logger = log
	reg, err := consul.NewRegistrar(client.Agent(), cfg)
	if err != nil {
		log.Error("registration config", "err", err)
		return
	}
	go reg.Run(ctx) // registers, and re-registers on an agent that lost it

	// Client side: peers by name, round robin over passing instances.
	rcfg := consul.DefaultResolverConfig()
	rcfg.Health = client.Health()
	rcfg.Watch.Logger = log
	builder, err := consul.NewBuilder(rcfg)
	if err != nil {
		log.Error("resolver config", "err", err)
		return
	}
	opts := append(builder.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	trip, err := grpc.NewClient("consul:///hexride-trip", opts...)
	if err != nil {
		log.Error("dial trip", "err", err)
		return
	}
	defer trip.Close()

	// Matching ring membership.
	wcfg := consul.DefaultWatchConfig()
	wcfg.Logger = log
	watcher, err := consul.NewWatcher(client.Health(), wcfg)
	if err != nil {
		log.Error("watch config", "err", err)
		return
	}
	var ring consul.Membership = watcher
	go func() {
		for members := range ring.WatchService(ctx, "hexride-matching") {
			_ = members // recompute rendezvous owners from members (sorted by ID)
		}
	}()

	// Shutdown: leave discovery, NOT_SERVING, wait a check interval,
	// GracefulStop with a deadline.
	shutdown := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := reg.Deregister(dctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("consul deregister", "err", err)
		}
		hs.Shutdown() // every service NOT_SERVING
		time.Sleep(cfg.Check.Interval)
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
	}
	_ = shutdown
}

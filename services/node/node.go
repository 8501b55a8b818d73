package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	"github.com/hexride/hexride/infra/admission"
	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/infra/dial"
	"github.com/hexride/hexride/infra/grpcserver"
	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/telemetry"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/services/driver"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
	"github.com/hexride/hexride/services/rider"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// grpcNames are the gRPC service names each service serves (health
// statuses and Consul checks use them).
var grpcNames = map[string][]string{
	Rider:    {riderv1.RiderService_ServiceDesc.ServiceName},
	Driver:   {driverv1.DriverService_ServiceDesc.ServiceName, driverv1.DriverGatewayService_ServiceDesc.ServiceName},
	Matching: {matchingv1.MatchingService_ServiceDesc.ServiceName},
	Trip:     {tripv1.TripService_ServiceDesc.ServiceName},
}

// Node is a running process's set of services.
type Node struct {
	cfg       Config
	logger    *slog.Logger
	roads     *roads.Graph // the --roads graph, if loaded
	server    *grpcserver.Server
	advertise string

	runCtx     context.Context
	stopRun    context.CancelFunc
	loops      sync.WaitGroup
	served     chan error
	closers    []func()
	registrars []*consul.Registrar

	// Trips, Matching and Pool are the node's clients of its peers (the
	// console and tools reach the services through them).
	Trips    *tripclient.Client
	Matching *matchingclient.Client
	Pool     *dial.Pool
	// Telemetry holds the node's providers (its /metrics handler).
	Telemetry *telemetry.Providers
	// Engine is the matching engine when the node runs matching.
	Engine *matching.Engine
	// Gateway is the driver gateway when the node runs driver.
	Gateway *driver.Gateway

	shutdownOnce sync.Once
	http         *httpServer // the console's HTTP server (http.go); nil without HTTPAddr
	sec          *security
	consul       *consulClient   // nil with in-process discovery
	membership   ring.Membership // the matching workers, placed by the region map
}

// Start builds and starts the node; it returns once the listener serves
// and every service is registered.
func Start(ctx context.Context, cfg Config, logger *slog.Logger, opts ...Option) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	tel := o.telemetry
	if tel == nil {
		tel = telemetry.Disabled()
	}
	otelOpts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(tel.Tracer),
		otelgrpc.WithMeterProvider(tel.Meter),
		otelgrpc.WithPropagators(tel.Propagator),
	}
	sec, err := buildSecurity(ctx, cfg.Security, "hexride-"+strings.Join(cfg.Services, "+"), logger)
	if err != nil {
		return nil, err
	}
	scfg := grpcserver.DefaultConfig(cfg.Addr)
	scfg.DrainWait, scfg.StopTimeout = cfg.DrainWait, cfg.StopTimeout
	scfg.HealthAddr = cfg.HealthAddr
	// Admission after authentication and rate limits: a caller over its
	// own limit is told so, not that the server is full.
	gcfg := admission.WithLimit(cfg.MaxInFlight)
	gcfg.Target = cfg.OverloadLatency
	gate, err := admission.NewGate(gcfg)
	if err != nil {
		sec.close()
		return nil, fmt.Errorf("--max-inflight: %w", err)
	}
	unary := append(slices.Clone(sec.unary), admission.UnaryServerInterceptor(gate, newRideMethods))
	srv, err := grpcserver.New(scfg, logger, grpcserver.Options{
		UnaryInterceptors:  unary,
		StreamInterceptors: sec.stream,
		SkipValidation:     driver.StreamValidatedByHandler(),
		ServerOptions:      append([]grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...))}, sec.serverOpts...),
	})
	if errors.Is(err, grpcserver.ErrHealthListen) {
		err = fmt.Errorf("--health-addr: %w", err)
	}
	if err != nil {
		sec.close()
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger, server: srv, advertise: cfg.AdvertiseAddr, served: make(chan error, 1), Telemetry: tel, sec: sec}
	n.closers = append(n.closers, sec.close)
	if n.advertise == "" {
		n.advertise = srv.Addr()
	}
	n.runCtx, n.stopRun = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			srv.Stop()
			n.stopHTTP(context.Background())
			n.stopRun()
			n.loops.Wait()
			n.close()
		}
	}()

	dialOpts := append([]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...))}, sec.dialOpts...)
	pool := dial.NewPool(dialOpts...)
	n.closers = append(n.closers, func() { _ = pool.Close() })

	// Discovery: Consul, or this process for every peer.
	var (
		targetOf   func(service string) string
		resolveOps []grpc.DialOption
		membership ring.Membership
	)
	// Partitions are owned within the region the map homes them in (then
	// its fallbacks); this worker counts for its own --region.
	placement := matchingclient.Placement(cfg.RegionMap())
	self := ring.Member{ID: instanceID(Matching, n.advertise), Address: n.advertise, Region: cfg.Region}
	if cfg.ConsulAddr == "" {
		targetOf = func(string) string { return n.advertise }
		membership = ring.NewPlacedStatic(placement, self)
	} else {
		if n.consul, err = newConsulClient(cfg.ConsulAddr, logger); err != nil {
			return nil, err
		}
		resolveOps = n.consul.builder.DialOptions()
		targetOf = func(service string) string { return "consul:///" + ConsulName(service) }
		static := ring.NewPlacedStatic(placement)
		membership = static
		n.goLoop(func(ctx context.Context) {
			followMembers(ctx, n.consul.matchingMembership(ctx, cfg.Regions, cfg.Region, cfg.WANGrace), static)
		})
	}
	tripTarget, tripResolve := targetOf(Trip), resolveOps
	if n.consul != nil && cfg.Regions != nil {
		// The trip service in the own region first, then across the WAN
		// along the region's fallback chain (one datacenter per region).
		peers := consul.NewMembershipBuilder("hexride-peers", func(ctx context.Context) consul.Membership {
			return n.consul.peerMembership(ctx, cfg.Regions, cfg.Region, cfg.WANGrace)
		}, false, logger)
		tripTarget, tripResolve = "hexride-peers:///"+ConsulName(Trip), peers.DialOptions()
	}
	tripConn, err := grpc.NewClient(tripTarget, append(dialOpts, tripResolve...)...)
	if err != nil {
		return nil, fmt.Errorf("dial trip: %w", err)
	}
	n.closers = append(n.closers, func() { _ = tripConn.Close() })
	trips := tripclient.New(tripConn)
	n.membership = membership
	matchingClient := matchingclient.New(membership, pool, cfg.Topology.PartitionResolution)
	drivers := driverclient.New(pool)
	n.Trips, n.Matching, n.Pool = trips, matchingClient, pool

	reg := srv.Registrar()
	if cfg.Has(Trip) {
		var js jetstream.JetStream
		if cfg.NATSURL != "" {
			var closeNATS func()
			if js, closeNATS, err = connectNATS(cfg.NATSURL, instanceID(Trip, n.advertise), logger); err != nil {
				return nil, err
			}
			n.closers = append(n.closers, closeNATS)
		}
		st, closeStore, err := openStore(ctx, cfg, js, tel)
		if err != nil {
			return nil, err
		}
		n.closers = append(n.closers, closeStore)
		// Trips are homed by pickup through the region map, never by the
		// region of the gateway that took the request.
		topts := []trip.Option{trip.WithLogger(logger), trip.WithMeter(tel.Meter), trip.WithRegionMap(cfg.RegionMap())}
		if js != nil {
			relay, err := trip.NewRelay(st.(store.Outbox), js, trip.DefaultRelayConfig(instanceID(Trip, n.advertise)+"-"+uuid.NewString()[:8]), logger.With("service", Trip))
			if err != nil {
				return nil, err
			}
			n.goLoop(relay.Run)
			topts = append(topts, trip.WithEventStream(js))
		}
		ts, err := trip.NewServer(st, topts...)
		if err != nil {
			return nil, err
		}
		wd, err := trip.NewWatchdog(cfg.Watchdog, st, logger.With("service", Trip))
		if err != nil {
			return nil, err
		}
		n.goLoop(wd.Run)
		n.closers = append(n.closers, ts.Close)
		ts.Register(reg)
		// Watch streams end when the node drains (their clients re-watch
		// on another instance) instead of holding the graceful stop open.
		go func() { <-srv.Draining(); ts.Close() }()
	}
	roadNet, err := n.loadRoads()
	if err != nil {
		return nil, err
	}
	if cfg.Has(Matching) {
		mcfg := matching.DefaultConfig(self, cfg.Topology)
		mcfg.OfferTimeout = cfg.OfferTimeout
		mcfg.Mode, mcfg.BatchWindow = matching.DispatchMode(cfg.DispatchMode), cfg.BatchWindow
		mcfg.BatchFollowUp, mcfg.BatchCandidates = cfg.BatchFollowUp, cfg.BatchCandidates
		mcfg.BatchWindowMax = cfg.BatchWindowMax
		mcfg.BatchHoldPickup, mcfg.BatchHoldMax = cfg.BatchHoldPickup, cfg.BatchHoldMax
		mcfg.BatchLongPickup = cfg.BatchLongPickup
		mcfg.ChainWithin = cfg.ChainWithin
		mcfg.Index.TTL = cfg.DriverTTL
		mcfg.RecoveryInterval, mcfg.RecoveryAge = cfg.RecoveryInterval, cfg.RecoveryAge
		mcfg.Regions = cfg.RegionMap()
		engine, err := matching.NewEngine(mcfg, matching.Deps{
			Membership: membership, Peers: pool, Drivers: drivers, Trips: trips, Logger: logger.With("service", Matching), Roads: roadNet.roadETA(),
			Tracer: tel.Tracer, Meter: tel.Meter, Propagator: tel.Propagator,
		})
		if err != nil {
			return nil, err
		}
		matching.NewHandler(engine, srv.Draining()).Register(reg)
		n.Engine = engine
		n.goLoop(engine.Run)
	}
	if cfg.Has(Driver) {
		dcfg := driver.DefaultConfig(n.advertise)
		gw, err := driver.NewGateway(dcfg, matchingClient, trips, logger.With("service", Driver), driver.Telemetry{Meter: tel.Meter, Propagator: tel.Propagator})
		if err != nil {
			return nil, err
		}
		driver.NewHandler(gw, srv.Draining()).Register(reg)
		n.Gateway = gw
		n.goLoop(gw.Run)
	}
	if cfg.Has(Rider) {
		var opts []rider.PricingOption
		if roadNet != nil {
			opts = append(opts, rider.WithRoads(*roadNet))
		}
		pricing, err := rider.NewPricing(cfg.QuoteKey, cfg.QuoteTTL, opts...)
		if err != nil {
			return nil, err
		}
		rcfg := rider.DefaultConfig(cfg.Topology)
		rs, err := rider.New(rcfg, trips, matchingClient, drivers, pricing, logger.With("service", Rider), srv.Draining(), tel.Meter)
		if err != nil {
			return nil, err
		}
		rs.Register(reg)
	}

	go func() { n.served <- srv.Serve() }()
	for _, s := range cfg.Services {
		for _, name := range grpcNames[s] {
			srv.SetServing(name, true)
		}
	}
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	if n.consul != nil {
		if err := n.register(ctx, n.consul); err != nil {
			return nil, err
		}
	}
	logger.Info("node serving", "addr", srv.Addr(), "health_addr", srv.HealthAddr(), "advertise", n.advertise, "services", cfg.Services, "consul", cfg.ConsulAddr)
	return n, nil
}

// Addr is the address the node listens on.
func (n *Node) Addr() string { return n.server.Addr() }

// HealthAddr is the address of the plaintext health-only listener (with
// the real port), or "" without --health-addr.
func (n *Node) HealthAddr() string { return n.server.HealthAddr() }

// AdvertiseAddr is the address peers dial.
func (n *Node) AdvertiseAddr() string { return n.advertise }

// Done carries Serve's result when the server stops.
func (n *Node) Done() <-chan error { return n.served }

func (n *Node) goLoop(fn func(context.Context)) {
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		fn(n.runCtx)
	}()
}

func instanceID(service, advertise string) string { return ConsulName(service) + "-" + advertise }

func (n *Node) register(ctx context.Context, c *consulClient) error {
	host, portStr, err := net.SplitHostPort(n.advertise)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	for _, s := range n.cfg.Services {
		rc := consul.DefaultRegistrationConfig(ConsulName(s), host, port)
		rc.ID = instanceID(s, n.advertise)
		rc.Region, rc.Zone, rc.Version = n.cfg.Region, n.cfg.Zone, n.cfg.Version
		if addr := n.HTTPAddr(); addr != "" {
			// Where Prometheus (through the collector's Consul discovery)
			// scrapes this process.
			rc.Meta = map[string]string{"metrics": addr}
		}
		rc.Check.GRPCService = grpcNames[s][0]
		if n.cfg.Security.tls() {
			// The agent checks health over TLS without a client certificate
			// (health is exempt from authentication); it need not trust our CA.
			rc.Check.UseTLS, rc.Check.TLSSkipVerify = true, true
		}
		rc.Check.Interval = n.cfg.CheckInterval
		rc.Check.Timeout = max(n.cfg.CheckInterval/2, 500*time.Millisecond)
		rc.Logger = n.logger
		r, err := consul.NewRegistrar(c.api.Agent(), rc)
		if err != nil {
			return err
		}
		if err := r.Register(ctx); err != nil {
			return fmt.Errorf("register %s in consul: %w", s, err)
		}
		n.registrars = append(n.registrars, r)
		n.goLoop(func(ctx context.Context) { _ = r.Run(ctx) })
	}
	return nil
}

// Shutdown drains the node: leave Consul, report NOT_SERVING, wait for
// discovery to notice, stop taking calls and finish the running ones, then
// stop the engines and close the store. Safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) {
	n.shutdownOnce.Do(func() {
		n.stopHTTP(ctx)
		for _, r := range n.registrars {
			if err := r.Deregister(ctx); err != nil {
				n.logger.Warn("consul deregister failed", "id", r.ID(), "err", err)
			}
		}
		n.server.Drain(ctx)
		n.stopRun()
		n.loops.Wait()
		n.close()
		n.logger.Info("node stopped", "addr", n.advertise)
	})
}

func (n *Node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

// openStore opens the SQL store for dsn (with pgx spans and a retry
// counter), or an in-memory one. With the event stream (js), changes also
// go to the outbox and each commit nudges the relay.
func openStore(ctx context.Context, cfg Config, js jetstream.JetStream, tel *telemetry.Providers) (store.Store, func(), error) {
	dsn := cfg.DatabaseURL
	// Exported whatever the store, so dashboards and alerts always find it
	// (the in-memory store never retries).
	retries, err := tel.HexrideMeter().Int64Counter(telemetry.MetricDBTxRetries,
		metric.WithDescription("Transactions retried as a whole after a serialization failure (SQLSTATE 40001)."))
	if err != nil {
		return nil, nil, err
	}
	retries.Add(ctx, 0)
	if dsn == "" {
		if js != nil {
			return memstore.New(memstore.WithOutbox(), memstore.WithOutboxNotify(trip.NudgeRelay(js.Conn()))), func() {}, nil
		}
		return memstore.New(), func() {}, nil
	}
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("trip store DSN: %w", err)
	}
	pcfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tel.Tracer), otelpgx.WithMeterProvider(tel.Meter))
	if cfg.DBMaxConns > 0 {
		pcfg.MaxConns = int32(cfg.DBMaxConns)
	}
	// The pool's own queue is unbounded; the gate bounds it to
	// DBMaxWaiting callers beyond the connections, and keeps half of the
	// waiting room for rides in progress (their work cannot be given up:
	// a refused driver action is retried, a refused new trip is not).
	gate, err := admission.NewGate(admission.Config{
		Limit: int(pcfg.MaxConns) + cfg.DBMaxWaiting, Reserve: cfg.DBMaxWaiting / 2, RetryAfter: time.Second,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("--db-max-waiting: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open trip store: %w", err)
	}
	sopts := []sqlstore.Option{sqlstore.WithTxOptions(postgres.WithAdmission(gate), postgres.WithOnRetry(func(ctx context.Context, _ postgres.RetryInfo) {
		retries.Add(ctx, 1)
	}))}
	if js != nil {
		sopts = append(sopts, sqlstore.WithOutbox(), sqlstore.WithOutboxNotify(trip.NudgeRelay(js.Conn())))
	}
	st, err := sqlstore.New(ctx, pool, sopts...)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return st, pool.Close, nil
}

// connectNATS connects to the trip event stream's NATS server. The
// connection retries for ever (the relay backs off and catches up; watches
// resume): a NATS outage delays events, it does not stop the node.
// Publishes are not buffered while disconnected (the outbox is the
// buffer), so the relay learns at once that NATS is down.
func connectNATS(url, name string, log *slog.Logger) (jetstream.JetStream, func(), error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats: reconnected", "server", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("--nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("--nats: %w", err)
	}
	return js, nc.Close, nil
}

// newRideMethods are the calls that start a new ride: under load they are
// refused before work for rides in progress.
var newRideMethods = admission.NewMethods(
	riderv1.RiderService_RequestRide_FullMethodName,
	riderv1.RiderService_GetQuote_FullMethodName,
	tripv1.TripService_CreateTrip_FullMethodName,
)

// Option configures Start.
type Option func(*options)

type options struct {
	telemetry *telemetry.Providers
}

// WithTelemetry gives the node its trace and metric providers (default:
// no traces, metrics kept for /metrics only).
func WithTelemetry(p *telemetry.Providers) Option { return func(o *options) { o.telemetry = p } }

package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/telemetry"
	"github.com/hexride/hexride/services/node"
)

// envPrefix: every flag can also be set as HEXRIDE_<FLAG> (dashes become
// underscores); a flag on the command line wins.
const envPrefix = "HEXRIDE_"

// applyEnv sets each flag not given on the command line from its
// environment variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		key := envName(f.Name)
		if v := getenv(key); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	})
	return errors.Join(errs...)
}

// newLogger writes JSON logs at level to w.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	// Lines logged with a request's context carry its trace and span ids.
	return slog.New(telemetry.NewTraceHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))), nil
}

// roadsUsage documents --roads (serve and dev; dev's default differs).
var roadsUsage = "road graph for pickup ETAs, ranking and fares, loaded by matching and rider: a `FILE` made by hexride roads build, " +
	strings.Join(node.EmbeddedRoads(), " or ") + " (built in; map data © OpenStreetMap contributors, ODbL), or \"\" for none (straight-line estimates)"

// dispatchFlags binds how matching pairs requests with drivers (serve and
// dev).
func dispatchFlags(fs *flag.FlagSet, cfg *node.Config) {
	fs.StringVar(&cfg.DispatchMode, "dispatch-mode", cfg.DispatchMode, "how matching pairs requests with drivers: greedy (offer each trip to its best driver, one at a time) or batched (solve a window of requests and drivers together)")
	fs.DurationVar(&cfg.BatchWindow, "batch-window", cfg.BatchWindow, "with --dispatch-mode batched: how long a window gathers requests and drivers (1s to 3s)")
	fs.DurationVar(&cfg.BatchFollowUp, "batch-follow-up", cfg.BatchFollowUp, "with --dispatch-mode batched: how soon a request whose offer was declined or lapsed is solved again, without that driver (0: at the next full window; at most --batch-window)")
	fs.DurationVar(&cfg.BatchWindowMax, "batch-window-max", cfg.BatchWindowMax, "with --dispatch-mode batched: adaptive windows, from --batch-window for a lone request up to this with 20 or more requests open (0: every window is --batch-window; at most 3s)")
	fs.IntVar(&cfg.BatchCandidates, "batch-candidates", cfg.BatchCandidates, "with --dispatch-mode batched: how many nearest drivers a window ranks by road ETA per request")
	fs.DurationVar(&cfg.BatchHoldPickup, "batch-hold-pickup", cfg.BatchHoldPickup, "with --dispatch-mode batched: a request whose window plans a pickup this long or longer waits for the next window instead, for a nearer driver (0: off; needs --batch-hold-max)")
	fs.DurationVar(&cfg.BatchLongPickup, "batch-long-pickup", cfg.BatchLongPickup, "with --dispatch-mode batched: a pickup this long costs a window twice its seconds, so windows avoid the longest pickups (10s to 1h; 0: least total pickup time)")
	fs.DurationVar(&cfg.ChainWithin, "chain-within", cfg.ChainWithin, "chained supply: a driver whose ride ends within this (by road) may be offered its next trip near the dropoff, in either dispatch mode (0: off; up to 5m)")
	fs.DurationVar(&cfg.BatchHoldMax, "batch-hold-max", cfg.BatchHoldMax, "with --batch-hold-pickup: the longest a request is held from its arrival (two --batch-window to 10s)")
}

// regionMapUsage documents --region-map (serve and dev).
const regionMapUsage = "JSON `FILE` saying which region homes which area (H3 cells per region, a primary for the rest of the world, a fallback per region; see infra/deploy/README.md); --region must be one of its regions. Empty: the single region --region homes everything"

// loadRegionMap reads and validates --region-map into cfg.Regions (after
// --partition-res is final: the cells are checked against it). No file
// leaves cfg.Regions nil: the single region --region.
func loadRegionMap(path string, cfg *node.Config) error {
	if path == "" {
		return nil
	}
	if err := cfg.Topology.Validate(); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: --region-map: %w", dispatch.ErrInvalidRegionMap, err)
	}
	m, err := dispatch.ParseRegionMap(data, cfg.Topology.PartitionResolution)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cfg.Regions = m
	return nil
}

// nodeFlags binds the flags that configure a node.
func nodeFlags(fs *flag.FlagSet, cfg *node.Config, services, quoteKey, logLevel, regionMap *string) {
	fs.StringVar(services, "services", strings.Join(node.AllServices, ","), "comma-separated services to run: rider,driver,matching,trip")
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "gRPC listen address")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise", "", "address peers dial (default: the listen address)")
	fs.StringVar(&cfg.ConsulAddr, "consul", "", "Consul agent HTTP address (empty: in-process discovery)")
	fs.StringVar(&cfg.DatabaseURL, "db", "", "trip store DSN, postgres:// (empty: in-memory)")
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS server(s) with JetStream for the trip event stream, nats://host:port[,…] (empty: no stream; watches poll the database)")
	fs.StringVar(&cfg.Region, "region", cfg.Region, "region of this process")
	fs.StringVar(&cfg.Zone, "zone", cfg.Zone, "zone of this process")
	fs.StringVar(regionMap, "region-map", "", regionMapUsage)
	top := &cfg.Topology
	fs.IntVar(&top.PartitionResolution, "partition-res", top.PartitionResolution, "H3 resolution of matching partitions (same on every process)")
	fs.IntVar(&top.IndexResolution, "index-res", top.IndexResolution, "H3 resolution drivers are indexed at (same on every process)")
	fs.IntVar(&top.SurgeResolution, "surge-res", top.SurgeResolution, "H3 resolution of surge cells, between --partition-res and --index-res (same on every process)")
	fs.DurationVar(&cfg.OfferTimeout, "offer-timeout", cfg.OfferTimeout, "how long a driver has to answer an offer")
	fs.DurationVar(&top.DispatchDeadline, "dispatch-deadline", top.DispatchDeadline, "how long a request looks for a driver")
	dispatchFlags(fs, cfg)
	fs.DurationVar(&cfg.DriverTTL, "driver-ttl", cfg.DriverTTL, "drop drivers silent for longer")
	fs.DurationVar(&cfg.CheckInterval, "check-interval", cfg.CheckInterval, "Consul health check interval")
	fs.DurationVar(&cfg.WANGrace, "wan-grace", cfg.WANGrace, "with --region-map and one Consul datacenter per region: how long another region's datacenter may be unreachable (and 2 failed queries) before its matching workers count as gone")
	fs.DurationVar(&cfg.RecoveryInterval, "recovery-interval", cfg.RecoveryInterval, "how often matching re-dispatches orphaned requests")
	fs.DurationVar(&cfg.DrainWait, "drain-wait", cfg.DrainWait, "on shutdown, wait this long after leaving discovery")
	fs.DurationVar(&cfg.StopTimeout, "stop-timeout", cfg.StopTimeout, "then wait at most this long for calls in flight")
	fs.StringVar(quoteKey, "quote-key", "", "hex key (≥32 bytes) signing quotes; every rider instance must share it")
	fs.StringVar(logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.Roads, "roads", cfg.Roads, roadsUsage)
	fs.StringVar(&cfg.HealthAddr, "health-addr", "", "plaintext gRPC address serving only the health service (grpc.health.v1.Health, same statuses as --addr), for probes that cannot speak TLS such as the kubelet's; empty: none")
	fs.StringVar(&cfg.HTTPAddr, "http", "", "HTTP address for /metrics (and the console with --console); empty: none")
	fs.BoolVar(&cfg.Console, "console", false, "serve the dispatcher console on --http")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiles at /debug/pprof/ on --http (dispatcher or service token required)")
	sec := &cfg.Security
	fs.StringVar(&sec.JWKSFile, "jwks-file", "", "JWKS file with the keys that verify bearer tokens")
	fs.StringVar(&sec.JWKSURL, "jwks-url", "", "JWKS URL (https) with the keys that verify bearer tokens, refreshed periodically")
	fs.StringVar(&sec.Issuer, "jwt-issuer", "", "required token issuer (iss)")
	fs.StringVar(&sec.Audience, "jwt-audience", "", "required token audience (aud)")
	fs.StringVar(&sec.ServiceKeyDir, "service-key-dir", "", "signing key whose tokens identify this process to its peers (when no client certificate does)")
	fs.StringVar(&sec.CertFile, "tls-cert", "", "server certificate (PEM); TLS on every listener")
	fs.StringVar(&sec.KeyFile, "tls-key", "", "server certificate key (PEM)")
	fs.StringVar(&sec.CAFile, "tls-ca", "", "CA (PEM) verifying peers' certificates both ways")
	fs.StringVar(&sec.ClientCertFile, "tls-client-cert", "", "client certificate (PEM) naming this service (URI SAN spiffe://hexride/service/<name>): mutual TLS to peers")
	fs.StringVar(&sec.ClientKeyFile, "tls-client-key", "", "client certificate key (PEM)")
	fs.StringVar(&sec.ServerName, "tls-server-name", "hexride", "name peers' server certificates must carry")
	fs.BoolVar(&sec.RateLimit, "rate-limit", true, "limit riders, drivers and dispatchers per principal and RPC")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", cfg.MaxInFlight, "unary calls served at once; beyond, refused at once (ResourceExhausted + retry delay), new ride requests first")
	fs.DurationVar(&cfg.OverloadLatency, "overload-latency", cfg.OverloadLatency, "shed new ride requests while even the fastest takes longer than this (0: off)")
	fs.IntVar(&cfg.DBMaxConns, "db-max-conns", cfg.DBMaxConns, "trip store pool size (0: the DSN's pool_max_conns or pgx's default)")
	fs.IntVar(&cfg.DBMaxWaiting, "db-max-waiting", cfg.DBMaxWaiting, "trip store calls allowed to wait for a pool connection; beyond, refused at once")
	wd := &cfg.Watchdog
	fs.DurationVar(&wd.SilentDriver, "driver-silent-timeout", wd.SilentDriver, "a trip whose driver has not acted this long before pickup goes back to REQUESTED")
	fs.DurationVar(&wd.MaxTripDuration, "max-trip-duration", wd.MaxTripDuration, "a ride in progress with no change this long is cancelled (driver_unresponsive)")
	fs.DurationVar(&wd.Interval, "watchdog-interval", wd.Interval, "how often the trip watchdog looks for silent drivers")
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", summary("serve"), stderr)
	cfg := node.DefaultConfig()
	var services, quoteKey, logLevel, regionMap string
	nodeFlags(fs, &cfg, &services, &quoteKey, &logLevel, &regionMap)
	newTelemetry := telemetryFlags(fs, "hexride")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	cfg.Services = splitList(services)
	cfg.Version = version
	if err := loadRegionMap(regionMap, &cfg); err != nil {
		return err
	}
	if quoteKey != "" {
		key, err := hex.DecodeString(quoteKey)
		if err != nil {
			return fmt.Errorf("--quote-key: %w", err)
		}
		cfg.QuoteKey = key
	}
	logger, err := newLogger(stderr, logLevel)
	if err != nil {
		return err
	}
	cfg.Security.Audit = stderr
	if err := cfg.Validate(); err != nil {
		return err
	}
	tel, err := newTelemetry(ctx, "hexride-"+strings.Join(cfg.Services, "+"))
	if err != nil {
		return err
	}
	defer shutdownTelemetry(ctx, tel)
	return runNode(ctx, cfg, logger, stdout, tel)
}

// runNode starts a node and drains it when ctx ends (SIGTERM, SIGINT).
func runNode(ctx context.Context, cfg node.Config, logger *slog.Logger, stdout io.Writer, tel *telemetry.Providers) error {
	n, err := node.Start(ctx, cfg, logger, node.WithTelemetry(tel))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "hexride serving %s on %s\n", strings.Join(cfg.Services, ","), n.Addr())
	select {
	case <-ctx.Done():
	case err := <-n.Done():
		if err != nil {
			return err
		}
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainWait+cfg.StopTimeout+5*time.Second)
	defer cancel()
	n.Shutdown(drainCtx)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/natsserver"
	"github.com/hexride/hexride/services/node"
	"github.com/hexride/hexride/services/sim"
	"github.com/hexride/hexride/services/trip"
)

// devCmd runs every service in one process on embedded defaults: in-memory
// trip store, in-process discovery, one matching worker owning every
// partition. No external service is needed.
func devCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", summary("dev"), stderr)
	cfg := node.DefaultConfig()
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7070", "gRPC listen address: plaintext (no TLS), so keep it on loopback; every call still needs a token signed by the dev key")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "dispatcher console (web + JSON API) listen address; empty disables it")
	fs.StringVar(&cfg.Roads, "roads", node.EmbeddedPrefix+"wilmington", roadsUsage)
	withSim := fs.Bool("sim", false, "also run a simulated city against the platform: on the --roads graph's streets in real time (cars drive at road speed), or straight lines over San Francisco without one")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiles at /debug/pprof/ on --http")
	dispatchFlags(fs, &cfg)
	fs.StringVar(&cfg.Region, "region", cfg.Region, "region of this process (with --region-map: one of its regions)")
	regionMap := fs.String("region-map", "", regionMapUsage)
	simDrivers := fs.Int("sim-drivers", 150, "with --sim: simulated drivers")
	simRate := fs.Float64("sim-rate", 0.2, "with --sim: ride requests per second")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	newTelemetry := telemetryFlags(fs, "hexride-dev")
	keyDir := devKeyFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	if err := devAddrCheck(cfg.Addr); err != nil {
		return err
	}
	if err := cfg.ValidateDispatch(); err != nil {
		return err
	}
	if err := loadRegionMap(*regionMap, &cfg); err != nil {
		return err
	}
	if err := cfg.ValidateRegions(); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Version = version
	// Auth as in production: tokens signed by a local development key that
	// hexride token and hexride sim find in the same directory.
	key, err := auth.LoadOrCreateDevKey(*keyDir)
	if err != nil {
		return err
	}
	cfg.Security = node.Security{
		JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience,
		ServiceKeyDir: key.Dir, RateLimit: true,
	}
	// On loopback the console acts as its own dispatcher without a login.
	cfg.Console, cfg.ConsoleOpen = cfg.HTTPAddr != "", true
	cfg.QuoteKey = make([]byte, 32)
	if _, err := rand.Read(cfg.QuoteKey); err != nil {
		return err
	}
	tel, err := newTelemetry(ctx, "")
	if err != nil {
		return err
	}
	defer shutdownTelemetry(ctx, tel)
	// The trip event stream: an embedded NATS server (JetStream, loopback,
	// a random port, a temporary store) so nothing external is needed.
	bus, err := natsserver.Start(natsserver.Options{})
	if err != nil {
		return err
	}
	defer bus.Close()
	cfg.NATSURL = bus.URL()
	n, err := node.Start(ctx, cfg, logger, node.WithTelemetry(tel))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "hexride dev: all services on %s (plaintext: loopback only; JWT auth enforced, dev key in %s)\n", n.Addr(), key.Dir)
	if addr := n.HTTPAddr(); addr != "" {
		fmt.Fprintf(stdout, "dispatcher console: http://%s/\n", addr)
	}
	fmt.Fprintf(stdout, "trip event stream: %s (subjects %s; hexride events tail --nats %s)\n", bus.URL(), trip.SubjectAll, bus.URL())
	fmt.Fprintln(stdout, "development tokens (12 h; mint more with: hexride token --role R --sub ID):")
	for _, p := range []auth.Principal{{Role: auth.RoleRider, Subject: "rider-1"}, {Role: auth.RoleDriver, Subject: "driver-1"}, {Role: auth.RoleDispatcher, Subject: "dispatcher-1"}} {
		tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, p.Role, p.Subject, 12*time.Hour, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  %-10s %s\n", p.Role, tok)
	}
	simCmd := "go run ./cmd/hexride sim --target " + n.Addr() + " --duration 30s"
	if def, err := auth.DefaultDevKeyDir(); err != nil || def != key.Dir {
		simCmd += " --key-dir " + key.Dir
	}
	fmt.Fprintf(stdout, "simulate a city:\n  %s\n", simCmd)

	simDone := make(chan struct{})
	if *withSim {
		scfg := sim.DefaultConfig()
		scfg.RiderTargets, scfg.DriverTargets = []string{n.Addr()}, []string{n.Addr()}
		scfg.Drivers, scfg.Rate = *simDrivers, *simRate
		if scfg.City, scfg.Roads, err = simCity("", cfg.Roads); err != nil {
			return err
		}
		if scfg.Roads != nil {
			// Real time on the streets, rides of a few kilometres: what the
			// console shows is a city, not a fast-forward.
			scfg.TripRadius = 3000
		}
		if scfg.Credentials, err = sim.DevCredentials(key); err != nil {
			return err
		}
		scfg.Duration = 24 * time.Hour
		go func() {
			defer close(simDone)
			if _, err := sim.Run(ctx, scfg); err != nil {
				logger.Error("simulator stopped", "err", err)
			}
		}()
	} else {
		close(simDone)
	}
	select {
	case <-ctx.Done():
	case err := <-n.Done():
		if err != nil {
			return err
		}
	}
	<-simDone
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainWait+cfg.StopTimeout+5*time.Second)
	defer cancel()
	n.Shutdown(drainCtx)
	return nil
}

// devAddrCheck refuses a wildcard listen address: dev's services dial each
// other at the listen address, and dev has no --advertise. It says what to
// do instead.
func devAddrCheck(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dev: --addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("dev: --addr %q listens on every interface, but dev's services dial each other at the listen address: "+
			"give one dialable address (e.g. --addr 127.0.0.1:7070, or this host's own IP to reach dev from another machine: plaintext, tokens still required); "+
			"for a deployment use hexride serve, which has --advertise and TLS", addr)
	}
	return nil
}

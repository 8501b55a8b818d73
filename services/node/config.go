// Package node runs any subset of the hexride services in one process: one
// gRPC listener with health and reflection (plus, with HealthAddr, a
// plaintext one serving health alone), discovery through Consul (or
// in-process when no Consul address is given, for `hexride dev`), the trip
// store (SQL or in-memory), and a drain on shutdown that leaves without
// failing client calls.
package node

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/trip"
)

// Service names, as --services takes them.
const (
	Rider    = "rider"
	Driver   = "driver"
	Matching = "matching"
	Trip     = "trip"
)

// AllServices lists every service.
var AllServices = []string{Rider, Driver, Matching, Trip}

// ConsulName is a service's name in Consul.
func ConsulName(service string) string { return "hexride-" + service }

// Config configures a node.
type Config struct {
	// Services to run.
	Services []string
	// Addr is the gRPC listen address.
	Addr string
	// AdvertiseAddr is what peers dial; empty means the listen address
	// (which then must not be a wildcard).
	AdvertiseAddr string
	// ConsulAddr is the Consul agent's HTTP address; empty means in-process
	// discovery (every service this node needs must run in it).
	ConsulAddr string
	// CheckInterval is the Consul health-check interval.
	CheckInterval time.Duration
	// WANGrace (--wan-grace): with a region map and one Consul datacenter
	// per region (named as the region), matching workers are watched in
	// every region's datacenter; one that cannot be reached for this long
	// (and at least two failed queries) counts as having no passing worker,
	// so its partitions go to its fallback.
	WANGrace time.Duration
	// DatabaseURL is the trip store's DSN; empty means in-memory.
	DatabaseURL string
	// NATSURL is the NATS server (JetStream on) of the trip event stream
	// (--nats): the trip service relays its outbox there and its watches
	// read it. Empty: no stream; watches poll the store's event log. Every
	// trip instance sharing a database must use the same setting.
	NATSURL string
	// Region and Zone tag registrations; Region must be a region of
	// Regions.
	Region, Zone string
	// Regions is the region map (--region-map): which region homes which
	// area, so where a trip is homed and which region's matching workers
	// own a partition. nil (no --region-map): the single region Region
	// homes the whole world, as before region maps; every process of such
	// a deployment must then share one --region.
	Regions *dispatch.RegionMap
	// Version is reported in Consul metadata.
	Version string
	// Topology (partition, index and surge resolutions, dispatch deadline)
	// is built once and handed to every service the node runs; every
	// process of a deployment must use the same.
	Topology dispatch.Topology
	// OfferTimeout is how long a driver has to answer an offer.
	OfferTimeout time.Duration
	// DispatchMode is how matching pairs requests with drivers
	// (--dispatch-mode): "greedy" (an offer cascade per trip) or "batched"
	// (windows of BatchWindow solved together, --batch-window).
	DispatchMode string
	BatchWindow  time.Duration
	// BatchFollowUp is how soon a batched request whose offer was
	// declined or lapsed is solved again (--batch-follow-up; 0: at the
	// next full window); BatchCandidates how many nearest drivers a
	// window ranks per request (--batch-candidates).
	BatchFollowUp   time.Duration
	BatchCandidates int
	// BatchWindowMax above BatchWindow makes windows adaptive, from
	// BatchWindow (a lone request) to BatchWindowMax under load
	// (--batch-window-max; 0: fixed windows).
	BatchWindowMax time.Duration
	// BatchHoldPickup and BatchHoldMax: a batched request planned a pickup
	// of BatchHoldPickup or longer waits for the next window, up to
	// BatchHoldMax since it arrived (--batch-hold-pickup,
	// --batch-hold-max; 0: off).
	BatchHoldPickup, BatchHoldMax time.Duration
	// BatchLongPickup: a batched window counts a pickup this long twice
	// (--batch-long-pickup; 0: off).
	BatchLongPickup time.Duration
	// ChainWithin: drivers whose ride ends within this are offered their
	// next trip (chained supply, --chain-within; 0: off).
	ChainWithin time.Duration
	// DriverTTL drops silent drivers from the index.
	DriverTTL time.Duration
	// RecoveryInterval and RecoveryAge tune the re-dispatch sweep.
	RecoveryInterval time.Duration
	RecoveryAge      time.Duration
	// DrainWait is how long a draining node stays up after leaving
	// discovery; StopTimeout bounds the graceful stop after it.
	DrainWait   time.Duration
	StopTimeout time.Duration
	// QuoteKey signs quotes; every rider instance must share it.
	QuoteKey []byte
	// QuoteTTL is how long a quote locks its fare.
	QuoteTTL time.Duration
	// HealthAddr, when set, is a second gRPC listen address serving only
	// the health service (grpc.health.v1.Health) in plaintext, with the
	// same statuses as Addr, for probes that cannot speak TLS (the
	// kubelet's gRPC probe; --health-addr). Empty: none.
	HealthAddr string
	// HTTPAddr is the HTTP listen address for /metrics and, with Console,
	// the dispatcher console; empty means no HTTP.
	HTTPAddr string
	// Console serves the dispatcher console on HTTPAddr. It asks every
	// request for a dispatcher's token unless ConsoleOpen (development on
	// loopback: it then acts as its own dispatcher identity).
	Console     bool
	ConsoleOpen bool
	// Pprof serves Go's profiles at /debug/pprof/ on HTTPAddr, for
	// dispatchers' and services' tokens only (off by default).
	Pprof bool
	// Security: authentication, TLS, rate limits, audit.
	Security Security
	// MaxInFlight bounds the unary calls the process serves at once
	// (--max-inflight); beyond it calls are refused at once with
	// ResourceExhausted and a retry delay, new ride requests first (a
	// quarter is kept for rides in progress). Health checks are exempt.
	MaxInFlight int
	// OverloadLatency is the latency of new ride requests above which
	// the process counts as overloaded and sheds them (when even the
	// fastest in a second took longer; --overload-latency, 0: off).
	OverloadLatency time.Duration
	// DBMaxConns sizes the trip store's connection pool (--db-max-conns;
	// 0: the DSN's pool_max_conns, else pgx's default).
	DBMaxConns int
	// DBMaxWaiting bounds the store calls waiting for a pool connection
	// (--db-max-waiting); beyond it they are refused at once, new trips
	// first.
	DBMaxWaiting int
	// Watchdog resolves trips whose driver app went silent.
	Watchdog trip.WatchdogConfig
	// Roads is the road graph matching (pickup ETAs, ranking) and rider
	// (quote distance and duration) estimate with (--roads): a file built
	// by `hexride roads build`, "embedded:wilmington" for the graph built
	// into the binary, or empty for none (straight-line estimates).
	Roads string
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{
		Services:         slices.Clone(AllServices),
		Addr:             "127.0.0.1:7070",
		CheckInterval:    2 * time.Second,
		WANGrace:         3 * time.Second,
		Region:           "local",
		Zone:             "local-a",
		Version:          "dev",
		Topology:         dispatch.DefaultTopology(),
		OfferTimeout:     10 * time.Second,
		DispatchMode:     string(matching.ModeGreedy),
		BatchWindow:      matching.DefaultBatchWindow,
		BatchFollowUp:    matching.DefaultBatchFollowUp,
		BatchCandidates:  matching.DefaultBatchCandidates,
		BatchLongPickup:  matching.DefaultBatchLongPickup,
		DriverTTL:        30 * time.Second,
		RecoveryInterval: 3 * time.Second,
		RecoveryAge:      5 * time.Second,
		DrainWait:        3 * time.Second,
		StopTimeout:      10 * time.Second,
		QuoteTTL:         5 * time.Minute,
		MaxInFlight:      512,
		OverloadLatency:  500 * time.Millisecond,
		DBMaxWaiting:     64,
		Watchdog:         trip.DefaultWatchdogConfig(),
	}
}

// Config errors.
var (
	ErrNoServices     = errors.New("node: at least one service is required")
	ErrUnknownService = errors.New("node: unknown service")
	ErrBadAddr        = errors.New("node: bad address")
	ErrNeedsDiscovery = errors.New("node: without --consul every service this node calls must run in it")
	ErrBadDuration    = errors.New("node: durations must be positive")
	ErrShortQuoteKey  = errors.New("node: the quote key must be at least 32 bytes")
	ErrBadLimit       = errors.New("node: bad limit")
	ErrBadNATS        = errors.New("node: bad --nats")
	ErrBadRegion      = errors.New("node: bad --region")
)

// RegionMap is Regions, or the single-region map of Region when no
// --region-map was given.
func (c Config) RegionMap() *dispatch.RegionMap {
	if c.Regions != nil {
		return c.Regions
	}
	return dispatch.SingleRegionMap(c.Region)
}

// ValidateRegions checks --region against --region-map (and the map
// against --partition-res): a process in a region the map does not know
// would register and home trips where nothing routes.
func (c Config) ValidateRegions() error {
	m := c.RegionMap()
	if err := m.CheckPartitionResolution(c.Topology.PartitionResolution); err != nil {
		return err
	}
	if !m.Has(c.Region) {
		if c.Regions == nil {
			return fmt.Errorf("%w: --region=%q: %v", ErrBadRegion, c.Region, dispatch.ValidRegionName(c.Region))
		}
		return fmt.Errorf("%w: --region=%q is not a region of --region-map (its regions: %s)", ErrBadRegion, c.Region, strings.Join(m.Regions(), ", "))
	}
	return nil
}

// Has reports whether the node runs service.
func (c Config) Has(service string) bool { return slices.Contains(c.Services, service) }

// needs lists the services each service calls.
var needs = map[string][]string{
	Rider:    {Trip, Matching},
	Driver:   {Trip, Matching},
	Matching: {Trip, Driver},
	Trip:     nil,
}

// Validate reports the first problem.
func (c Config) Validate() error {
	if len(c.Services) == 0 {
		return ErrNoServices
	}
	for _, s := range c.Services {
		if !slices.Contains(AllServices, s) {
			return fmt.Errorf("%w %q (want %s)", ErrUnknownService, s, strings.Join(AllServices, ","))
		}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("%w: listen %q: %v", ErrBadAddr, c.Addr, err)
	}
	adv := c.advertise()
	host, _, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("%w: advertise %q: %v", ErrBadAddr, adv, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("%w: advertise %q is not dialable; set --advertise", ErrBadAddr, adv)
	}
	if c.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			return fmt.Errorf("%w: --health-addr %q: %v", ErrBadAddr, c.HealthAddr, err)
		}
	}
	if c.ConsulAddr == "" {
		for _, s := range c.Services {
			for _, dep := range needs[s] {
				if !c.Has(dep) {
					return fmt.Errorf("%w: %s calls %s", ErrNeedsDiscovery, s, dep)
				}
			}
		}
	}
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	if err := c.ValidateRegions(); err != nil {
		return err
	}
	if c.CheckInterval <= 0 || c.OfferTimeout <= 0 || c.DriverTTL <= 0 ||
		c.RecoveryInterval <= 0 || c.RecoveryAge <= 0 || c.DrainWait < 0 || c.StopTimeout <= 0 || c.QuoteTTL <= 0 || c.WANGrace < 0 {
		return ErrBadDuration
	}
	if err := c.ValidateDispatch(); err != nil {
		return err
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("%w: --max-inflight must be at least 1, got %d", ErrBadLimit, c.MaxInFlight)
	}
	if c.OverloadLatency < 0 {
		return fmt.Errorf("%w: --overload-latency must not be negative, got %v", ErrBadLimit, c.OverloadLatency)
	}
	if c.DBMaxConns < 0 || c.DBMaxConns > math.MaxInt32 {
		return fmt.Errorf("%w: --db-max-conns must be 0 (the DSN's or pgx's default) or positive, got %d", ErrBadLimit, c.DBMaxConns)
	}
	if c.DBMaxWaiting < 0 {
		return fmt.Errorf("%w: --db-max-waiting must not be negative, got %d", ErrBadLimit, c.DBMaxWaiting)
	}
	if c.Has(Trip) {
		if err := c.Watchdog.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrBadDuration, err)
		}
	}
	if c.NATSURL != "" {
		if err := validNATSURL(c.NATSURL); err != nil {
			return err
		}
	}
	if err := validateRoads(c.Roads); err != nil {
		return err
	}
	if c.Has(Rider) && len(c.QuoteKey) < 32 {
		return ErrShortQuoteKey
	}
	if err := c.Security.Validate(); err != nil {
		return err
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return fmt.Errorf("%w: http %q: %v", ErrBadAddr, c.HTTPAddr, err)
		}
	}
	if c.Pprof && c.HTTPAddr == "" {
		return fmt.Errorf("%w: --pprof needs an HTTP address (--http)", ErrBadAddr)
	}
	if c.Console {
		if c.HTTPAddr == "" {
			return fmt.Errorf("%w: the console needs an HTTP address", ErrBadAddr)
		}
		// Its own background work (the trip watch, snapshots) runs as a
		// dispatcher with tokens it mints.
		if !c.Security.DevHeader && c.Security.ServiceKeyDir == "" {
			return fmt.Errorf("%w: the console needs --service-key-dir to act for its background work", ErrNoServiceIDs)
		}
		// The console calls trip, matching and driver.
		for _, dep := range []string{Trip, Matching, Driver} {
			if c.ConsulAddr == "" && !c.Has(dep) {
				return fmt.Errorf("%w: the console calls %s", ErrNeedsDiscovery, dep)
			}
		}
	}
	return nil
}

// ValidateDispatch checks the dispatch mode and batch window, naming the
// flag at fault (dev checks them before it starts anything).
func (c Config) ValidateDispatch() error {
	if _, err := matching.ParseMode(c.DispatchMode); err != nil {
		return fmt.Errorf("--dispatch-mode: %w", err)
	}
	if err := matching.ValidateBatchWindow(c.BatchWindow); err != nil {
		return fmt.Errorf("--batch-window: %w", err)
	}
	if err := matching.ValidateBatchFollowUp(c.BatchFollowUp, c.BatchWindow); err != nil {
		return fmt.Errorf("--batch-follow-up: %w", err)
	}
	if err := matching.ValidateBatchWindowMax(c.BatchWindowMax, c.BatchWindow); err != nil {
		return fmt.Errorf("--batch-window-max: %w", err)
	}
	if c.BatchCandidates <= 0 {
		return fmt.Errorf("--batch-candidates: %d (want at least 1)", c.BatchCandidates)
	}
	if err := matching.ValidateBatchHold(c.BatchHoldPickup, c.BatchHoldMax, c.BatchWindow); err != nil {
		flag := "--batch-hold-max"
		if errors.Is(err, matching.ErrBadHoldPickup) {
			flag = "--batch-hold-pickup"
		}
		return fmt.Errorf("%s: %w", flag, err)
	}
	if err := matching.ValidateBatchLongPickup(c.BatchLongPickup); err != nil {
		return fmt.Errorf("--batch-long-pickup: %w", err)
	}
	if err := matching.ValidateChainWithin(c.ChainWithin); err != nil {
		return fmt.Errorf("--chain-within: %w", err)
	}
	return nil
}

// validNATSURL checks --nats: comma-separated nats://, tls://, ws:// or
// wss:// URLs with a host and port.
func validNATSURL(s string) error {
	for _, raw := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%w %q: %v", ErrBadNATS, raw, err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%w %q: the scheme must be nats://, tls://, ws:// or wss://", ErrBadNATS, raw)
		}
		if u.Hostname() == "" || u.Port() == "" {
			return fmt.Errorf("%w %q: want scheme://host:port", ErrBadNATS, raw)
		}
	}
	return nil
}

func (c Config) advertise() string {
	if c.AdvertiseAddr != "" {
		return c.AdvertiseAddr
	}
	return c.Addr
}

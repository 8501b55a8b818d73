package sim_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/roads/cities"
	"github.com/hexride/hexride/services/node"
	"github.com/hexride/hexride/services/sim"
)

// startPlatform runs every hexride service in one in-process node on a
// loopback port (in-memory trip store, in-process discovery), verifying
// development tokens signed by key as `hexride dev` does, and returns its
// address.
func startPlatform(t *testing.T, key *auth.DevKey, opts ...func(*node.Config)) string {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.OfferTimeout = 2 * time.Second
	cfg.Topology.DispatchDeadline = 8 * time.Second
	cfg.DrainWait = 0
	cfg.StopTimeout = 2 * time.Second
	cfg.QuoteKey = bytes.Repeat([]byte("k"), 32)
	cfg.Security = node.Security{
		JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience,
		ServiceKeyDir: key.Dir, Audit: io.Discard,
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n.Addr()
}

func devKey(t *testing.T) *auth.DevKey {
	t.Helper()
	key, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// quickConfig is a small, fast city: drives take a fraction of a second.
func quickConfig(t *testing.T, addr string, key *auth.DevKey) sim.Config {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.RiderTargets, cfg.DriverTargets = []string{addr}, []string{addr}
	creds, err := sim.DevCredentials(key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credentials = creds
	cfg.Drivers = 20
	cfg.Requests = 8
	cfg.Rate = 4
	cfg.Duration = 30 * time.Second // Requests ends the request phase first
	cfg.Grace = 45 * time.Second    // an upper bound: the run ends when every ride has
	cfg.LocationInterval = 250 * time.Millisecond
	cfg.DriveTime = 200 * time.Millisecond
	cfg.ReplyDelay = 50 * time.Millisecond
	cfg.Seed = 42
	return cfg
}

// runWithin runs the simulator, failing the test if it does not return in
// time (a hang, not a slow run: the bound is generous).
func runWithin(t *testing.T, ctx context.Context, cfg sim.Config) sim.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := sim.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatal("the run did not end on its own")
	}
	return s
}

// checkAccounting: every request ended exactly one way, and the platform
// never put a driver on two trips.
func checkAccounting(t *testing.T, s sim.Stats) {
	t.Helper()
	if ended := s.Completed + s.Cancelled + s.NoDriver + s.Lost + s.InFlight; ended != s.Requests {
		t.Errorf("completed %d + cancelled %d + no driver %d + lost %d + in flight %d = %d, want requests %d",
			s.Completed, s.Cancelled, s.NoDriver, s.Lost, s.InFlight, ended, s.Requests)
	}
	if s.InFlight != 0 {
		t.Errorf("%d rides still in flight after the run", s.InFlight)
	}
	if s.DoubleAssignments != 0 {
		t.Errorf("%d double assignments", s.DoubleAssignments)
	}
	if s.Matched > s.Requests || s.OffersAccepted+s.OffersDeclined > s.OffersReceived {
		t.Errorf("inconsistent counters: %+v", s)
	}
}

// TestRunAgainstPlatform drives a real in-process platform with dev tokens,
// as `hexride dev --sim` does: every request must end (none lost), some must
// be matched and completed, some cancelled by their riders while they wait,
// and nothing may fail.
func TestRunAgainstPlatform(t *testing.T) {
	key := devKey(t)
	addr := startPlatform(t, key)
	cfg := quickConfig(t, addr, key)
	cfg.AcceptProbability = 0.9
	// Riders cancel 0.5–2 s after requesting; the trip starts after two
	// drive legs, so most cancels land while the rider waits (and a late
	// one is refused, which is no error).
	cfg.RiderCancelProbability = 0.5
	cfg.DriveTime = 1200 * time.Millisecond

	var (
		mu       sync.Mutex
		returned bool
		progress []sim.Stats
	)
	cfg.Progress = func(s sim.Stats) {
		mu.Lock()
		defer mu.Unlock()
		if returned {
			t.Error("Progress called after Run returned")
		}
		progress = append(progress, s)
	}
	s := runWithin(t, context.Background(), cfg)
	mu.Lock()
	returned = true
	snapshots := progress
	mu.Unlock()
	t.Logf("summary: %+v (%d progress snapshots)", s, len(snapshots))

	if s.Requests != cfg.Requests {
		t.Errorf("requests %d, want %d", s.Requests, cfg.Requests)
	}
	if s.Matched == 0 || s.Completed == 0 {
		t.Errorf("matched %d, completed %d: want both > 0", s.Matched, s.Completed)
	}
	if s.Lost != 0 {
		t.Errorf("%d rides lost", s.Lost)
	}
	if s.Errors != 0 {
		t.Errorf("%d errors: %q", s.Errors, s.ErrorSamples)
	}
	if s.OffersReceived == 0 || s.OffersAccepted == 0 {
		t.Errorf("offers received %d, accepted %d: want both > 0", s.OffersReceived, s.OffersAccepted)
	}
	if s.LocationUpdates == 0 {
		t.Error("no location update was accepted")
	}
	if s.MatchP50MS <= 0 || s.MatchP99MS < s.MatchP50MS || s.OfferP99MS < s.OfferP50MS {
		t.Errorf("latencies: match p50 %v p99 %v, offer p50 %v p99 %v", s.MatchP50MS, s.MatchP99MS, s.OfferP50MS, s.OfferP99MS)
	}
	if s.PickupETAP50S <= 0 {
		t.Errorf("pickup ETA p50 %v s, want > 0", s.PickupETAP50S)
	}
	if s.Cancelled == 0 {
		t.Error("no rider cancelled")
	}
	reasons := 0
	for reason, n := range s.CancelReasons {
		if reason == "" || n <= 0 {
			t.Errorf("cancel reasons %v", s.CancelReasons)
		}
		reasons += n
	}
	if reasons != s.Cancelled {
		t.Errorf("cancel reasons %v add up to %d, want cancelled %d", s.CancelReasons, reasons, s.Cancelled)
	}
	checkAccounting(t, s)
	for _, p := range snapshots {
		if p.Requests > s.Requests || p.Matched > s.Matched || p.Completed > s.Completed {
			t.Errorf("a progress snapshot %+v is ahead of the summary", p)
		}
	}
}

// TestRunOnStreets drives a platform estimating on the Wilmington road
// graph with cars and riders on the same graph's streets (drive legs
// compressed to keep the test short; TestDriverOnStreets covers driving
// in real time): every ride ends, none lost, nothing fails, and the
// platform accepts the cars' samples along the roads.
func TestRunOnStreets(t *testing.T) {
	key := devKey(t)
	addr := startPlatform(t, key, func(c *node.Config) { c.Roads = node.EmbeddedPrefix + "wilmington" })
	cfg := quickConfig(t, addr, key)
	g, err := cities.Wilmington()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Roads = g
	cfg.City = sim.BBox{MinLat: 39.735, MinLng: -75.565, MaxLat: 39.755, MaxLng: -75.535} // downtown
	cfg.TripRadius = 1500
	cfg.LocationInterval = time.Second
	cfg.RiderCancelProbability = 0
	s := runWithin(t, context.Background(), cfg)
	t.Logf("summary: %+v", s)
	if s.Requests != cfg.Requests || s.Completed == 0 || s.Lost != 0 || s.Errors != 0 {
		t.Errorf("requests %d (want %d), completed %d, lost %d, errors %d %q", s.Requests, cfg.Requests, s.Completed, s.Lost, s.Errors, s.ErrorSamples)
	}
	if s.Pickups == 0 || s.PickupMeanS <= 0 {
		t.Errorf("pickups %d, drive mean %v s, p95 %v s", s.Pickups, s.PickupMeanS, s.PickupP95S)
	}
	if s.LocationUpdates == 0 || s.PickupETAP50S <= 0 {
		t.Errorf("location updates %d, quoted pickup ETA p50 %v s: want both > 0", s.LocationUpdates, s.PickupETAP50S)
	}
	checkAccounting(t, s)
}

// TestRunCountsRefusals: apps the platform refuses (here: development
// headers where tokens are required) show up as errors, never as rides.
func TestRunCountsRefusals(t *testing.T) {
	key := devKey(t)
	addr := startPlatform(t, key)
	cfg := quickConfig(t, addr, key)
	cfg.Credentials = sim.HeaderCredentials
	cfg.Drivers, cfg.Requests = 2, 3
	s := runWithin(t, context.Background(), cfg)
	if s.Requests != 0 || s.Matched != 0 || s.LocationUpdates != 0 {
		t.Errorf("refused apps still got somewhere: %+v", s)
	}
	if s.Errors < cfg.Requests {
		t.Errorf("errors %d, want at least one per request (%d)", s.Errors, cfg.Requests)
	}
	if len(s.ErrorSamples) == 0 || !strings.Contains(strings.Join(s.ErrorSamples, "\n"), "Unauthenticated") {
		t.Errorf("error samples %q, want Unauthenticated", s.ErrorSamples)
	}
	checkAccounting(t, s)
}

// TestRunStops: cancelling the run's context (Ctrl-C in `hexride sim`)
// ends it promptly; rides still open count as lost, and stopping is not an
// error.
func TestRunStops(t *testing.T) {
	key := devKey(t)
	addr := startPlatform(t, key)
	cfg := quickConfig(t, addr, key)
	cfg.Requests = 0 // unlimited until Duration
	cfg.Rate = 10
	cfg.Duration = time.Minute
	cfg.DriveTime = time.Minute // rides cannot finish before the stop
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stopped atomic.Bool
	cfg.Progress = func(s sim.Stats) {
		if s.Requests >= 3 && stopped.CompareAndSwap(false, true) {
			cancel()
		}
	}
	s := runWithin(t, ctx, cfg)
	if !stopped.Load() {
		t.Fatalf("the run ended before it was stopped: %+v", s)
	}
	if s.Requests < 3 {
		t.Errorf("requests %d, want ≥ 3", s.Requests)
	}
	if s.Completed != 0 {
		t.Errorf("%d rides completed despite minute-long drives", s.Completed)
	}
	if s.Lost == 0 {
		t.Errorf("no ride lost: %+v", s)
	}
	if s.Errors != 0 {
		t.Errorf("stopping counted %d errors: %q", s.Errors, s.ErrorSamples)
	}
	checkAccounting(t, s)
}

// TestRunCancelledBeforeStart returns at once, without requests and
// without errors, even with nothing listening at the targets.
func TestRunCancelledBeforeStart(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.RiderTargets, cfg.DriverTargets = []string{"127.0.0.1:1"}, []string{"127.0.0.1:1"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := runWithin(t, ctx, cfg)
	if s.Requests != 0 || s.Errors != 0 || s.Lost != 0 || s.InFlight != 0 {
		t.Errorf("a cancelled run measured %+v (errors %q)", s, s.ErrorSamples)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	base := sim.DefaultConfig()
	base.RiderTargets, base.DriverTargets = []string{"127.0.0.1:1"}, []string{"127.0.0.1:1"}
	tests := []struct {
		name   string
		mutate func(*sim.Config)
		want   error
	}{
		{"no targets", func(c *sim.Config) { c.RiderTargets = nil }, sim.ErrNoTargets},
		{"zero rate", func(c *sim.Config) { c.Rate = 0 }, sim.ErrBadConfig},
		{"infinite rate", func(c *sim.Config) { c.Rate = math.Inf(1) }, sim.ErrBadConfig},
		{"empty city", func(c *sim.Config) { c.City = sim.BBox{} }, sim.ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mutate(&cfg)
			s, err := sim.Run(context.Background(), cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run() error = %v, want %v", err, tt.want)
			}
			if s.Requests != 0 || s.Errors != 0 {
				t.Errorf("a refused run measured %+v", s)
			}
		})
	}
}

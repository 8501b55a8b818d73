package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/node"
	"github.com/hexride/hexride/services/sim"
)

// simCmd drives a deployment through its public APIs like a city of apps.
func simCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sim", summary("sim"), stderr)
	cfg := sim.DefaultConfig()
	target := fs.String("target", "127.0.0.1:7070", "gRPC address of rider and driver services (comma-separated for several)")
	riderTarget := fs.String("rider-target", "", "rider instances, if not --target")
	driverTarget := fs.String("driver-target", "", "driver instances, if not --target")
	fs.IntVar(&cfg.Drivers, "drivers", cfg.Drivers, "driver apps")
	fs.IntVar(&cfg.Requests, "riders", 0, "ride requests in all (0: as many as --rate and --duration give)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "ride requests per second")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long riders keep requesting")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "then how long to wait for rides in flight")
	city := fs.String("city", "", "where riders and drivers are: the --roads graph's area (default), sf (San Francisco, straight lines: give --roads \"\"), or bbox=minLat,minLng,maxLat,maxLng")
	roadsSpec := fs.String("roads", node.EmbeddedPrefix+"wilmington", "road graph the cars drive on and riders stand on: a file from hexride roads build, or one of "+strings.Join(node.EmbeddedRoads(), ", ")+` ("": straight lines over --city); give the platform the same graph`)
	fs.Float64Var(&cfg.TripRadius, "trip-radius", 0, "farthest a drop-off is from its pickup in metres, straight line (0: anywhere in the city)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	fs.Float64Var(&cfg.AcceptProbability, "accept", cfg.AcceptProbability, "probability a driver accepts an offer")
	fs.Float64Var(&cfg.RiderCancelProbability, "cancel", cfg.RiderCancelProbability, "probability a rider cancels while waiting")
	fs.DurationVar(&cfg.DriveTime, "drive-time", 3*time.Second, "wall-clock time of each simulated drive leg (0 on --roads: real time, cars drive each route at road speed and the drive to each pickup is measured against its quoted ETA)")
	fs.DurationVar(&cfg.RetryBudget, "retry-budget", cfg.RetryBudget, "how long an app retries one call through an outage (Unavailable, DeadlineExceeded, Aborted) before giving up")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object on the last line")
	compareList := fs.String("compare", "", compareUsage+"; e.g. "+compareModes)
	ratioList := fs.String("ratios", "1,1.1,1.5,4", "with --compare: drivers per request to compare at (requests = --drivers / ratio)")
	batch := dispatchSettings{window: matching.DefaultBatchWindow, followUp: matching.DefaultBatchFollowUp, candidates: matching.DefaultBatchCandidates, longPickup: matching.DefaultBatchLongPickup}
	fs.DurationVar(&batch.window, "batch-window", batch.window, "with --compare: the batched mode's window")
	fs.DurationVar(&batch.followUp, "batch-follow-up", batch.followUp, "with --compare: how soon the batched mode solves a declined or lapsed request again (0: at the next window)")
	fs.DurationVar(&batch.windowMax, "batch-window-max", 0, "with --compare: the batched mode's longest adaptive window (0: fixed windows)")
	fs.IntVar(&batch.candidates, "batch-candidates", batch.candidates, "with --compare: nearest drivers the batched mode ranks per request")
	fs.DurationVar(&batch.holdPickup, "batch-hold-pickup", 0, "with --compare: the batched mode holds a request planned a pickup this long or longer for the next window (0: off)")
	fs.DurationVar(&batch.longPickup, "batch-long-pickup", batch.longPickup, "with --compare: the batched mode counts a pickup this long twice (10s to 1h; 0: off)")
	fs.DurationVar(&batch.holdMax, "batch-hold-max", 0, "with --compare and --batch-hold-pickup: the longest a request is held from its arrival")
	fs.DurationVar(&batch.chainWithin, "chain-within", 2*time.Minute, "with --compare, for the modes named +chain: a driver whose ride ends within this is offered its next trip (up to 5m)")
	fs.BoolVar(&batch.realTime, "real-time", false, "with --compare: every leg is driven at road speed and drivers serve ride after ride (no hindsight rows); otherwise legs outlast the request phase, one ride per driver")
	keyDir := devKeyFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	if *compareList != "" {
		modes, err := parseModes(*compareList)
		if err != nil {
			return err
		}
		if !batch.realTime && slices.ContainsFunc(modes, func(m string) bool { return strings.HasSuffix(m, chainSuffix) }) {
			// Compressed legs end a ride long before the car gets to its
			// dropoff: a chained pickup's wait would mix both clocks.
			return fmt.Errorf("--compare %q: chained supply (+chain) needs --real-time", *compareList)
		}
		ratios, err := parseRatios(*ratioList)
		if err != nil {
			return err
		}
		if cfg.City, cfg.Roads, err = simCity(*city, *roadsSpec); err != nil {
			return err
		}
		runs, err := compare(ctx, cfg, *roadsSpec, modes, ratios, batch, stdout, stderr)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if r.hindsight != nil {
				continue
			}
			if err := simVerdict(r.stats); err != nil {
				return fmt.Errorf("%s at %.1f drivers per request: %w", r.mode, r.ratio, err)
			}
		}
		return nil
	}
	cfg.RiderTargets = splitList(*target)
	cfg.DriverTargets = cfg.RiderTargets
	if *riderTarget != "" {
		cfg.RiderTargets = splitList(*riderTarget)
	}
	if *driverTarget != "" {
		cfg.DriverTargets = splitList(*driverTarget)
	}
	// The apps' tokens: minted from the development key hexride dev left.
	key, err := auth.LoadDevKey(*keyDir)
	if err != nil {
		return fmt.Errorf("sim: no development key in %s (start hexride dev first, or pass --key-dir): %w", *keyDir, err)
	}
	if cfg.Credentials, err = sim.DevCredentials(key); err != nil {
		return err
	}
	if cfg.City, cfg.Roads, err = simCity(*city, *roadsSpec); err != nil {
		return err
	}
	cfg.Progress = func(s sim.Stats) {
		fmt.Fprintf(stderr, "\r%5.0fs requests %d matched %d completed %d cancelled %d no-driver %d in-flight %d errors %d match p50 %.0fms p99 %.0fms sim cpu %.2f cores%s ",
			s.ElapsedS, s.Requests, s.Matched, s.Completed, s.Cancelled, s.NoDriver, s.InFlight, s.Errors, s.MatchP50MS, s.MatchP99MS, s.SimCores, saturatedMark(s))
	}
	stats, err := sim.Run(ctx, cfg)
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		out, err := json.Marshal(stats)
		if err != nil {
			return err
		}
		if _, err = fmt.Fprintln(stdout, string(out)); err != nil {
			return err
		}
		return simVerdict(stats)
	}
	fmt.Fprintf(stdout, "requests %d, matched %d, completed %d, cancelled %d, no driver %d, lost %d, refused %d, errors %d\n",
		stats.Requests, stats.Matched, stats.Completed, stats.Cancelled, stats.NoDriver, stats.Lost, stats.Refused, stats.Errors)
	if stats.Refused > 0 {
		fmt.Fprintf(stdout, "refusals answered in p50 %.1f ms, p99 %.1f ms\n", stats.RefusedP50MS, stats.RefusedP99MS)
	}
	fmt.Fprintf(stdout, "status codes seen: %v\n", stats.Codes)
	fmt.Fprintf(stdout, "time to match p50 %.0f ms, p99 %.0f ms; pickup ETA p50 %.0f s; %d location updates (%.1f/s)\n",
		stats.MatchP50MS, stats.MatchP99MS, stats.PickupETAP50S, stats.LocationUpdates, stats.LocationUpdatesPS)
	if stats.Pickups > 0 {
		fmt.Fprintf(stdout, "drive to pickup mean %.0f s, p95 %.0f s over %d pickups; quoted ETA error median %+.1f %% (absolute %.1f %%)\n",
			stats.PickupMeanS, stats.PickupP95S, stats.Pickups, 100*stats.PickupETAErrorP50, 100*stats.PickupETAAbsErrorP50)
	}
	fmt.Fprintf(stdout, "simulator cpu %.1f s (%.2f cores)%s\n", stats.SimCPUS, stats.SimCores, saturatedMark(stats))
	return simVerdict(stats)
}

// simVerdict fails a run (after its summary is printed) in which no ride
// request was accepted or a ride was lost, so scripts can rely on the exit
// status.
func simVerdict(s sim.Stats) error {
	switch {
	case s.Lost > 0:
		return fmt.Errorf("sim: %d rides lost (requested, never resolved)", s.Lost)
	case s.Requests == 0:
		return fmt.Errorf("sim: no ride request succeeded (%d errors)", s.Errors)
	}
	return nil
}

// saturatedMark warns when the simulator itself was the bottleneck.
func saturatedMark(s sim.Stats) string {
	if !s.SimSaturated {
		return ""
	}
	return " SATURATED: the simulator, not the platform, limits these figures"
}

// simCity resolves --city and --roads: with a graph, the city defaults to
// its area and must lie on it.
func simCity(city, roadsSpec string) (sim.BBox, *roads.Graph, error) {
	g, err := node.LoadRoads(roadsSpec)
	if err != nil {
		return sim.BBox{}, nil, err
	}
	if city == "" {
		if g == nil {
			return sim.SanFrancisco, nil, nil
		}
		return sim.BBox(g.Bounds()), g, nil
	}
	box, err := parseCity(city)
	if err != nil || g == nil {
		return box, g, err
	}
	centre := roads.LatLng{Lat: (box.MinLat + box.MaxLat) / 2, Lng: (box.MinLng + box.MaxLng) / 2}
	if _, err := g.Snap(centre); err != nil {
		return sim.BBox{}, nil, fmt.Errorf("--city %q is not on the --roads graph %q (its roads are within %+v): give --roads \"\" for straight lines, or a graph of that city", city, roadsSpec, g.Bounds())
	}
	return box, g, nil
}

func parseCity(s string) (sim.BBox, error) {
	if s == "sf" {
		return sim.SanFrancisco, nil
	}
	spec, ok := strings.CutPrefix(s, "bbox=")
	if !ok {
		return sim.BBox{}, fmt.Errorf("--city %q: want sf or bbox=minLat,minLng,maxLat,maxLng", s)
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 4 {
		return sim.BBox{}, fmt.Errorf("--city %q: want four numbers", s)
	}
	var v [4]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return sim.BBox{}, fmt.Errorf("--city %q: %w", s, err)
		}
		v[i] = f
	}
	return sim.BBox{MinLat: v[0], MinLng: v[1], MaxLat: v[2], MaxLng: v[3]}, nil
}

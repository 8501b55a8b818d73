package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hexride/hexride/services/matching"
	"github.com/hexride/hexride/services/node"
	"github.com/hexride/hexride/services/sim"
)

// compareRun is one cell of `hexride sim --compare`: a dispatch mode at a
// ratio of drivers to requests, or (hindsight set) the ratio's requests
// solved in hindsight.
type compareRun struct {
	mode      string
	ratio     float64
	stats     sim.Stats
	hindsight *sim.Hindsight
}

// hindsightMode names the hindsight rows.
const hindsightMode = "hindsight"

// dispatchSettings are the dispatch settings for --compare: the batched
// mode's, chained supply's for the modes that name it, and whether rides
// run in real time.
type dispatchSettings struct {
	window, followUp, windowMax time.Duration
	holdPickup, holdMax         time.Duration
	longPickup                  time.Duration
	candidates                  int
	chainWithin                 time.Duration
	realTime                    bool
}

// chainSuffix turns chained supply on for a --compare mode.
const chainSuffix = "+chain"

// parseModes reads --compare: dispatch modes, each known to matching,
// each optionally with chained supply (greedy+chain).
func parseModes(s string) ([]string, error) {
	var modes []string
	for _, m := range splitList(s) {
		if _, err := matching.ParseMode(strings.TrimSuffix(m, chainSuffix)); err != nil {
			return nil, fmt.Errorf("--compare %q: %w", s, err)
		}
		modes = append(modes, m)
	}
	if len(modes) == 0 {
		return nil, fmt.Errorf("--compare %q: name at least one dispatch mode (greedy, batched)", s)
	}
	return modes, nil
}

// parseRatios reads --ratios: drivers per request, each > 0.
func parseRatios(s string) ([]float64, error) {
	var out []float64
	for _, f := range splitList(s) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--ratios %q: %q is not a positive number of drivers per request", s, f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--ratios %q: give at least one ratio", s)
	}
	return out, nil
}

// compare runs the same seeded city and demand through a platform in each
// dispatch mode (an in-process node per run, as hexride dev, on the given
// road graph), at each ratio of drivers to requests, and prints the
// results side by side, each ratio with what hindsight could have given
// its requests (sim.HindsightOf: what is left on the table). base holds
// the city, drivers, rate and seed; the request count is drivers / ratio,
// and each drive leg outlasts the request phase, so a driver serves at
// most one ride while requests arrive (what "drivers per request" means
// here), but for a ride's next trip (chained supply). With realTime each
// leg lasts its road time instead and drivers serve ride after ride.
// Hindsight rows need one ride per driver: none in real time or with
// more requests than drivers.
func compare(ctx context.Context, base sim.Config, roadsSpec string, modes []string, ratios []float64, batch dispatchSettings, stdout, stderr io.Writer) ([]compareRun, error) {
	var runs []compareRun
	for _, ratio := range ratios {
		cfg := base
		cfg.Requests = max(1, int(math.Round(float64(base.Drivers)/ratio)))
		phase := time.Duration(float64(cfg.Requests) / cfg.Rate * float64(time.Second))
		cfg.Duration = phase + time.Second
		cfg.DriveTime = max(phase/2, 3*time.Second)
		cfg.Grace = 3*cfg.DriveTime + 2*time.Minute
		if batch.realTime {
			// Cars drive every leg at road speed and serve ride after ride;
			// the last request is matched or given up within the dispatch
			// deadline (2 minutes), then driven to and ridden, and a
			// pickup across a city's one-way streets and highways can
			// take ten minutes (8 minutes of grace lost rides that way).
			cfg.DriveTime, cfg.Grace = 0, 15*time.Minute
		}
		// Riders wait: a rider cancelling a second in would count
		// against whichever mode had not matched yet (batched waits for
		// its window), which measures the rider, not the dispatch.
		cfg.RiderCancelProbability = 0
		for _, mode := range modes {
			fmt.Fprintf(stderr, "compare: %s at %.1f drivers per request: %d drivers, %d requests at %.1f/s\n", mode, ratio, cfg.Drivers, cfg.Requests, cfg.Rate)
			s, err := compareOne(ctx, cfg, roadsSpec, mode, batch)
			if err != nil {
				return runs, fmt.Errorf("compare %s at %.1f: %w", mode, ratio, err)
			}
			runs = append(runs, compareRun{mode: mode, ratio: ratio, stats: s})
		}
		if cfg.Roads == nil || batch.realTime || cfg.Requests > cfg.Drivers {
			continue // hindsight assigns one ride per driver
		}
		h, err := sim.HindsightOf(cfg)
		switch {
		case errors.Is(err, sim.ErrHindsightTooLarge):
			fmt.Fprintf(stderr, "compare: no hindsight at %.1f drivers per request: %v\n", ratio, err)
		case err != nil:
			return runs, fmt.Errorf("compare hindsight at %.1f: %w", ratio, err)
		default:
			runs = append(runs, compareRun{mode: hindsightMode, ratio: ratio, hindsight: &h})
		}
	}
	printCompare(stdout, runs)
	return runs, nil
}

// compareOne runs one platform and one simulation against it.
func compareOne(ctx context.Context, cfg sim.Config, roadsSpec, mode string, batch dispatchSettings) (sim.Stats, error) {
	ncfg := node.DefaultConfig()
	ncfg.Addr, ncfg.HTTPAddr = "127.0.0.1:0", ""
	ncfg.Roads = roadsSpec
	base, chained := strings.CutSuffix(mode, chainSuffix)
	ncfg.DispatchMode, ncfg.BatchWindow = base, batch.window
	if chained {
		ncfg.ChainWithin = batch.chainWithin
	}
	ncfg.BatchFollowUp, ncfg.BatchCandidates = batch.followUp, batch.candidates
	ncfg.BatchWindowMax = batch.windowMax
	ncfg.BatchHoldPickup, ncfg.BatchHoldMax = batch.holdPickup, batch.holdMax
	ncfg.BatchLongPickup = batch.longPickup
	if err := ncfg.ValidateDispatch(); err != nil {
		return sim.Stats{}, err
	}
	ncfg.DrainWait, ncfg.StopTimeout = 0, 5*time.Second
	ncfg.Security.DevHeader = true // apps send the development principal header
	ncfg.QuoteKey = make([]byte, 32)
	if _, err := rand.Read(ncfg.QuoteKey); err != nil {
		return sim.Stats{}, err
	}
	n, err := node.Start(ctx, ncfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return sim.Stats{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(sctx)
	}()
	cfg.RiderTargets, cfg.DriverTargets = []string{n.Addr()}, []string{n.Addr()}
	cfg.Credentials = nil
	return sim.Run(ctx, cfg)
}

// printCompare prints the runs as a table, a row per ratio and mode, and
// the ratio's hindsight row after its modes.
func printCompare(w io.Writer, runs []compareRun) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "drivers/request\tmode\trequests\tmatched %\tpickup mean s\tp95 s\tp99 s\tmatch p50 ms\tp99 ms\toffers/trip\ttrips/driver CV\t")
	for _, r := range runs {
		if h := r.hindsight; h != nil {
			fmt.Fprintf(tw, "%.1f\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t—\t—\t—\t—\t\n",
				r.ratio, r.mode, h.Requests, 100*float64(h.Matched)/float64(max(h.Requests, 1)), h.PickupMeanS, h.PickupP95S, h.PickupP99S)
			continue
		}
		s := r.stats
		matched, offers := 0.0, 0.0
		if s.Requests > 0 {
			matched = 100 * float64(s.Matched) / float64(s.Requests)
			offers = float64(s.OffersReceived) / float64(s.Requests)
		}
		fmt.Fprintf(tw, "%.1f\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f\t%.2f\t\n",
			r.ratio, r.mode, s.Requests, matched, s.PickupMeanS, s.PickupP95S, s.PickupP99S, s.MatchP50MS, s.MatchP99MS, offers, s.TripsPerDriverCV)
	}
	_ = tw.Flush()
	for _, r := range runs {
		if h := r.hindsight; h != nil {
			fmt.Fprintf(w, "hindsight at %.1f: the drivers where they start, every request known at once; no assignment of them has a pickup p99 under %.1f s (a lower bound)\n", r.ratio, h.PickupP99FloorS)
		}
	}
	for _, r := range runs {
		if s := r.stats; s.ChainedTrips > 0 {
			fmt.Fprintf(w, "%s at %.1f: drivers finishing a ride took %d next trips (chained supply); %d of %d requests matched\n", r.mode, r.ratio, s.ChainedTrips, s.Matched, s.Requests)
		}
	}
	for _, r := range runs {
		if s := r.stats; s.NoDriver+s.Cancelled+s.Lost+s.Errors > 0 {
			fmt.Fprintf(w, "%s at %.1f: no driver %d %v, cancelled %d %v, lost %d, errors %d\n",
				r.mode, r.ratio, s.NoDriver, s.NoDriverReasons, s.Cancelled, s.CancelReasons, s.Lost, s.Errors)
		}
	}
}

// compareUsage explains --compare in the flag list.
const compareUsage = "run the same seeded city and demand through an in-process platform in each dispatch mode (comma-separated: greedy,batched, each optionally +chain for chained supply, see --chain-within) at each --ratios, and print them side by side (--target is not used)"

// compareModes is the flag's default list, for the usage text.
var compareModes = strings.Join([]string{string(matching.ModeGreedy), string(matching.ModeBatched)}, ",")

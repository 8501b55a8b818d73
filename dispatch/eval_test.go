package dispatch_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/roads/cities"
)

// The evaluation below compares greedy (each request takes the best of its
// K nearest free drivers on arrival) with batched dispatch (requests wait
// for the end of a window, then the window is solved exactly) on the
// embedded Wilmington road graph. It is pure and seeded: no clock, no
// goroutines, the same figures every run. Drivers always accept and never
// come back, so it measures the matching alone: drivers per request is the
// whole run's supply over its demand.

// wilmingtonRoads adapts the embedded graph to dispatch.RoadETA (as the
// services' adapter does; dispatch itself never imports roads).
type wilmingtonRoads struct{ g *roads.Graph }

func (w wilmingtonRoads) DriveTimesTo(from []geo.LatLng, headings []float64, to geo.LatLng) ([]time.Duration, []float64, error) {
	pts := make([]roads.LatLng, len(from))
	for i, p := range from {
		pts[i] = roads.LatLng(p)
	}
	return w.g.DriveTimesFacing(pts, headings, roads.LatLng(to))
}

var wilmington = sync.OnceValues(func() (*roads.Graph, error) { return cities.Wilmington() })

// evalRequest is a ride request of the evaluation.
type evalRequest struct {
	id     string
	at     time.Duration // arrival, from the start
	pickup geo.LatLng
}

// evalCity is one seeded scenario.
type evalCity struct {
	requests []evalRequest
	drivers  []dispatch.Driver
}

// newEvalCity places requests (arriving at rate per second) and drivers
// (ratio per request) on roads of central Wilmington.
func newEvalCity(t *testing.T, g *roads.Graph, seed uint64, requests int, rate, ratio float64) evalCity {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 4))
	onRoad := func() geo.LatLng {
		for {
			p := geo.LatLng{Lat: 39.725 + rng.Float64()*0.055, Lng: -75.595 + rng.Float64()*0.075}
			if _, err := g.Snap(roads.LatLng(p)); err == nil {
				return p
			}
		}
	}
	var c evalCity
	at := time.Duration(0)
	for i := range requests {
		at += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		c.requests = append(c.requests, evalRequest{id: fmt.Sprintf("r%04d", i), at: at, pickup: onRoad()})
	}
	for i := range int(math.Round(ratio * float64(requests))) {
		c.drivers = append(c.drivers, dispatch.Driver{ID: fmt.Sprintf("d%04d", i), Pos: onRoad(), Heading: math.NaN(), Status: dispatch.StatusAvailable})
	}
	return c
}

// evalResult is one mode's figures on one city.
type evalResult struct {
	matched int
	pickups []float64 // seconds from request to pickup (wait + drive)
	drives  []float64 // seconds of drive alone
}

func (r evalResult) mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(max(len(xs), 1))
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

const (
	evalK      = 5     // candidates per request, as the live worker's
	evalRadius = 10000 // metres
)

// options ranks the K nearest free drivers of a pickup by road ETA.
func options(sc *dispatch.ETAScorer, free map[string]dispatch.Driver, order []string, pickup geo.LatLng) []dispatch.Ranked {
	var cs []dispatch.Candidate
	for _, id := range order {
		d, ok := free[id]
		if !ok {
			continue
		}
		if dist := geo.Distance(pickup, d.Pos); dist <= evalRadius {
			cs = append(cs, dispatch.Candidate{Driver: d, Distance: dist})
		}
	}
	slices.SortStableFunc(cs, func(a, b dispatch.Candidate) int { return cmp.Compare(a.Distance, b.Distance) })
	cs = cs[:min(len(cs), evalK)]
	return sc.Rank(dispatch.RankRequest{Pickup: pickup, At: time.Unix(0, 0)}, cs)
}

func freeDrivers(c evalCity) (map[string]dispatch.Driver, []string) {
	free := make(map[string]dispatch.Driver, len(c.drivers))
	order := make([]string, len(c.drivers))
	for i, d := range c.drivers {
		free[d.ID], order[i] = d, d.ID
	}
	return free, order
}

// runGreedy: each request, on arrival, takes its best option.
func runGreedy(sc *dispatch.ETAScorer, c evalCity) evalResult {
	free, order := freeDrivers(c)
	var res evalResult
	for _, r := range c.requests {
		opts := options(sc, free, order, r.pickup)
		if len(opts) == 0 {
			continue
		}
		best := opts[0]
		delete(free, best.ID)
		res.matched++
		res.pickups = append(res.pickups, best.Score)
		res.drives = append(res.drives, best.Score)
	}
	return res
}

// runBatched: windows of w; at each window's end the open requests (new
// and left over) are solved exactly against the free drivers; a request
// left over for longer than deadline gives up.
func runBatched(t *testing.T, sc *dispatch.ETAScorer, c evalCity, w, deadline time.Duration) evalResult {
	free, order := freeDrivers(c)
	var res evalResult
	var open []evalRequest
	next := 0
	for end := w; next < len(c.requests) || len(open) > 0; end += w {
		for ; next < len(c.requests) && c.requests[next].at < end; next++ {
			open = append(open, c.requests[next])
		}
		reqs := make([]dispatch.BatchRequest, len(open))
		for i, r := range open {
			reqs[i] = dispatch.BatchRequest{TripID: r.id, Options: dispatch.BatchOptionsFromRanked(options(sc, free, order, r.pickup))}
		}
		plan, err := dispatch.AssignBatch(reqs, dispatch.DefaultBatchConfig())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]dispatch.Assignment{}
		for _, a := range plan.Assignments {
			got[a.TripID] = a
		}
		kept := open[:0]
		for _, r := range open {
			a, ok := got[r.id]
			switch {
			case ok:
				delete(free, a.DriverID)
				res.matched++
				res.pickups = append(res.pickups, (end-r.at).Seconds()+a.Cost)
				res.drives = append(res.drives, a.Cost)
			case end-r.at < deadline:
				kept = append(kept, r)
			}
		}
		open = kept
	}
	return res
}

// snapshot compares the two on one window's snapshot: requests open at
// once (greedy serves them in arrival order) and the free drivers then.
// Requests the exact solve leaves without any of their K options are
// solved again against the drivers still free (as the next window would),
// so both modes match the same requests.
func snapshot(t *testing.T, sc *dispatch.ETAScorer, c evalCity) (greedy, batched evalResult) {
	greedy = runGreedy(sc, c)
	for i := range c.requests {
		c.requests[i].at = 0
	}
	batched = runBatched(t, sc, c, time.Millisecond, 100*time.Millisecond)
	return greedy, batched
}

// TestEvalGreedyVsBatched prints greedy against batched (2 s windows)
// pickup times at 1.0, 1.1, 1.5 and 4 drivers per request on the
// Wilmington roads, and checks the evaluation is reproducible and matches
// every request it can.
func TestEvalGreedyVsBatched(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("evaluation: run without -short and -race (single goroutine: nothing for the race detector, ten times slower under it)")
	}
	g, err := wilmington()
	if err != nil {
		t.Fatal(err)
	}
	cfg := dispatch.DefaultRankConfig()
	cfg.Roads = wilmingtonRoads{g}
	sc, err := dispatch.NewETAScorer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const (
		seed     = 15
		requests = 300
		window   = 2 * time.Second
	)
	var table strings.Builder
	const (
		snapRequests = 40
		snapSeeds    = 20
	)
	fmt.Fprintf(&table, "one window: %d requests open at once, seeds 1..%d; mean road ETA (s) of the matched, and total matched\n", snapRequests, snapSeeds)
	fmt.Fprintf(&table, "%-7s %12s %12s %8s %8s\n", "drv/req", "greedy ETA", "batched ETA", "greedy", "batched")
	for _, ratio := range []float64{1.0, 1.1, 1.5, 4} {
		var gd, bd []float64
		gm, bm := 0, 0
		for s := range uint64(snapSeeds) {
			c := newEvalCity(t, g, s+1, snapRequests, 1, ratio)
			greedy, batched := snapshot(t, sc, c)
			gd, bd = append(gd, greedy.drives...), append(bd, batched.drives...)
			gm, bm = gm+greedy.matched, bm+batched.matched
		}
		var r evalResult
		fmt.Fprintf(&table, "%-7.1f %12.1f %12.1f %8d %8d\n", ratio, r.mean(gd), r.mean(bd), gm, bm)
	}
	for _, rate := range []float64{2, 10} {
		fmt.Fprintf(&table, "\n%d requests at %.0f/s, K=%d, window %v, seed %d; pickup = wait for the window + road ETA (s)\n", requests, rate, evalK, window, seed)
		fmt.Fprintf(&table, "%-7s %-8s %7s %6s %6s %6s %10s\n", "drv/req", "mode", "matched", "mean", "p50", "p90", "drive mean")
		for _, ratio := range []float64{1.0, 1.1, 1.5, 4} {
			c := newEvalCity(t, g, seed, requests, rate, ratio)
			greedy := runGreedy(sc, c)
			batched := runBatched(t, sc, c, window, 2*time.Minute)
			if again := runBatched(t, sc, c, window, 2*time.Minute); !slices.Equal(again.pickups, batched.pickups) {
				t.Fatal("the batched evaluation is not reproducible")
			}
			for _, m := range []struct {
				name string
				r    evalResult
			}{{"greedy", greedy}, {"batched", batched}} {
				if m.r.matched != requests {
					t.Errorf("%s at %.1f drivers per request matched %d of %d", m.name, ratio, m.r.matched, requests)
				}
				fmt.Fprintf(&table, "%-7.1f %-8s %7d %6.1f %6.1f %6.1f %10.1f\n", ratio, m.name, m.r.matched,
					m.r.mean(m.r.pickups), quantile(m.r.pickups, 0.5), quantile(m.r.pickups, 0.9), m.r.mean(m.r.drives))
			}
		}
	}
	t.Log("\n" + table.String())
}

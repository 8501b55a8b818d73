package sim

import (
	"errors"
	"math"
	"testing"

	"github.com/hexride/hexride/roads"
)

// TestHindsightIsTheBestAssignment checks HindsightOf against brute force
// on small cities of the Wilmington roads: every way of giving the
// requests distinct drivers (or none), the most requests matched, then the
// least total drive. The drives come from the same seeded city a run
// draws (newCity), each the path a run's car would drive.
func TestHindsightIsTheBestAssignment(t *testing.T) {
	g := wilmington(t)
	for _, tc := range []struct {
		drivers, requests int
		seed              uint64
		hotSpots          float64
	}{
		{6, 4, 1, 0},
		{5, 5, 2, 0.5},
		{3, 5, 3, 0.5}, // more requests than drivers: two go unmatched
		{7, 6, 4, 1},
	} {
		cfg := validConfig()
		cfg.Roads, cfg.City = g, BBox(g.Bounds())
		cfg.Drivers, cfg.Requests, cfg.Seed, cfg.HotSpots = tc.drivers, tc.requests, tc.seed, tc.hotSpots
		got, err := HindsightOf(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// The oracle: drives pairwise, then every assignment.
		c := newCity(cfg)
		starts := make([]roads.LatLng, cfg.Drivers)
		for i := range starts {
			starts[i] = roads.LatLng(c.place(c.driverRand(i)))
		}
		drive := make([][]float64, cfg.Requests) // NaN: unreachable
		for n := range drive {
			pickup := roads.LatLng(c.nextRequest().pickup)
			drive[n] = make([]float64, cfg.Drivers)
			for i, s := range starts {
				path, err := g.Path(s, pickup) // as a run measures a pickup
				if err != nil {
					drive[n][i] = math.NaN()
					continue
				}
				drive[n][i] = path.Time().Seconds()
			}
		}
		bestMatched, bestTotal := -1, math.Inf(1)
		// leastWorst[m]: the least longest pickup of assignments matching
		// m requests (with at most 7 matched, p99 is the longest).
		leastWorst := map[int]float64{}
		used := make([]bool, cfg.Drivers)
		var walk func(n, matched int, total, worst float64)
		walk = func(n, matched int, total, worst float64) {
			if n == cfg.Requests {
				if matched > bestMatched || matched == bestMatched && total < bestTotal {
					bestMatched, bestTotal = matched, total
				}
				if w, ok := leastWorst[matched]; !ok || worst < w {
					leastWorst[matched] = worst
				}
				return
			}
			walk(n+1, matched, total, worst) // request n unmatched
			for i := range used {
				if !used[i] && !math.IsNaN(drive[n][i]) {
					used[i] = true
					walk(n+1, matched+1, total+drive[n][i], max(worst, drive[n][i]))
					used[i] = false
				}
			}
		}
		walk(0, 0, 0, 0)
		if got.Requests != tc.requests || got.Matched != bestMatched {
			t.Errorf("%+v: %d of %d matched, brute force %d", tc, got.Matched, got.Requests, bestMatched)
			continue
		}
		// Drives are whole milliseconds on the graph; the mean is rounded
		// to a nanosecond.
		if total := got.PickupMeanS * float64(got.Matched); math.Abs(total-bestTotal) > 1e-3*float64(got.Matched) {
			t.Errorf("%+v: total pickup %.3f s, brute force %.3f s", tc, total, bestTotal)
		}
		if got.PickupP99S < got.PickupP95S || got.PickupP95S*float64(got.Matched) < got.PickupMeanS {
			t.Errorf("%+v: percentiles out of order: %+v", tc, got)
		}
		// The p99 floor of so few pickups is the least longest pickup of
		// any assignment matching as many.
		if want := leastWorst[bestMatched]; math.Abs(got.PickupP99FloorS-want) > 1e-3 {
			t.Errorf("%+v: p99 floor %.3f s, brute force %.3f s", tc, got.PickupP99FloorS, want)
		}
	}
}

func TestHindsightErrors(t *testing.T) {
	cfg := validConfig()
	cfg.Requests = 10
	if _, err := HindsightOf(cfg); !errors.Is(err, ErrHindsightNeedsRoads) {
		t.Errorf("no roads: %v", err)
	}
	g := wilmington(t)
	cfg.Roads, cfg.City = g, BBox(g.Bounds())
	cfg.Requests = 0
	if _, err := HindsightOf(cfg); !errors.Is(err, ErrHindsightNeedsRoads) {
		t.Errorf("no request count: %v", err)
	}
	cfg.Requests, cfg.Drivers = 4001, 1000
	if _, err := HindsightOf(cfg); !errors.Is(err, ErrHindsightTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

package sim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/roads"
)

// Hindsight is what a dispatch knowing every request of a run in advance
// could give it: the run's requests and its drivers where they start,
// solved at once as one exact min-cost assignment of road drive times
// (the most requests matched, then the least total pickup). It measures
// what is left on the table: a live dispatch learns of a request only
// when it is made, while its cars cruise and some decline, so it is a
// reference, not a strict bound.
type Hindsight struct {
	Requests    int     `json:"requests"`
	Matched     int     `json:"matched"`
	PickupMeanS float64 `json:"pickup_mean_s"`
	PickupP95S  float64 `json:"pickup_p95_s"`
	PickupP99S  float64 `json:"pickup_p99_s"`
	// PickupP99FloorS is a lower bound on the p99 pickup of any
	// assignment matching as many requests to the drivers where they
	// start: fewer than p99's rank of requests can have distinct drivers
	// under it. (The assignment above minimises the total, not the tail;
	// live cars cruise, so a live run can see other supply.)
	PickupP99FloorS float64 `json:"pickup_p99_floor_s"`
}

// Limits of HindsightOf: each request keeps its hindsightOptions nearest
// drivers by road (as a live window keeps its nearest few), and a run
// of more than maxHindsightPairs driver–request pairs is not solved.
const (
	hindsightOptions  = 50
	maxHindsightPairs = 4_000_000
)

// Errors of HindsightOf.
var (
	ErrHindsightNeedsRoads = errors.New("sim: hindsight needs a road graph and a request count")
	ErrHindsightTooLarge   = fmt.Errorf("sim: hindsight solves at most %d driver–request pairs", maxHindsightPairs)
)

// HindsightOf solves cfg's city (Drivers, Requests, Seed, City, HotSpots,
// TripRadius, Roads: what the draws depend on) in hindsight. Riders who
// would cancel are solved too.
func HindsightOf(cfg Config) (Hindsight, error) {
	if cfg.Roads == nil || cfg.Requests <= 0 {
		return Hindsight{}, ErrHindsightNeedsRoads
	}
	if cfg.Drivers*cfg.Requests > maxHindsightPairs {
		return Hindsight{}, ErrHindsightTooLarge
	}
	c := newCity(cfg)
	starts := make([]roads.LatLng, cfg.Drivers)
	for i := range starts {
		starts[i] = roads.LatLng(c.place(c.driverRand(i)))
	}
	reqs := make([]dispatch.BatchRequest, cfg.Requests)
	all := make([][]reach, cfg.Requests) // every reachable driver, for the floor
	for n := range reqs {
		req := c.nextRequest()
		times, _, err := cfg.Roads.DriveTimesTo(starts, roads.LatLng(req.pickup))
		if err != nil {
			return Hindsight{}, fmt.Errorf("sim: hindsight of request %d: %w", n, err)
		}
		for i, t := range times {
			if t >= 0 {
				all[n] = append(all[n], reach{driver: i, seconds: t.Seconds()})
			}
		}
		slices.SortStableFunc(all[n], func(a, b reach) int { return cmp.Compare(a.seconds, b.seconds) })
		opts := make([]dispatch.BatchOption, min(len(all[n]), hindsightOptions))
		for k := range opts {
			opts[k] = dispatch.BatchOption{DriverID: strconv.Itoa(all[n][k].driver), Cost: all[n][k].seconds}
		}
		reqs[n] = dispatch.BatchRequest{TripID: strconv.Itoa(n), Options: opts}
	}
	plan, err := dispatch.AssignBatch(reqs, dispatch.BatchConfig{MaxExact: len(reqs)})
	if err != nil {
		return Hindsight{}, fmt.Errorf("sim: hindsight: %w", err)
	}
	drives := make([]time.Duration, len(plan.Assignments))
	for i, a := range plan.Assignments {
		drives[i] = time.Duration(a.Cost * float64(time.Second))
	}
	h := Hindsight{Requests: cfg.Requests, Matched: len(drives)}
	h.PickupMeanS, h.PickupP95S, h.PickupP99S = pickupSummary(drives)
	if len(drives) > 0 {
		h.PickupP99FloorS = tailFloor(all, cfg.Drivers, nearestRank(99, len(drives)))
	}
	return h, nil
}

// reach is a driver's drive to a pickup.
type reach struct {
	driver  int // index of the driver
	seconds float64
}

// tailFloor is the least T such that rank requests can have distinct
// drivers each within T (each request's reaches sorted by drive): with
// nearest-rank percentiles, no assignment has its rank-th smallest
// pickup, the percentile, under it. A binary search over the drives,
// each step a maximum matching by augmenting paths.
func tailFloor(reaches [][]reach, drivers, rank int) float64 {
	var costs []float64
	for _, rs := range reaches {
		for _, r := range rs {
			costs = append(costs, r.seconds)
		}
	}
	slices.Sort(costs)
	costs = slices.Compact(costs)
	matches := func(limit float64) int {
		owner := make([]int, drivers) // driver → request+1 (0: free)
		var seen []bool
		var augment func(n int) bool
		augment = func(n int) bool {
			for _, r := range reaches[n] {
				if r.seconds > limit {
					break // sorted: the rest take longer
				}
				if seen[r.driver] {
					continue
				}
				seen[r.driver] = true
				if owner[r.driver] == 0 || augment(owner[r.driver]-1) {
					owner[r.driver] = n + 1
					return true
				}
			}
			return false
		}
		count := 0
		for n := range reaches {
			seen = make([]bool, drivers)
			if augment(n) {
				count++
			}
		}
		return count
	}
	lo, hi := 0, len(costs)-1
	if hi < 0 || rank <= 0 || matches(costs[hi]) < rank {
		return 0
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if matches(costs[mid]) >= rank {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return costs[lo]
}

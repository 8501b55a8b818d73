package node

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/roads/cities"
)

// roadSeed is the oracle's seed: random, or HEXRIDE_ROADS_SEED to rerun.
func roadSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HEXRIDE_ROADS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HEXRIDE_ROADS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with HEXRIDE_ROADS_SEED=%d)", seed, seed)
	return seed
}

// TestRoadRankingOracle ranks K=5 random drivers within 4 km of random
// Wilmington pickups with the road-network scorer (through this package's
// adapter, as matching runs it) and checks its first candidate against an
// oracle: the road-fastest of the K by K independent point-to-point Route
// queries. Drivers are drawn where drivers are, on the road network (within
// the snap distance of a road): there the ranking must agree with the
// oracle in ≥ 99% of draws (it should be all). A second run draws drivers
// anywhere in the graph's box, some off the network (the river, parks),
// whose straight-line fallback can beat every road time; its figure is
// printed, not asserted. Both print how often the straight-line scorer
// agrees with the oracle, and how far the quoted pickup ETA (computed as
// GetQuote computes it: the smallest ETA of the nearby drivers) is from the
// dispatched driver's road time, with and without the network.
func TestRoadRankingOracle(t *testing.T) {
	g, err := cities.Wilmington()
	if err != nil {
		t.Fatal(err)
	}
	rank := dispatch.DefaultRankConfig()
	straight, err := dispatch.NewETAScorer(rank)
	if err != nil {
		t.Fatal(err)
	}
	rank.Roads = roadNetwork{g: g}
	byRoad, err := dispatch.NewETAScorer(rank)
	if err != nil {
		t.Fatal(err)
	}
	seed := roadSeed(t)
	onRoad := rankingOracle(t, g, byRoad, straight, rand.New(rand.NewPCG(seed, 1)), true)
	if onRoad < 0.99 {
		t.Fatalf("drivers on the network: the road ranking's first is the road-fastest in %.2f%% of draws, want ≥ 99%%", 100*onRoad)
	}
	rankingOracle(t, g, byRoad, straight, rand.New(rand.NewPCG(seed, 2)), false)
}

// rankingOracle runs the draws of TestRoadRankingOracle and returns the
// fraction in which the road ranking's first is the road-fastest.
func rankingOracle(t *testing.T, g *roads.Graph, byRoad, straight *dispatch.ETAScorer, rng *rand.Rand, driversOnRoads bool) float64 {
	t.Helper()
	box := cities.WilmingtonBBox
	const draws, k, radius = 2000, 5, 4000.0
	at := time.Unix(1_800_000_000, 0)
	var (
		roadHits, straightHits int
		allOn, allOnHits       int
		offNetwork             int
		roadErr, straightErr   []float64
	)
	inBox := func(p geo.LatLng) bool {
		return p.Lat >= box.MinLat && p.Lat <= box.MaxLat && p.Lng >= box.MinLng && p.Lng <= box.MaxLng
	}
	onNetwork := func(p geo.LatLng) bool {
		_, err := g.Snap(roads.LatLng(p))
		return err == nil
	}
	for d := 0; d < draws; {
		pickup := geo.LatLng{Lat: box.MinLat + rng.Float64()*(box.MaxLat-box.MinLat), Lng: box.MinLng + rng.Float64()*(box.MaxLng-box.MinLng)}
		if !onNetwork(pickup) {
			continue // a pickup off the network has no road answer to check
		}
		d++
		cands := make([]dispatch.Candidate, k)
		oracle := make([]time.Duration, k) // Unreachable stays -1
		for i := range cands {
			// Drivers are where the graph covers (a deployment loads the
			// graph of the area it serves).
			pos := geo.Destination(pickup, rng.Float64()*360, radius*math.Sqrt(rng.Float64()))
			for !inBox(pos) || (driversOnRoads && !onNetwork(pos)) {
				pos = geo.Destination(pickup, rng.Float64()*360, radius*math.Sqrt(rng.Float64()))
			}
			cands[i] = dispatch.Candidate{
				Driver:   dispatch.Driver{ID: "d" + strconv.Itoa(i), Pos: pos, Heading: math.NaN()},
				Distance: geo.Distance(pos, pickup),
			}
			oracle[i] = roads.Unreachable
			if dur, _, err := g.Route(roads.LatLng(pos), roads.LatLng(pickup)); err == nil {
				oracle[i] = dur
			} else if !errors.Is(err, roads.ErrTooFarFromRoad) {
				t.Fatal(err)
			}
		}
		best := time.Duration(math.MaxInt64)
		on := true
		for _, o := range oracle {
			if o < 0 {
				on = false
				offNetwork++
				continue
			}
			best = min(best, o)
		}
		if best == math.MaxInt64 {
			continue // no candidate on the network: nothing to compare
		}
		idx := func(r dispatch.Ranked) int {
			return slices.IndexFunc(cands, func(c dispatch.Candidate) bool { return c.ID == r.ID })
		}
		rr := byRoad.Rank(dispatch.RankRequest{Pickup: pickup, At: at}, cands)
		sr := straight.Rank(dispatch.RankRequest{Pickup: pickup, At: at}, cands)
		firstRoad, firstStraight := idx(rr[0]), idx(sr[0])
		hit := oracle[firstRoad] == best
		if hit {
			roadHits++
		}
		if oracle[firstStraight] == best {
			straightHits++
		}
		if on {
			allOn++
			if hit {
				allOnHits++
			} else {
				t.Errorf("pickup %v: every candidate on the network, but the road ranking's first (%s, %v) is not the road-fastest (%v)", pickup, rr[0].ID, oracle[firstRoad], best)
			}
		}
		// The quote's pickup ETA: the smallest ETA matching reports for
		// the drivers near the pickup; the truth: the road time of the
		// driver dispatch would offer the trip to first.
		quoted := func(s *dispatch.ETAScorer) time.Duration {
			q := time.Duration(math.MaxInt64)
			for _, e := range s.Estimates(dispatch.RankRequest{Pickup: pickup, At: at}, cands) {
				q = min(q, e.Parts.ETA)
			}
			return q
		}
		rel := func(quote, actual time.Duration) float64 {
			return math.Abs(quote.Seconds()-actual.Seconds()) / math.Max(actual.Seconds(), 1)
		}
		if oracle[firstRoad] >= 0 {
			roadErr = append(roadErr, rel(quoted(byRoad), oracle[firstRoad]))
		}
		if oracle[firstStraight] >= 0 {
			straightErr = append(straightErr, rel(quoted(straight), oracle[firstStraight]))
		}
	}
	where := "drivers on the network"
	if !driversOnRoads {
		where = "drivers anywhere in the box"
	}
	t.Logf("%s: %d draws, K=%d within %.0f m; %d of %d candidates off the network (straight-line fallback)", where, draws, k, radius, offNetwork, draws*k)
	t.Logf("road ranking's first is the road-fastest: %d/%d = %.2f%% (every candidate on the network: %d/%d = %.2f%%)",
		roadHits, draws, 100*float64(roadHits)/draws, allOnHits, allOn, 100*float64(allOnHits)/float64(max(allOn, 1)))
	t.Logf("straight-line ranking's first is the road-fastest: %d/%d = %.2f%%", straightHits, draws, 100*float64(straightHits)/draws)
	t.Logf("quoted pickup ETA vs the dispatched driver's road time, relative error: road network median %.3f%% p90 %.3f%%; straight line median %.1f%% p90 %.1f%%",
		100*quantile(roadErr, 0.5), 100*quantile(roadErr, 0.9), 100*quantile(straightErr, 0.5), 100*quantile(straightErr, 0.9))
	return float64(roadHits) / draws
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// TestRoadsConfig: --roads takes "", an embedded graph or a file; anything
// else is refused naming the flag.
func TestRoadsConfig(t *testing.T) {
	dir := t.TempDir()
	g, err := cities.Wilmington()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "w.roads")
	if err := g.WriteFile(file); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.roads")
	if err := os.WriteFile(garbage, []byte("not a graph"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"", "embedded:wilmington", file} {
		cfg := DefaultConfig()
		cfg.QuoteKey = make([]byte, 32)
		cfg.Security.DevHeader = true
		cfg.Roads = spec
		if err := cfg.Validate(); err != nil {
			t.Errorf("--roads %q: %v", spec, err)
		}
		got, err := LoadRoads(spec)
		if err != nil || (got == nil) != (spec == "") {
			t.Errorf("load %q: %v, %v", spec, got, err)
		}
	}
	for _, spec := range []string{"embedded:gotham", filepath.Join(dir, "missing.roads"), dir} {
		cfg := DefaultConfig()
		cfg.QuoteKey = make([]byte, 32)
		cfg.Security.DevHeader = true
		cfg.Roads = spec
		if err := cfg.Validate(); !errors.Is(err, ErrBadRoads) || !contains(err.Error(), "--roads") {
			t.Errorf("--roads %q: %v, want ErrBadRoads naming the flag", spec, err)
		}
	}
	if _, err := LoadRoads(garbage); !errors.Is(err, ErrBadRoads) || !errors.Is(err, roads.ErrBadFile) {
		t.Errorf("load garbage: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

package dispatch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

// bruteAssign enumerates every assignment: most trips assigned, then least
// total cost.
func bruteAssign(reqs []BatchRequest) (int, float64) {
	bestN, bestCost := -1, math.Inf(1)
	used := map[string]bool{}
	var rec func(i, n int, cost float64)
	rec = func(i, n int, cost float64) {
		if i == len(reqs) {
			if n > bestN || (n == bestN && cost < bestCost) {
				bestN, bestCost = n, cost
			}
			return
		}
		rec(i+1, n, cost)
		for _, o := range reqs[i].Options {
			if !used[o.DriverID] {
				used[o.DriverID] = true
				rec(i+1, n+1, cost+o.Cost)
				used[o.DriverID] = false
			}
		}
	}
	rec(0, 0, 0)
	return bestN, bestCost
}

func TestAssignBatchOracle(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 100
	}
	for s := 0; s < runs; s++ {
		seed := uint64(s)
		rng := rand.New(rand.NewPCG(seed, 99))
		nReq, nDrv := 1+rng.IntN(6), 1+rng.IntN(7)
		reqs := make([]BatchRequest, nReq)
		for i := range reqs {
			reqs[i].TripID = fmt.Sprint("t", i)
			for j := 0; j < nDrv; j++ {
				if rng.IntN(3) > 0 {
					reqs[i].Options = append(reqs[i].Options, BatchOption{DriverID: fmt.Sprint("d", j), Cost: float64(rng.IntN(20))})
				}
			}
		}
		res, err := AssignBatch(reqs, DefaultBatchConfig())
		if err != nil {
			t.Fatal(err)
		}
		wantN, wantCost := bruteAssign(reqs)
		if len(res.Assignments) != wantN || math.Abs(res.Total-wantCost) > 1e-9 {
			t.Fatalf("seed %d: got %d assigned, total %v; optimum %d, %v\n%+v", seed, len(res.Assignments), res.Total, wantN, wantCost, reqs)
		}
		checkPlan(t, seed, reqs, res)
		g, _ := AssignGreedy(reqs)
		checkPlan(t, seed, reqs, g)
		if len(g.Assignments) == wantN && g.Total < wantCost-1e-9 {
			t.Fatalf("seed %d: greedy beat the optimum", seed)
		}
	}
}

func checkPlan(t *testing.T, seed uint64, reqs []BatchRequest, res BatchResult) {
	t.Helper()
	drivers := map[string]bool{}
	for _, a := range res.Assignments {
		if drivers[a.DriverID] {
			t.Fatalf("seed %d: driver %s assigned twice", seed, a.DriverID)
		}
		drivers[a.DriverID] = true
		ok := false
		for _, r := range reqs {
			if r.TripID == a.TripID {
				for _, o := range r.Options {
					ok = ok || (o.DriverID == a.DriverID && o.Cost == a.Cost)
				}
			}
		}
		if !ok {
			t.Fatalf("seed %d: assignment %+v not an option", seed, a)
		}
	}
	if len(res.Assignments)+len(res.Unassigned) != len(reqs) {
		t.Fatalf("seed %d: %d assigned + %d unassigned != %d", seed, len(res.Assignments), len(res.Unassigned), len(reqs))
	}
}

func TestAssignBatchValidation(t *testing.T) {
	for _, reqs := range [][]BatchRequest{
		{{TripID: "a", Options: []BatchOption{{DriverID: "d", Cost: -1}}}},
		{{TripID: "a", Options: []BatchOption{{DriverID: "d", Cost: math.NaN()}}}},
		{{TripID: "a"}, {TripID: "a"}},
	} {
		if _, err := AssignBatch(reqs, DefaultBatchConfig()); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("AssignBatch(%+v) = %v", reqs, err)
		}
	}
	// Over the size limit: greedy fallback.
	reqs := []BatchRequest{{TripID: "a", Options: []BatchOption{{"d1", 1}, {"d2", 2}}}, {TripID: "b", Options: []BatchOption{{"d1", 1.5}}}}
	res, _ := AssignBatch(reqs, BatchConfig{MaxExact: 1})
	if res.Exact || len(res.Assignments) != 1 {
		t.Fatalf("greedy fallback: %+v", res)
	}
	res, _ = AssignBatch(reqs, DefaultBatchConfig())
	if !res.Exact || len(res.Assignments) != 2 || res.Total != 3.5 {
		t.Fatalf("exact: %+v", res)
	}
}

// sfSimulation builds the simulated city: 2,000 drivers and 500 requests in
// the San Francisco box, fixed seed.
func sfSimulation(tb testing.TB, seed uint64) (*Index, []geo.LatLng, *ETAScorer) {
	rng := rand.New(rand.NewPCG(seed, 0xc17))
	clk := newFakeClock()
	ix := mustIndex(tb, DefaultIndexConfig(), clk)
	for i := 0; i < 2000; i++ {
		if err := ix.Upsert(Location{DriverID: fmt.Sprintf("driver-%04d", i), Pos: randomSF(rng), Heading: math.NaN(), Status: StatusAvailable, Product: "x"}); err != nil {
			tb.Fatal(err)
		}
	}
	pickups := make([]geo.LatLng, 500)
	for i := range pickups {
		pickups[i] = randomSF(rng)
	}
	sc, err := NewETAScorer(DefaultRankConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return ix, pickups, sc
}

// batchWindow collects the sparse candidate lists (nearest n per request)
// and solves the window.
func batchWindow(tb testing.TB, ix *Index, sc *ETAScorer, pickups []geo.LatLng, n int) BatchResult {
	reqs := make([]BatchRequest, len(pickups))
	var buf []Candidate
	now := time.Unix(1_800_000_000, 0)
	for i, p := range pickups {
		var err error
		buf, err = ix.NearestAppend(buf[:0], Query{Pos: p, K: n, MaxRadius: 8000, Product: "x"})
		if err != nil {
			tb.Fatal(err)
		}
		reqs[i] = BatchRequest{TripID: fmt.Sprintf("trip-%03d", i), Options: BatchOptionsFromRanked(sc.Rank(RankRequest{Pickup: p, At: now}, buf))}
	}
	res, err := AssignBatch(reqs, DefaultBatchConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestBatchVersusGreedySF is the simulated-city comparison quoted in
// PERFORMANCE.md: batched assignment against greedy nearest-first (each
// request in arrival order takes the nearest free driver, as a one-by-one
// dispatcher would).
func TestBatchVersusGreedySF(t *testing.T) {
	const seed = 2026
	ix, pickups, sc := sfSimulation(t, seed)
	batched := batchWindow(t, ix, sc, pickups, 20)

	taken := map[string]struct{}{}
	greedyTotal, greedyN := 0.0, 0
	now := time.Unix(1_800_000_000, 0)
	for _, p := range pickups {
		cs, err := ix.Nearest(Query{Pos: p, K: 1, MaxRadius: 50_000, Product: "x", Exclude: taken})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 1 {
			taken[cs[0].ID] = struct{}{}
			greedyTotal += sc.Estimate(RankRequest{Pickup: p, At: now}, cs[0]).Score
			greedyN++
		}
	}
	t.Logf("seed %d: 2000 drivers, 500 requests (SF box)", seed)
	t.Logf("batched (exact, nearest 20 per request): %d assigned, total pickup %.0f s (mean %.1f s)", len(batched.Assignments), batched.Total, batched.Total/float64(len(batched.Assignments)))
	t.Logf("greedy nearest-first:                     %d assigned, total pickup %.0f s (mean %.1f s)", greedyN, greedyTotal, greedyTotal/float64(greedyN))
	fmt.Printf("batch-vs-greedy seed=%d batched_assigned=%d batched_total_s=%.0f greedy_assigned=%d greedy_total_s=%.0f\n",
		seed, len(batched.Assignments), batched.Total, greedyN, greedyTotal)
	if len(batched.Assignments) < greedyN {
		t.Fatalf("batched assigned %d < greedy %d", len(batched.Assignments), greedyN)
	}
	if len(batched.Assignments) == greedyN && batched.Total > greedyTotal {
		t.Fatalf("batched total %.1f > greedy %.1f", batched.Total, greedyTotal)
	}
}

// BenchmarkBatchAssign: one 500-request window against 2,000 drivers:
// candidate search (nearest 20), ranking and the exact solve.
func BenchmarkBatchAssign(b *testing.B) {
	ix, pickups, sc := sfSimulation(b, 2026)
	for b.Loop() {
		batchWindow(b, ix, sc, pickups, 20)
	}
}

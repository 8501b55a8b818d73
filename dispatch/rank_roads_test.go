package dispatch

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

// fakeRoads answers DriveTimesTo from a table keyed by origin; an origin
// not in the table is off the network (-1, NaN), as roads.Graph answers.
type fakeRoads struct {
	times  map[geo.LatLng]time.Duration
	meters map[geo.LatLng]float64
	err    error
	calls  int
}

func (f *fakeRoads) DriveTimesTo(from []geo.LatLng, _ geo.LatLng) ([]time.Duration, []float64, error) {
	f.calls++
	if f.err != nil {
		return nil, nil, f.err
	}
	ts, ms := make([]time.Duration, len(from)), make([]float64, len(from))
	for i, p := range from {
		t, ok := f.times[p]
		if !ok {
			ts[i], ms[i] = -1, math.NaN()
			continue
		}
		ts[i], ms[i] = t, f.meters[p]
	}
	return ts, ms, nil
}

var _ RoadETA = (*fakeRoads)(nil)

// TestETAScorerFollowsRoads: with a road network the order is the road
// time's, not the straight line's; a driver off the network keeps the
// straight-line estimate and says so; one road call per ranking.
func TestETAScorerFollowsRoads(t *testing.T) {
	pickup := geo.LatLng{Lat: 37.77, Lng: -122.42}
	near := geo.Destination(pickup, 0, 300)     // 300 m north, but across a river: 9 min by road
	far := geo.Destination(pickup, 90, 1200)    // 1.2 km east, straight down the avenue: 2 min
	middle := geo.Destination(pickup, 180, 800) // 800 m south: 3 min by road
	offroad := geo.Destination(pickup, 270, 600)
	roads := &fakeRoads{
		times:  map[geo.LatLng]time.Duration{near: 9 * time.Minute, far: 2 * time.Minute, middle: 3 * time.Minute},
		meters: map[geo.LatLng]float64{near: 4500, far: 1500, middle: 1100},
	}
	cfg := DefaultRankConfig()
	cfg.Roads = roads
	sc, err := NewETAScorer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(id string, pos geo.LatLng) Candidate {
		return Candidate{Driver: Driver{ID: id, Pos: pos, Heading: math.NaN()}, Distance: geo.Distance(pos, pickup)}
	}
	// Candidates arrive nearest first, as the index returns them.
	cands := []Candidate{mk("near", near), mk("offroad", offroad), mk("middle", middle), mk("far", far)}
	req := RankRequest{Pickup: pickup, At: time.Unix(0, 0)}
	got := sc.Rank(req, cands)
	if roads.calls != 1 {
		t.Fatalf("%d road calls for one ranking, want 1", roads.calls)
	}
	var ids, sources []string
	for _, r := range got {
		ids, sources = append(ids, r.ID), append(sources, r.Parts.Source)
	}
	// offroad is off the network: 600 m × 1.4 at 30 km/h ≈ 101 s, ahead
	// of far's 120 s by road; the road drivers are in road-time order,
	// the reverse of their straight-line order.
	want := []string{"offroad", "far", "middle", "near"}
	if !reflect.DeepEqual(ids, want) {
		t.Fatalf("order %v, want %v (sources %v)", ids, want, sources)
	}
	wantSrc := []string{SourceStraightLine, SourceRoad, SourceRoad, SourceRoad}
	if !reflect.DeepEqual(sources, wantSrc) {
		t.Fatalf("sources %v, want %v", sources, wantSrc)
	}
	farR := got[1]
	if farR.Parts.Drive != 2*time.Minute || farR.Parts.RoadDistance != 1500 || farR.Parts.ETA != 2*time.Minute ||
		farR.Score != 120 || math.Abs(farR.Parts.Speed-12.5) > 1e-9 {
		t.Fatalf("far parts %+v score %v", farR.Parts, farR.Score)
	}
	off := got[0]
	wantOff := 600 * 1.4 / (30 / 3.6)
	if math.Abs(off.Parts.Drive.Seconds()-wantOff) > 0.01 || math.Abs(off.Parts.RoadDistance-600*1.4) > 0.01 {
		t.Fatalf("offroad parts %+v, want the straight-line estimate %.1fs", off.Parts, wantOff)
	}

	// Estimates keeps the input order; Estimate scores one.
	est := sc.Estimates(req, cands)
	for i := range cands {
		if est[i].ID != cands[i].ID {
			t.Fatalf("Estimates reordered: %d is %s", i, est[i].ID)
		}
	}
	if e := sc.Estimate(req, mk("middle", middle)); e.Parts.Source != SourceRoad || e.Parts.ETA != 3*time.Minute {
		t.Fatalf("Estimate %+v", e.Parts)
	}

	// The network failing (e.g. the pickup itself off it): every candidate
	// falls back to the straight line, nearest first again.
	roads.err = errors.New("destination: too far from any road")
	got = sc.Rank(req, cands)
	ids = ids[:0]
	for _, r := range got {
		ids = append(ids, r.ID)
		if r.Parts.Source != SourceStraightLine {
			t.Fatalf("%s: source %q after a road error", r.ID, r.Parts.Source)
		}
	}
	if want := []string{"near", "offroad", "middle", "far"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("fallback order %v, want %v", ids, want)
	}

	// No road network: the straight-line scorer, as before.
	plain, err := NewETAScorer(DefaultRankConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range plain.Rank(req, cands) {
		if r.Parts.Source != SourceStraightLine {
			t.Fatalf("%s: source %q without roads", r.ID, r.Parts.Source)
		}
	}
	if got := sc.Rank(req, nil); len(got) != 0 {
		t.Fatalf("empty ranking: %v", got)
	}
}

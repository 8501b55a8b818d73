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
	// from and headings are the last call's.
	from     []geo.LatLng
	headings []float64
}

func (f *fakeRoads) DriveTimesTo(from []geo.LatLng, headings []float64, _ geo.LatLng) ([]time.Duration, []float64, error) {
	f.calls++
	f.from, f.headings = from, headings
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

// TestETAScorerRoadHeadings: the road network gets a moving driver's
// heading (its path then leaves ahead) and NaN for one standing or of
// unknown heading; a driver heading away keeps the turn penalty, on the
// roads (the graph turns round at any node) and off them.
func TestETAScorerRoadHeadings(t *testing.T) {
	pickup := geo.LatLng{Lat: 37.77, Lng: -122.42}
	north := geo.Destination(pickup, 0, 500)
	offroad := geo.Destination(pickup, 0, 600)
	roads := &fakeRoads{
		times:  map[geo.LatLng]time.Duration{north: 4 * time.Minute},
		meters: map[geo.LatLng]float64{north: 2000},
	}
	cfg := DefaultRankConfig()
	cfg.Roads = roads
	sc, err := NewETAScorer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		pos            geo.LatLng
		heading, speed float64
		wantHeading    float64 // NaN: none passed
		wantPenalty    time.Duration
	}{
		{"moving away, on the roads", north, 0, 10, 0, time.Minute},
		{"moving towards, on the roads", north, 180, 10, 180, 0},
		{"standing, heading ignored", north, 0, 0.5, math.NaN(), 0},
		{"heading unknown", north, math.NaN(), 10, math.NaN(), 0},
		{"moving away, off the roads: the straight line's penalty", offroad, 0, 10, 0, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Candidate{Driver: Driver{ID: "d", Pos: tc.pos, Heading: tc.heading, Speed: tc.speed}, Distance: geo.Distance(tc.pos, pickup)}
			r := sc.Estimate(RankRequest{Pickup: pickup, At: time.Unix(0, 0)}, c)
			if len(roads.headings) != 1 {
				t.Fatalf("headings %v", roads.headings)
			}
			if got := roads.headings[0]; !(got == tc.wantHeading || math.IsNaN(got) && math.IsNaN(tc.wantHeading)) {
				t.Errorf("heading passed %v, want %v", got, tc.wantHeading)
			}
			if d := r.Parts.TurnPenalty - tc.wantPenalty; d < -time.Millisecond || d > time.Millisecond {
				t.Errorf("turn penalty %v, want %v (parts %+v)", r.Parts.TurnPenalty, tc.wantPenalty, r.Parts)
			}
			if r.Score != r.Parts.ETA.Seconds() && math.Abs(r.Score-r.Parts.ETA.Seconds()) > 1e-6 {
				t.Errorf("score %v, ETA %v", r.Score, r.Parts.ETA)
			}
		})
	}
}

// TestETAScorerDeadReckoning: the road estimate starts a moving driver
// where it has got to since its last position was seen (half a second
// less: sightings are kept to the second, rounded down), along its heading
// at its speed, by at most DeadReckoning; a standing driver, or one whose
// sighting time is unknown or a minute old, stays where it was seen.
func TestETAScorerDeadReckoning(t *testing.T) {
	pickup := geo.LatLng{Lat: 37.77, Lng: -122.42}
	pos := geo.Destination(pickup, 270, 400)
	now := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name          string
		heading, mps  float64
		seen          time.Time
		reckoning     time.Duration
		wantMovedEast float64 // metres
	}{
		{"seen 2 s ago at 10 m/s east", 90, 10, now.Add(-2 * time.Second), 5 * time.Second, 15},
		{"seen 9 s ago: carried 5 s at most", 90, 10, now.Add(-9 * time.Second), 5 * time.Second, 50},
		{"seen this second", 90, 10, now.Add(-300 * time.Millisecond), 5 * time.Second, 0},
		{"seen two minutes ago: stale", 90, 10, now.Add(-2 * time.Minute), 5 * time.Second, 0},
		{"sighting from 1970 (missing on the wire)", 90, 10, time.Unix(0, 0), 5 * time.Second, 0},
		{"standing", 90, 0.5, now.Add(-2 * time.Second), 5 * time.Second, 0},
		{"sighting time unknown", 90, 10, time.Time{}, 5 * time.Second, 0},
		{"dead reckoning off", 90, 10, now.Add(-2 * time.Second), 0, 0},
		{"heading west: carried away", 270, 10, now.Add(-3 * time.Second), 5 * time.Second, -25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultRankConfig()
			roads := &fakeRoads{}
			cfg.Roads, cfg.DeadReckoning = roads, tc.reckoning
			sc, err := NewETAScorer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := Candidate{Driver: Driver{ID: "d", Pos: pos, Heading: tc.heading, Speed: tc.mps, Seen: tc.seen}, Distance: geo.Distance(pos, pickup)}
			sc.Estimate(RankRequest{Pickup: pickup, At: now}, c)
			if len(roads.from) != 1 {
				t.Fatalf("origins %v", roads.from)
			}
			want := pos
			if tc.wantMovedEast > 0 {
				want = geo.Destination(pos, 90, tc.wantMovedEast)
			} else if tc.wantMovedEast < 0 {
				want = geo.Destination(pos, 270, -tc.wantMovedEast)
			}
			if d := geo.Distance(roads.from[0], want); d > 0.01 {
				t.Errorf("origin %v is %.2f m from %v", roads.from[0], d, want)
			}
		})
	}
	bad := DefaultRankConfig()
	bad.DeadReckoning = -time.Second
	if _, err := NewETAScorer(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("negative dead reckoning: %v", err)
	}
}

// TestRankChained: a driver finishing a ride is scored by the rest of its
// ride, the dropoff allowance and the drive from its dropoff; one whose
// ride ends later than the horizon is left out; the best comes first and
// names the ride it finishes; the drive from the dropoffs is one road
// query, standing (no heading).
func TestRankChained(t *testing.T) {
	pickup := geo.LatLng{Lat: 37.77, Lng: -122.42}
	now := time.Unix(1_800_000_000, 0)
	type finisher struct {
		id, ride              string
		pos, dropoff          geo.LatLng
		rest, leg             time.Duration
		restMeters, legMeters float64
	}
	fs := []finisher{
		{"a", "ride-a", geo.Destination(pickup, 0, 3000), geo.Destination(pickup, 0, 500), 3 * time.Minute, time.Minute, 2500, 600},
		{"b", "ride-b", geo.Destination(pickup, 90, 6000), geo.Destination(pickup, 90, 200), 6 * time.Minute, 20 * time.Second, 5900, 250},
		{"c", "ride-c", geo.Destination(pickup, 180, 1000), geo.Destination(pickup, 180, 900), time.Minute, 2 * time.Minute, 300, 1100},
	}
	roads := &fakeRoads{times: map[geo.LatLng]time.Duration{}, meters: map[geo.LatLng]float64{}}
	var in []Finishing
	for _, f := range fs {
		roads.times[f.pos], roads.meters[f.pos] = f.rest, f.restMeters
		roads.times[f.dropoff], roads.meters[f.dropoff] = f.leg, f.legMeters
		in = append(in, Finishing{
			Candidate: Candidate{Driver: Driver{ID: f.id, Pos: f.pos, Heading: math.NaN(), Seen: now}, Distance: geo.Distance(f.pos, f.dropoff)},
			Dropoff:   f.dropoff,
			Ride:      f.ride,
		})
	}
	cfg := DefaultRankConfig()
	cfg.Roads = roads
	sc, err := NewETAScorer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const dropoff = 30 * time.Second
	got := sc.RankChained(RankRequest{Pickup: pickup, At: now}, in, dropoff, 5*time.Minute)
	if roads.calls != 4 {
		t.Errorf("road queries %d, want 3 (rests of rides) + 1 (from the dropoffs)", roads.calls)
	}
	for _, h := range roads.headings {
		if !math.IsNaN(h) {
			t.Errorf("a car at its dropoff has heading %v, want unknown", h)
		}
	}
	want := []struct {
		id, ride string
		eta      time.Duration
		chained  time.Duration
		meters   float64
	}{
		{"c", "ride-c", time.Minute + dropoff + 2*time.Minute, time.Minute + dropoff, 1400},
		{"a", "ride-a", 3*time.Minute + dropoff + time.Minute, 3*time.Minute + dropoff, 3100},
	}
	if len(got) != len(want) {
		t.Fatalf("ranked %d, want %d (b's ride ends after the horizon): %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.id || g.After != w.ride || g.Parts.ETA != w.eta || g.Parts.Chained != w.chained || g.Parts.RoadDistance != w.meters {
			t.Errorf("#%d: %s after %q eta %v chained %v metres %v; want %+v", i, g.ID, g.After, g.Parts.ETA, g.Parts.Chained, g.Parts.RoadDistance, w)
		}
		if g.Score != g.Parts.ETA.Seconds() || g.Parts.ETA != g.Parts.Drive+g.Parts.TurnPenalty+dropoff {
			t.Errorf("#%d: score %v, parts %+v: want score = ETA = drive + turn penalty + dropoff", i, g.Score, g.Parts)
		}
		if g.Pos != fs[map[string]int{"a": 0, "c": 2}[g.ID]].pos {
			t.Errorf("#%d: position %v, want where the car is now", i, g.Pos)
		}
	}
}

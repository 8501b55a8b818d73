package roads

import (
	"math/rand/v2"
	"testing"
	"time"
)

// pathSegments indexes the road segments by the positions of their ends,
// in driving direction, with that direction's weight.
func pathSegments(g *Graph) map[[2]LatLng]uint64 {
	out := map[[2]LatLng]uint64{}
	put := func(a, b uint32, w uint64) {
		k := [2]LatLng{e7(g.lat[a], g.lng[a]), e7(g.lat[b], g.lng[b])}
		if old, ok := out[k]; !ok || w < old {
			out[k] = w
		}
	}
	for _, s := range g.segs {
		if s.fwd != noArc {
			put(s.u, s.v, s.fwd)
		}
		if s.bwd != noArc {
			put(s.v, s.u, s.bwd)
		}
	}
	return out
}

// checkPath verifies a path against the roads and against Route: between
// its snapped ends every step is a road segment driven in an open
// direction, each step's time and distance are that segment's, and the
// whole drive costs exactly what Route (checked against Dijkstra by
// TestOracle) says.
func checkPath(t *testing.T, g *Graph, segs map[[2]LatLng]uint64, from, to LatLng) Path {
	t.Helper()
	p, err := g.Path(from, to)
	if err != nil {
		t.Fatal(err)
	}
	d, m, err := g.Route(from, to)
	if err != nil {
		t.Fatal(err)
	}
	if p.Time() != d || p.Length() != m {
		t.Fatalf("path %v %.2f m, route %v %.2f m (from %v to %v)", p.Time(), p.Length(), d, m, from, to)
	}
	n := len(p.Points)
	if n < 2 || len(p.At) != n || len(p.Meters) != n {
		t.Fatalf("path of %d points, %d times, %d distances", n, len(p.At), len(p.Meters))
	}
	for i := 2; i < n-1; i++ {
		w, ok := segs[[2]LatLng{p.Points[i-1], p.Points[i]}]
		if !ok {
			t.Fatalf("step %d %v→%v is not a road driven in that direction", i, p.Points[i-1], p.Points[i])
		}
		if p.At[i]-p.At[i-1] != weightTime(w) {
			t.Fatalf("step %d takes %v, its segment %v", i, p.At[i]-p.At[i-1], weightTime(w))
		}
	}
	for i := 1; i < n; i++ {
		if p.At[i] < p.At[i-1] || p.Meters[i] < p.Meters[i-1] {
			t.Fatalf("time or distance goes back at step %d", i)
		}
	}
	return p
}

func TestPathOneWay(t *testing.T) {
	g := handGraph(t, town, townRoads)
	segs := pathSegments(g)
	// Against the one-way 0→1 the drive goes around the block 1→4→3→0.
	p := checkPath(t, g, segs, town[1], town[0])
	// The snapped ends coincide with the nodes here: drop repeated points.
	var got []LatLng
	for _, q := range p.Points {
		if len(got) == 0 || distance(got[len(got)-1], q) > 0.01 {
			got = append(got, q)
		}
	}
	want := []LatLng{town[1], town[4], town[3], town[0]}
	if len(got) != len(want) {
		t.Fatalf("path %v, want %v", got, want)
	}
	for i, w := range want {
		if distance(got[i], w) > 0.01 {
			t.Errorf("point %d: %v, want %v (path %v)", i, got[i], w, got)
		}
	}
	// Along a single segment: just the two snapped points.
	a, b := along(town[0], town[1], 0.25), along(town[0], town[1], 0.75)
	if p := checkPath(t, g, segs, a, b); len(p.Points) != 2 {
		t.Errorf("along one segment: %d points", len(p.Points))
	}
}

// TestPathOracle unpacks random fastest paths on the Wilmington area and
// checks each against the roads and against Route.
func TestPathOracle(t *testing.T) {
	g := cachedGraph(t, "wilmington", &wilmington)
	segs := pathSegments(g)
	rng := rand.New(rand.NewPCG(oracleSeed(t), 15))
	long := 0
	for range 300 {
		a, _ := randomSnap(t, g, rng)
		b, _ := randomSnap(t, g, rng)
		if p := checkPath(t, g, segs, a, b); len(p.Points) > 20 {
			long++
		}
	}
	if long < 100 {
		t.Errorf("only %d of 300 paths pass more than 18 nodes: the sample does not exercise unpacking", long)
	}
}

func TestPathPosition(t *testing.T) {
	p := Path{
		Points: []LatLng{{0, 0}, {0, 1}, {1, 1}},
		At:     []time.Duration{0, 10 * time.Second, 30 * time.Second},
		Meters: []float64{0, 100, 300},
	}
	tests := []struct {
		at   time.Duration
		want LatLng
		next int
	}{
		{-time.Second, LatLng{0, 0}, 1},
		{0, LatLng{0, 0}, 1},
		{5 * time.Second, LatLng{0, 0.5}, 1},
		{10 * time.Second, LatLng{0, 1}, 1},
		{20 * time.Second, LatLng{0.5, 1}, 2},
		{time.Minute, LatLng{1, 1}, 2},
	}
	for _, tc := range tests {
		got, next := p.Position(tc.at)
		if got != tc.want || next != tc.next {
			t.Errorf("Position(%v) = %v, %d; want %v, %d", tc.at, got, next, tc.want, tc.next)
		}
	}
}

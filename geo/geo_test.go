package geo

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

// hotspots are the places where spherical code usually breaks.
func hotspots(t *testing.T, res int) []LatLng {
	t.Helper()
	pts := []LatLng{
		{37.76, -122.44},  // San Francisco
		{89.99, 10},       // near the north pole
		{-89.99, -170},    // near the south pole
		{90, 0},           // the pole itself
		{0.5, 179.9995},   // antimeridian
		{-16.5, -179.999}, // antimeridian, Fiji
		{0, 0},
	}
	pents, err := Pentagons(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pents {
		c, err := p.Center()
		if err != nil {
			t.Fatal(err)
		}
		pts = append(pts, c)
	}
	return pts
}

func randomNear(rng *rand.Rand, p LatLng, maxDist float64) LatLng {
	q := Destination(p, rng.Float64()*360, rng.Float64()*maxDist)
	return q
}

func TestParentMatchesH3(t *testing.T) {
	seed := uint64(1)
	rng := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < 2000; i++ {
		p := LatLng{Lat: rng.Float64()*180 - 90, Lng: rng.Float64()*360 - 180}
		res := rng.IntN(16)
		c, err := CellAt(p, res)
		if err != nil {
			t.Fatal(err)
		}
		if c.Resolution() != res {
			t.Fatalf("resolution %d want %d", c.Resolution(), res)
		}
		pr := rng.IntN(res + 1)
		got, err := c.Parent(pr)
		if err != nil {
			t.Fatal(err)
		}
		want, err := h3.Cell(c).Parent(pr)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(got) != uint64(want) {
			t.Fatalf("seed %d: parent(%v, %d) = %v want %v", seed, c, pr, got, Cell(want))
		}
	}
	c, _ := CellAt(LatLng{1, 1}, 5)
	if _, err := c.Parent(6); !errors.Is(err, ErrInvalidResolution) {
		t.Fatalf("finer parent: %v", err)
	}
}

func TestCellAtValidation(t *testing.T) {
	for _, tc := range []struct {
		p   LatLng
		res int
		err error
	}{
		{LatLng{91, 0}, 9, ErrInvalidLatLng},
		{LatLng{0, 181}, 9, ErrInvalidLatLng},
		{LatLng{math.NaN(), 0}, 9, ErrInvalidLatLng},
		{LatLng{0, 0}, 16, ErrInvalidResolution},
		{LatLng{0, 0}, -1, ErrInvalidResolution},
		{LatLng{0, 0}, 9, nil},
	} {
		_, err := CellAt(tc.p, tc.res)
		if !errors.Is(err, tc.err) && !(err == nil && tc.err == nil) {
			t.Errorf("CellAt(%v, %d) = %v want %v", tc.p, tc.res, err, tc.err)
		}
	}
}

func TestDistanceAndBearing(t *testing.T) {
	for _, tc := range []struct {
		a, b    LatLng
		dist    float64 // metres, ±0.1 %
		bearing float64
	}{
		{LatLng{0, 0}, LatLng{0, 1}, 111195, 90},
		{LatLng{0, 0}, LatLng{1, 0}, 111195, 0},
		{LatLng{0, 179.5}, LatLng{0, -179.5}, 111195, 90}, // across the antimeridian
		{LatLng{89.5, 0}, LatLng{89.5, 180}, 111195, 0},   // over the pole
		{LatLng{51.5007, -0.1246}, LatLng{40.6892, -74.0445}, 5574800, 288.3},
	} {
		d := Distance(tc.a, tc.b)
		if math.Abs(d-tc.dist)/tc.dist > 1e-3 {
			t.Errorf("Distance(%v,%v) = %.0f want %.0f", tc.a, tc.b, d, tc.dist)
		}
		if b := Bearing(tc.a, tc.b); AngleDiff(b, tc.bearing) > 0.2 {
			t.Errorf("Bearing(%v,%v) = %.2f want %.2f", tc.a, tc.b, b, tc.bearing)
		}
		h := h3.GreatCircleDistanceM(h3.LatLng{Lat: tc.a.Lat, Lng: tc.a.Lng}, h3.LatLng{Lat: tc.b.Lat, Lng: tc.b.Lng})
		if math.Abs(d-h) > 1e-6*h+1e-3 {
			t.Errorf("Distance(%v,%v) = %v, h3 says %v", tc.a, tc.b, d, h)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 1000; i++ {
		p := LatLng{Lat: rng.Float64()*178 - 89, Lng: rng.Float64()*360 - 180}
		br, dist := rng.Float64()*360, rng.Float64()*50000
		q := Destination(p, br, dist)
		if got := Distance(p, q); math.Abs(got-dist) > 1e-6*dist+1e-6 {
			t.Fatalf("Destination/Distance round trip %v: %v vs %v", p, got, dist)
		}
		if dist > 1 {
			if got := Bearing(p, q); AngleDiff(got, br) > 1e-6 {
				t.Fatalf("bearing %v want %v", got, br)
			}
		}
	}
}

func TestE7RoundTrip(t *testing.T) {
	p := LatLng{37.123456789, -122.987654321}
	q := p.ToE7().LatLng()
	if Distance(p, q) > 0.02 {
		t.Fatalf("E7 error %v m", Distance(p, q))
	}
	if q.ToE7() != p.ToE7() {
		t.Fatal("E7 not idempotent")
	}
}

// TestGeometryBounds checks InRadius, OutRadius and MinDistance against
// latLngToCell on random points, many near cell edges and at the hot spots.
func TestGeometryBounds(t *testing.T) {
	seed := uint64(42)
	rng := rand.New(rand.NewPCG(seed, 1))
	n := 4000
	if testing.Short() {
		n = 800
	}
	notContained, total := 0, 0
	defer func() {
		t.Logf("ContainsProbe was unsure for %d of %d members", notContained, total)
		if notContained*5 > total {
			t.Errorf("ContainsProbe unsure too often: %d of %d", notContained, total)
		}
	}()
	for _, res := range []int{3, 7, 9, 11} {
		edge, _ := EdgeLengthAvg(res)
		for _, hs := range hotspots(t, res) {
			cache := map[Cell]*CellGeometry{}
			geom := func(c Cell) *CellGeometry {
				if g, ok := cache[c]; ok {
					return g
				}
				g, err := Geometry(c)
				if err != nil {
					t.Fatal(err)
				}
				cache[c] = &g
				return &g
			}
			for i := 0; i < n/len(hotspots(t, res))+50; i++ {
				p := randomNear(rng, hs, 8*edge)
				c, err := CellAt(p, res)
				if err != nil {
					t.Fatal(err)
				}
				g := geom(c)
				total++
				if d := Distance(p, g.Center); d > g.OutRadius {
					t.Fatalf("seed %d res %d: point %v at %.3f m from centre of its cell %v, OutRadius %.3f", seed, res, p, d, c, g.OutRadius)
				}
				if pp := NewProbe(p); !g.ContainsProbe(&pp) {
					notContained++
				}
				if lb := g.MinDistance(p); lb > 0 {
					t.Fatalf("seed %d res %d: MinDistance(%v) to own cell %v = %v (pentagon %v)", seed, res, p, c, lb, c.IsPentagon())
				}
				// A point q elsewhere: the bound must not exceed the true distance to p.
				q := randomNear(rng, p, 6*edge)
				if lb, d := g.MinDistance(q), Distance(q, p); lb > d {
					t.Fatalf("seed %d res %d: MinDistance(%v, cell %v) = %v > distance %v to member %v", seed, res, q, c, lb, d, p)
				}
				// Inside must be true only for members.
				other := geom(mustCell(t, q, res))
				pp := NewProbe(p)
				if other.Inside(p) != other.InsideProbe(&pp) && math.Abs(Distance(p, other.Center)-other.InRadius) > 1e-6 {
					t.Fatalf("Inside and InsideProbe disagree at %v", p)
				}
				if other.ContainsProbe(&pp) && other.Cell != c {
					t.Fatalf("seed %d res %d: %v ContainsProbe %v but belongs to %v", seed, res, p, other.Cell, c)
				}
				if other.Inside(p) && other.Cell != c {
					t.Fatalf("seed %d res %d: %v Inside %v but belongs to %v", seed, res, p, other.Cell, c)
				}
			}
		}
	}
}

func mustCell(t *testing.T, p LatLng, res int) Cell {
	t.Helper()
	c, err := CellAt(p, res)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInRadiusIsUseful(t *testing.T) {
	c := mustCell(t, LatLng{37.77, -122.42}, 9)
	g, err := Geometry(c)
	if err != nil {
		t.Fatal(err)
	}
	edge, _ := EdgeLengthAvg(9)
	if g.InRadius < 0.7*edge || g.OutRadius > 1.3*edge {
		t.Fatalf("radii in %.1f out %.1f edge %.1f", g.InRadius, g.OutRadius, edge)
	}
}

func TestRingsAndRingMinDistance(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, res := range []int{5, 9} {
		for _, hs := range hotspots(t, res) {
			origin := mustCell(t, hs, res)
			for k := 0; k <= 3; k++ {
				ring, err := GridRing(origin, k)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range ring {
					if d, err := GridDistance(origin, c); err == nil && d != k {
						t.Fatalf("ring %d of %v holds %v at distance %d", k, origin, c, d)
					}
				}
				disk, err := GridDisk(origin, k)
				if err != nil {
					t.Fatal(err)
				}
				want := 3*k*(k+1) + 1
				if origin.IsPentagon() && k > 0 {
					want -= k * (k + 1) / 2
				}
				if len(disk) > 3*k*(k+1)+1 || (!origin.IsPentagon() && len(disk) != want) {
					t.Fatalf("disk %d of %v has %d cells", k, origin, len(disk))
				}
			}
			// Every point in ring 3 is at least RingMinDistance(.., 2) away.
			lb, err := RingMinDistance(hs, origin, 2)
			if err != nil {
				t.Fatal(err)
			}
			if lb <= 0 {
				t.Fatalf("ring-2 bound at %v is %v", hs, lb)
			}
			r3, _ := GridRing(origin, 3)
			for _, c := range r3 {
				b, _ := c.Boundary()
				for _, v := range b {
					if d := Distance(hs, v); d < lb {
						t.Fatalf("vertex %v of ring-3 cell at %v < bound %v", v, d, lb)
					}
				}
				g, _ := Geometry(c)
				for i := 0; i < 5; i++ {
					p := randomNear(rng, g.Center, g.InRadius)
					if d := Distance(hs, p); d < lb {
						t.Fatalf("point in ring 3 at %v < bound %v", d, lb)
					}
				}
			}
		}
	}
}

func TestNeighbors(t *testing.T) {
	pents, _ := Pentagons(9)
	n, err := Neighbors(pents[0])
	if err != nil || len(n) != 5 {
		t.Fatalf("pentagon neighbours %d %v", len(n), err)
	}
	c := mustCell(t, LatLng{37.77, -122.42}, 9)
	n, err = Neighbors(c)
	if err != nil || len(n) != 6 {
		t.Fatalf("hexagon neighbours %d %v", len(n), err)
	}
}

func TestPolygonContains(t *testing.T) {
	sf := Polygon{Outer: []LatLng{{37.70, -122.52}, {37.70, -122.36}, {37.82, -122.36}, {37.82, -122.52}},
		Holes: [][]LatLng{{{37.75, -122.45}, {37.75, -122.43}, {37.77, -122.43}, {37.77, -122.45}}}}
	fiji := Polygon{Outer: []LatLng{{-17, 179}, {-17, -179}, {-16, -179}, {-16, 179}}}
	if err := sf.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Polygon{Outer: []LatLng{{0, 0}, {1, 1}}}).Validate(); !errors.Is(err, ErrInvalidPolygon) {
		t.Fatalf("2-vertex polygon: %v", err)
	}
	for _, tc := range []struct {
		pg   Polygon
		p    LatLng
		want bool
	}{
		{sf, LatLng{37.78, -122.41}, true},
		{sf, LatLng{37.76, -122.44}, false}, // in the hole
		{sf, LatLng{37.60, -122.41}, false},
		{sf, LatLng{37.78, -122.30}, false},
		{fiji, LatLng{-16.5, 179.5}, true},
		{fiji, LatLng{-16.5, -179.5}, true},
		{fiji, LatLng{-16.5, 178.5}, false},
		{fiji, LatLng{-16.5, -178.5}, false},
	} {
		if got := tc.pg.Contains(tc.p); got != tc.want {
			t.Errorf("Contains(%v) = %v want %v", tc.p, got, tc.want)
		}
	}
}

func TestNormalizeAndAngle(t *testing.T) {
	for _, tc := range [][2]float64{{190, -170}, {-190, 170}, {540, 180}, {0, 0}, {180, 180}} {
		if got := NormalizeLng(tc[0]); math.Abs(got-tc[1]) > 1e-9 && !(math.Abs(got) == 180 && math.Abs(tc[1]) == 180) {
			t.Errorf("NormalizeLng(%v) = %v want %v", tc[0], got, tc[1])
		}
	}
	if AngleDiff(350, 10) != 20 || AngleDiff(10, 190) != 180 {
		t.Fatal("AngleDiff")
	}
}

func TestMinDistanceProbeAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for _, hs := range hotspots(t, 9) {
		g, err := Geometry(mustCell(t, hs, 9))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200; i++ {
			p := randomNear(rng, hs, 3000)
			pr := NewProbe(p)
			a, b := g.MinDistance(p), g.MinDistanceProbe(&pr)
			if math.Abs(a-b) > 1e-6 {
				t.Fatalf("MinDistance %v vs probe %v at %v", a, b, p)
			}
		}
	}
}

func TestDistanceFromIdentical(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < 10000; i++ {
		a := LatLng{Lat: rng.Float64()*180 - 90, Lng: rng.Float64()*360 - 180}
		b := randomNear(rng, a, 5000)
		p := NewProbe(a)
		if Distance(a, b) != DistanceFrom(&p, b) {
			t.Fatalf("Distance and DistanceFrom differ at %v %v", a, b)
		}
	}
}

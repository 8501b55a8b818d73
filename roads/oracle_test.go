package roads

import (
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// dijkstraOracle is plain Dijkstra over the uncontracted arcs (the
// segments), with the same start and end costs as the CH queries.
type dijkstraOracle struct {
	first, head []uint32
	w           []uint64
	s           *searchSpace
}

// newOracle builds the oracle over the arcs, or over the reversed arcs
// (a search from a destination backwards) if reverse.
func newOracle(g *Graph, reverse bool) *dijkstraOracle {
	var arcs []arc
	for _, s := range g.segs {
		if s.fwd != noArc {
			arcs = append(arcs, arc{s.u, s.v, s.fwd})
		}
		if s.bwd != noArc {
			arcs = append(arcs, arc{s.v, s.u, s.bwd})
		}
	}
	if reverse {
		for i := range arcs {
			arcs[i].from, arcs[i].to = arcs[i].to, arcs[i].from
		}
	}
	n := len(g.lat)
	o := &dijkstraOracle{first: make([]uint32, n+1), head: make([]uint32, len(arcs)), w: make([]uint64, len(arcs)), s: newSearchSpace(n)}
	for _, a := range arcs {
		o.first[a.from+1]++
	}
	for i := range n {
		o.first[i+1] += o.first[i]
	}
	pos := append([]uint32(nil), o.first[:n]...)
	for _, a := range arcs {
		o.head[pos[a.from]], o.w[pos[a.from]] = a.to, a.w
		pos[a.from]++
	}
	return o
}

// run is a full Dijkstra from src; costTo then reads any target.
func (o *dijkstraOracle) run(src []endpoint) {
	s := o.s
	s.reset()
	for _, e := range src {
		s.relax(e.node, e.cost)
	}
	for !s.heap.empty() {
		x, d := s.heap.pop()
		if d > s.lab[x].d {
			continue
		}
		for i := o.first[x]; i < o.first[x+1]; i++ {
			s.relax(o.head[i], d+o.w[i])
		}
	}
}

func (o *dijkstraOracle) costTo(dst []endpoint) uint64 {
	best := uint64(noArc)
	for _, e := range dst {
		if d, ok := o.s.dist(e.node); ok {
			best = min(best, d+e.cost)
		}
	}
	return best
}

func (o *dijkstraOracle) route(g *Graph, from, to Snap) uint64 {
	o.run(from.sources(g))
	return min(o.costTo(to.targets(g)), from.direct(g, to))
}

func oracleSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROADS_ORACLE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ROADS_ORACLE_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with ROADS_ORACLE_SEED=%d)", seed, seed)
	return seed
}

// randomPoint is a random node position moved up to ~150 m, so points land
// on segments, at nodes and off the road.
func randomPoint(g *Graph, rng *rand.Rand) LatLng {
	v := rng.IntN(len(g.lat))
	p := e7(g.lat[v], g.lng[v])
	p.Lat += (rng.Float64() - 0.5) * 0.003
	p.Lng += (rng.Float64() - 0.5) * 0.003
	return p
}

func randomSnap(t *testing.T, g *Graph, rng *rand.Rand) (LatLng, Snap) {
	for {
		p := randomPoint(g, rng)
		s, err := g.Snap(p)
		if err == nil {
			return p, s
		}
	}
}

func sameCost(t *testing.T, what string, got time.Duration, gotM float64, want uint64) {
	t.Helper()
	wt, wm := weightTime(want), weightMeters(want)
	if want == noArc {
		if got != Unreachable {
			t.Errorf("%s: got %v, want unreachable", what, got)
		}
		return
	}
	if rel(float64(got), float64(wt)) > 1e-6 || rel(gotM, wm) > 1e-6 {
		t.Errorf("%s: got %v %.2f m, Dijkstra %v %.2f m", what, got, gotM, wt, wm)
	}
}

func rel(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// TestOracle compares CH answers with plain Dijkstra on random points:
// point-to-point (Route), one-to-many (DriveTimes) and many-to-one
// (DriveTimesTo, half the points near the fixed one), on the whole Delaware extract and on the committed-area
// box. Times and distances must agree (relative difference ≤ 1e-6; in
// practice they are identical, costs being integers).
func TestOracle(t *testing.T) {
	cases := []struct {
		name           string
		bbox           *BBox
		pairs          int
		many, manySize int
	}{
		{"wilmington", &wilmington, 1000, 20, 20},
		{"delaware", nil, 300, 10, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bbox == nil && testing.Short() {
				t.Skip("whole-state graph skipped in -short mode")
			}
			g := cachedGraph(t, tc.name, tc.bbox)
			o, back := newOracle(g, false), newOracle(g, true)
			rng := rand.New(rand.NewPCG(oracleSeed(t), 14))
			t.Logf("%d nodes, %d segments; %d point-to-point pairs, %d one-to-many and %d many-to-one queries of %d points",
				g.Nodes(), g.Segments(), tc.pairs, tc.many, tc.many, tc.manySize)
			for i := range tc.pairs {
				a, sa := randomSnap(t, g, rng)
				b, sb := randomSnap(t, g, rng)
				d, m, err := g.Route(a, b)
				if err != nil {
					t.Fatal(err)
				}
				sameCost(t, "route "+strconv.Itoa(i), d, m, o.route(g, sa, sb))
			}
			for i := range tc.many {
				a, sa := randomSnap(t, g, rng)
				pts := make([]LatLng, tc.manySize)
				snaps := make([]Snap, tc.manySize)
				for j := range pts {
					if j%2 == 0 {
						pts[j], snaps[j] = randomSnap(t, g, rng)
						continue
					}
					// Half the targets within ~3 km, as a driver search returns.
					for {
						p := LatLng{a.Lat + (rng.Float64()-0.5)*0.05, a.Lng + (rng.Float64()-0.5)*0.06}
						if s, err := g.Snap(p); err == nil {
							pts[j], snaps[j] = p, s
							break
						}
					}
				}
				pts[0], snaps[0] = a, sa // the origin itself is a target
				times, meters, err := g.DriveTimes(a, pts)
				if err != nil {
					t.Fatal(err)
				}
				o.run(sa.sources(g))
				for j := range pts {
					want := min(o.costTo(snaps[j].targets(g)), sa.direct(g, snaps[j]))
					sameCost(t, "one-to-many "+strconv.Itoa(i)+"/"+strconv.Itoa(j), times[j], meters[j], want)
				}
				times, meters, err = g.DriveTimesTo(pts, a)
				if err != nil {
					t.Fatal(err)
				}
				back.run(sa.targets(g))
				for j := range pts {
					want := min(back.costTo(snaps[j].sources(g)), snaps[j].direct(g, sa))
					sameCost(t, "many-to-one "+strconv.Itoa(i)+"/"+strconv.Itoa(j), times[j], meters[j], want)
				}
			}
		})
	}
}

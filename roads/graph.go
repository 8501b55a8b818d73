package roads

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Graph is a contracted road graph, ready for queries. It is immutable and
// safe for concurrent use; each query borrows scratch space from a pool.
//
// Node ids are contraction ranks: every upward arc points to a higher id.
type Graph struct {
	lat, lng []int32   // node positions, 1e-7 degrees
	segs     []segment // road geometry and the uncontracted arcs
	// Forward search graph: arcs v→x, x > v.
	upFirst, upHead []uint32
	upW             []uint64
	// Backward search graph: arcs x→v with x > v, stored at v.
	dnFirst, dnHead []uint32
	dnW             []uint64

	meta    metadata
	grid    grid
	maxSnap float64
	pool    sync.Pool // *query

	// down turns the backward graph around for Path (built on first use).
	downOnce sync.Once
	down     *downOut
}

type metadata struct {
	Source string `json:"source,omitempty"`
	BBox   *BBox  `json:"bbox,omitempty"`
	Speeds Speeds `json:"speeds,omitempty"`
}

// Unreachable is the time reported for a target that is not on the road
// network (too far from any road to snap).
const Unreachable time.Duration = -1

// ErrTooFarFromRoad is returned (wrapped, with the distance) when a point is
// farther than the maximum snap distance from every road.
var ErrTooFarFromRoad = errors.New("roads: too far from any road")

const defaultMaxSnap = 500 // metres

// Option configures a loaded Graph.
type Option func(*Graph)

// WithMaxSnap sets how far (metres) a point may be from the nearest road and
// still be snapped onto it; the default is 500 m.
func WithMaxSnap(meters float64) Option { return func(g *Graph) { g.maxSnap = meters } }

// init builds what is derived from the stored arrays.
func (g *Graph) init(maxSnap float64) {
	g.maxSnap = maxSnap
	g.grid = buildGrid(g)
	n := len(g.lat)
	g.pool.New = func() any {
		return &query{fwd: newSearchSpace(n), bwd: newSearchSpace(n)}
	}
}

// Nodes returns the number of graph nodes.
func (g *Graph) Nodes() int { return len(g.lat) }

// Segments returns the number of road segments (pieces of way between two
// consecutive OSM nodes).
func (g *Graph) Segments() int { return len(g.segs) }

// Arcs returns the number of arcs of the search graphs (original arcs plus
// shortcuts, upward and downward).
func (g *Graph) Arcs() int { return len(g.upHead) + len(g.dnHead) }

// Source returns the input name recorded when the graph was built.
func (g *Graph) Source() string { return g.meta.Source }

// Route returns the shortest driving time from one point to another and
// the length of that fastest path in metres. Both points are snapped to the
// nearest road first; an error names the point that failed.
func (g *Graph) Route(from, to LatLng) (time.Duration, float64, error) {
	src, err := g.Snap(from)
	if err != nil {
		return 0, 0, fmt.Errorf("origin: %w", err)
	}
	dst, err := g.Snap(to)
	if err != nil {
		return 0, 0, fmt.Errorf("destination: %w", err)
	}
	q := g.pool.Get().(*query)
	defer g.pool.Put(q)
	c, _ := g.p2p(q, src.sources(g), dst.targets(g))
	c = min(c, src.direct(g, dst))
	if c == noArc {
		// Cannot happen on a graph built by Build (one strongly connected
		// component); a hand-made graph may have it.
		return Unreachable, math.NaN(), nil
	}
	return weightTime(c), weightMeters(c), nil
}

// DriveTimes returns the driving time and distance (metres) from one point
// to each of several: one search from the origin shared by all targets and
// one pruned search per target, not len(to) point-to-point queries (see
// oneToMany). A target too far
// from any road gets Unreachable and NaN metres; an origin too far is an
// error. This is the shape a dispatch ETA interface adapts directly.
func (g *Graph) DriveTimes(from LatLng, to []LatLng) ([]time.Duration, []float64, error) {
	src, err := g.Snap(from)
	if err != nil {
		return nil, nil, fmt.Errorf("origin: %w", err)
	}
	return g.many(src, to, nil, false)
}

// DriveTimesTo is DriveTimes in the other direction: from each of several
// points (drivers) to one (the pickup). On one-way streets the two differ;
// a pickup ETA is this one.
func (g *Graph) DriveTimesTo(from []LatLng, to LatLng) ([]time.Duration, []float64, error) {
	dst, err := g.Snap(to)
	if err != nil {
		return nil, nil, fmt.Errorf("destination: %w", err)
	}
	return g.many(dst, from, nil, true)
}

// DriveTimesFacing is DriveTimesTo for cars heading the given ways
// (degrees clockwise from north; NaN: unknown or standing), each placed on
// the road it is driving and leaving it only ahead (SnapFacing): a car on
// a highway beside the pickup drives to the next exit and back.
func (g *Graph) DriveTimesFacing(from []LatLng, headings []float64, to LatLng) ([]time.Duration, []float64, error) {
	if len(headings) != len(from) {
		return nil, nil, fmt.Errorf("roads: %d headings for %d origins", len(headings), len(from))
	}
	dst, err := g.Snap(to)
	if err != nil {
		return nil, nil, fmt.Errorf("destination: %w", err)
	}
	return g.many(dst, from, headings, true)
}

// many answers one fixed point against several others, heading the given
// ways if headings is set. reverse means the others are the origins.
func (g *Graph) many(fixed Snap, others []LatLng, headings []float64, reverse bool) ([]time.Duration, []float64, error) {
	times := make([]time.Duration, len(others))
	meters := make([]float64, len(others))
	snaps := make([]Snap, len(others))
	ok := make([]bool, len(others))
	for i, p := range others {
		var s Snap
		var err error
		if headings != nil {
			s, err = g.SnapFacing(p, headings[i])
		} else {
			s, err = g.Snap(p)
		}
		if err != nil && !errors.Is(err, ErrTooFarFromRoad) {
			return nil, nil, fmt.Errorf("point %d: %w", i, err)
		}
		snaps[i], ok[i] = s, err == nil
	}
	q := g.pool.Get().(*query)
	defer g.pool.Put(q)
	costs := g.oneToMany(q, fixed, snaps, ok, reverse)
	for i, c := range costs {
		if !ok[i] || c == noArc {
			times[i], meters[i] = Unreachable, math.NaN()
			continue
		}
		times[i], meters[i] = weightTime(c), weightMeters(c)
	}
	return times, meters, nil
}

// endpoint is where a search starts: a node and the cost already paid to
// get there from the snapped point (or from there to the point).
type endpoint struct {
	node uint32
	cost uint64
}

// sources are the nodes a trip leaving s reaches first. A facing snap at
// the node it would leave from (a car at a junction) is at that node, free
// to take any road from it.
func (s Snap) sources(g *Graph) []endpoint {
	seg := g.segs[s.seg]
	var out []endpoint
	switch {
	case s.dir > 0 && s.frac == 0:
		out = append(out, endpoint{seg.u, 0})
	case s.dir < 0 && s.frac == 1:
		out = append(out, endpoint{seg.v, 0})
	}
	if seg.fwd != noArc && s.dir >= 0 {
		out = append(out, endpoint{seg.v, scaleWeight(seg.fwd, 1-s.frac)})
	}
	if seg.bwd != noArc && s.dir <= 0 {
		out = append(out, endpoint{seg.u, scaleWeight(seg.bwd, s.frac)})
	}
	return out
}

// targets are the nodes a trip arriving at s comes through last.
func (s Snap) targets(g *Graph) []endpoint {
	seg := g.segs[s.seg]
	var out []endpoint
	if seg.fwd != noArc {
		out = append(out, endpoint{seg.u, scaleWeight(seg.fwd, s.frac)})
	}
	if seg.bwd != noArc {
		out = append(out, endpoint{seg.v, scaleWeight(seg.bwd, 1-s.frac)})
	}
	return out
}

// direct is the cost of driving from s to t along their shared segment
// without passing a node, or noArc.
func (s Snap) direct(g *Graph, t Snap) uint64 {
	if s.seg != t.seg {
		return noArc
	}
	seg := g.segs[s.seg]
	c := uint64(noArc)
	if seg.fwd != noArc && t.frac >= s.frac && s.dir >= 0 {
		c = min(c, scaleWeight(seg.fwd, t.frac-s.frac))
	}
	if seg.bwd != noArc && t.frac <= s.frac && s.dir <= 0 {
		c = min(c, scaleWeight(seg.bwd, s.frac-t.frac))
	}
	return c
}

// query is the scratch space of one query.
type query struct {
	fwd, bwd *searchSpace
}

// side is one search direction: the arcs it relaxes and the arcs it uses
// for stall-on-demand (the opposite direction's arcs at the same node).
type side struct {
	first, head   []uint32
	w             []uint64
	sfirst, shead []uint32
	sw            []uint64
}

func (g *Graph) forward() side {
	return side{g.upFirst, g.upHead, g.upW, g.dnFirst, g.dnHead, g.dnW}
}

func (g *Graph) backward() side {
	return side{g.dnFirst, g.dnHead, g.dnW, g.upFirst, g.upHead, g.upW}
}

// settle pops the next node of a search. A stalled node (provably not
// reached optimally by this upward search) is returned with stalled set and
// its arcs are not relaxed; its cost is still the cost of a real path.
func settle(s *searchSpace, sd *side) (x uint32, d uint64, stalled, ok bool) {
	for !s.heap.empty() {
		x, d = s.heap.pop()
		if d > s.lab[x].d {
			continue
		}
		for i := sd.sfirst[x]; i < sd.sfirst[x+1]; i++ {
			if dy, ok := s.dist(sd.shead[i]); ok && dy+sd.sw[i] < d {
				return x, d, true, true
			}
		}
		for i := sd.first[x]; i < sd.first[x+1]; i++ {
			s.relaxFrom(sd.head[i], d+sd.w[i], x)
		}
		return x, d, false, true
	}
	return 0, 0, false, false
}

// p2p is a bidirectional CH query. It stops each direction once its
// smallest queued cost reaches the best meeting found, and returns that
// cost and the node where the two searches met (noParent if they did not).
func (g *Graph) p2p(q *query, src, dst []endpoint) (uint64, uint32) {
	f, b := q.fwd, q.bwd
	f.reset()
	b.reset()
	for _, e := range src {
		f.relax(e.node, e.cost)
	}
	for _, e := range dst {
		b.relax(e.node, e.cost)
	}
	fs, bs := g.forward(), g.backward()
	best, meet := uint64(noArc), noParent
	for {
		fmin, bmin := uint64(noArc), uint64(noArc)
		if !f.heap.empty() {
			fmin = f.heap.minCost()
		}
		if !b.heap.empty() {
			bmin = b.heap.minCost()
		}
		if fmin >= best && bmin >= best {
			return best, meet
		}
		this, other, sd := f, b, &fs
		if bmin < fmin {
			this, other, sd = b, f, &bs
		}
		x, d, _, ok := settle(this, sd)
		if !ok {
			continue
		}
		if od, ok := other.dist(x); ok && d+od < best {
			best, meet = d+od, x
		}
	}
}

// oneToMany answers fixed → each of others (or each → fixed if reverse):
// one full upward search from the fixed point, then per other point an
// upward search that stops as soon as its smallest queued cost reaches the
// best meeting with the fixed point's labels (the point-to-point stopping
// rule, the fixed side being exhausted; exact because the top node of a
// shortest path is never stalled). Nearby points stop low in the
// hierarchy. The bucket method (Knopp et al.: full upward searches from
// every other point into buckets, then one search from the fixed point)
// gives the same answers but measured 3× slower for one pickup and 20
// drivers on Delaware: each full search climbs to the densest top of the
// hierarchy, which a pruned search near its target never reaches.
func (g *Graph) oneToMany(q *query, fixed Snap, others []Snap, ok []bool, reverse bool) []uint64 {
	res := make([]uint64, len(others))
	fixedSide, otherSide := g.forward(), g.backward()
	fixedEnds, otherEnds := fixed.sources, Snap.targets
	if reverse {
		fixedSide, otherSide = otherSide, fixedSide
		fixedEnds, otherEnds = fixed.targets, Snap.sources
	}
	f, b := q.fwd, q.bwd
	f.reset()
	for _, e := range fixedEnds(g) {
		f.relax(e.node, e.cost)
	}
	for {
		if _, _, _, more := settle(f, &fixedSide); !more {
			break
		}
	}
	for i, o := range others {
		res[i] = noArc
		if !ok[i] {
			continue
		}
		best := fixed.direct(g, o)
		if reverse {
			best = o.direct(g, fixed)
		}
		b.reset()
		for _, e := range otherEnds(o, g) {
			b.relax(e.node, e.cost)
		}
		for !b.heap.empty() && b.heap.minCost() < best {
			x, d, _, more := settle(b, &otherSide)
			if !more {
				break
			}
			if fd, ok := f.dist(x); ok && fd+d < best {
				best = fd + d
			}
		}
		res[i] = best
	}
	return res
}

// Bounds is the smallest box holding every node of the graph.
func (g *Graph) Bounds() BBox {
	if len(g.lat) == 0 {
		return BBox{}
	}
	b := BBox{MinLat: 90, MinLng: 180, MaxLat: -90, MaxLng: -180}
	for i := range g.lat {
		p := e7(g.lat[i], g.lng[i])
		b.MinLat, b.MaxLat = min(b.MinLat, p.Lat), max(b.MaxLat, p.Lat)
		b.MinLng, b.MaxLng = min(b.MinLng, p.Lng), max(b.MaxLng, p.Lng)
	}
	return b
}

// EachSegment calls fn with the two ends of every road segment (the map a
// console draws).
func (g *Graph) EachSegment(fn func(a, b LatLng)) {
	for _, s := range g.segs {
		fn(e7(g.lat[s.u], g.lng[s.u]), e7(g.lat[s.v], g.lng[s.v]))
	}
}

package dispatch

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/geo"
)

// Query asks for the nearest eligible drivers to a point.
type Query struct {
	Pos geo.LatLng
	// K is how many drivers to return (at most 1000).
	K int
	// MaxRadius bounds the search, in metres (> 0).
	MaxRadius float64
	// Product, if not empty, must equal the driver's product.
	Product string
	// MaxAge, if positive, excludes drivers whose last update is older than
	// Now - MaxAge (updates are kept at one-second resolution).
	MaxAge time.Duration
	// Now is the reference time for MaxAge; zero means the index clock.
	Now time.Time
	// Exclude lists drivers not to return (those already offered the trip).
	Exclude map[string]struct{}
	// AnyStatus admits busy and offline drivers too (the dispatcher
	// console's view); by default only available drivers qualify.
	AnyStatus bool
}

// MaxK bounds Query.K.
const MaxK = 1000

// Candidate is a driver found by [Index.Nearest] and its straight-line
// distance to the query point in metres.
type Candidate struct {
	Driver
	Distance float64
	// After, for a driver carrying a rider (chained supply, see
	// [ETAScorer.RankChained]), is the ride it finishes before this trip;
	// empty for a free driver.
	After string
}

// Nearest returns the K available drivers (of any status with
// q.AnyStatus) closest to q.Pos that pass the query's filters, closest
// first (ties by driver id). The answer equals a brute-force scan of every
// driver ordered by (geo.Distance, id).
//
// # Search and why it is exact
//
// Cells are visited best-first by a lower bound on the distance from q.Pos
// to any point of the cell (geo.CellGeometry.MinDistance: the larger of
// d(q, centre) − circumradius and, for convex cells, the distance to the
// farthest-violated edge hemisphere, both minus a safety margin). A popped
// cell pushes its unvisited neighbours. The search stops when the smallest
// bound left exceeds MaxRadius or, once K drivers are held, exceeds the
// K-th best distance.
//
// Suppose a driver p at distance d ≤ the final K-th distance lay in a cell
// never visited. The great-circle arc from q.Pos to p passes through a chain
// of cells, each adjacent to the next (cells meeting at a vertex are
// neighbours in H3), starting at the origin cell. Every point of that arc is
// within d of q.Pos, so every cell on the chain has a bound ≤ d. By
// induction each is pushed (its predecessor was popped) and popped before
// the stop condition holds (its bound ≤ d ≤ K-th distance). So p's cell was
// visited: contradiction. Equal bound and K-th distance continue the search,
// so ties are resolved by id exactly as the oracle does. The same argument
// gives ring bounds (geo.RingMinDistance): every path outward crosses each
// ring; best-first merely orders the rings' cells more tightly.
//
// Inside a cell, a cheap lower bound on the haversine distance skips most
// drivers before the exact geo.Distance:
// hav(θ) = sin²(Δφ/2) + cosφ₁cosφ₂ sin²(Δλ/2) with sin x ≥ x − x³/6 (x ≥ 0,
// positive for x ≤ π/2), cosφ₂ ≥ cos(max |lat| of the cell), and
// θ = 2 asin √hav ≥ 2 √hav. The bound is inflated by 1e-6 relative before
// comparing, far more than its rounding error, so it only ever lets extra
// drivers through to the exact test.
func (ix *Index) Nearest(q Query) ([]Candidate, error) {
	return ix.NearestAppend(nil, q)
}

// NearestAppend is Nearest appending to dst (to reuse a buffer).
func (ix *Index) NearestAppend(dst []Candidate, q Query) ([]Candidate, error) {
	if err := q.Pos.Validate(); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	if q.K <= 0 || q.K > MaxK {
		return dst, fmt.Errorf("%w: K %d not in [1, %d]", ErrInvalidQuery, q.K, MaxK)
	}
	if !(q.MaxRadius > 0) || math.IsInf(q.MaxRadius, 0) {
		return dst, fmt.Errorf("%w: max radius %v", ErrInvalidQuery, q.MaxRadius)
	}
	var prod uint32
	if q.Product != "" {
		var ok bool
		if prod, ok = ix.products.lookup(q.Product); !ok {
			return dst, nil // nobody drives an unknown product
		}
	}
	cutoff := int64(0)
	if q.MaxAge > 0 {
		now := q.Now
		if now.IsZero() {
			now = ix.clock.Now()
		}
		c := now.Add(-q.MaxAge)
		cutoff = c.Unix()
		if c.Nanosecond() > 0 {
			cutoff++ // seen (whole seconds) must not be before c
		}
	}
	probe := geo.NewProbe(q.Pos)
	oci, err := ix.cells.locate(q.Pos, &probe)
	if err != nil {
		return dst, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	origin := oci.geo.Cell

	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.reset()
	st := searchState{
		ix: ix, q: &q, sc: sc, probe: &probe,
		prod: prod, anyProd: q.Product == "", anyStatus: q.AnyStatus, cutoff: cutoff,
	}
	st.bound = q.MaxRadius

	ix.rlockAll()
	defer ix.runlockAll()

	sc.seen.add(uint64(origin))
	sc.push(cellItem{lb: 0, ci: oci})
	for len(sc.heap) > 0 {
		it := sc.pop()
		if it.lb > st.bound {
			break // every cell left is at least this far
		}
		st.scan(it.ci)
		for i, n := range it.ci.nbrs {
			if !sc.seen.add(uint64(n)) {
				continue
			}
			nci, err := ix.cells.neighbor(it.ci, i)
			if err != nil {
				return dst, err
			}
			lb := nci.geo.MinDistanceProbe(&probe)
			if lb <= st.bound {
				sc.push(cellItem{lb: lb, ci: nci})
			}
		}
	}
	prods, gws := ix.products.snapshot(), ix.gateways.snapshot()
	for _, t := range sc.top {
		s := &ix.shards[t.shard]
		r := s.rec(t.slot)
		dst = append(dst, Candidate{Driver: ix.view(s, t.slot, r.cell.buckets[t.shard][r.idx], prods, gws), Distance: t.dist})
	}
	return dst, nil
}

type searchState struct {
	ix        *Index
	q         *Query
	sc        *scratch
	probe     *geo.Probe
	prod      uint32
	anyProd   bool
	anyStatus bool
	cutoff    int64
	// bound is the distance beyond which nothing can enter the answer:
	// MaxRadius, or the K-th best distance once K drivers are held.
	bound float64
}

const (
	earthDiameter = 2 * geo.EarthRadius
	e7HalfRad     = 1e-7 * math.Pi / 360 // E7 units → half-angle radians
	// nearBand: pass 1 remembers drivers whose bound is within this factor
	// of the running K-th bound, so pass 3 rarely has to rescan the cell.
	nearBand = 1 + 1e-3
)

// cellScan holds the per-cell constants of the lower bound.
type cellScan struct {
	qa, qb float64 // query half-angles (radians)
	c      float64 // lower bound on cosφ₁·cosφ₂ over the cell
	// fast: every driver of the cell is within half-angle x of the query
	// in both latitude and longitude, x < 0.05, so sin t ≥ t·(1 − x²/6)
	// for all of them and the cubic term folds into one factor: lbHav
	// returns a² + c·b², and f = (1 − x²/6)² scales the bound instead.
	fast bool
	f    float64
}

func (st *searchState) newCellScan(ci *cellInfo) cellScan {
	cs := cellScan{
		qa: st.q.Pos.Lat * (math.Pi / 360),
		qb: st.q.Pos.Lng * (math.Pi / 360),
		c:  st.probe.CosLat * ci.cosMaxLat,
		f:  1,
	}
	g := &ci.geo
	if ci.cosMaxLat > 0.1 {
		extDeg := g.OutRadius / geo.EarthRadius * (180 / math.Pi)
		amax := (math.Abs(st.q.Pos.Lat-g.Center.Lat) + extDeg) * (math.Pi / 360)
		dl := math.Abs(g.Center.Lng - st.q.Pos.Lng)
		if dl > 180 {
			dl = 360 - dl
		}
		bmax := (dl + extDeg/ci.cosMaxLat) * (math.Pi / 360)
		if x := math.Max(amax, bmax); x < 0.05 {
			cs.fast = true
			cs.f = (1 - x*x/6) * (1 - x*x/6)
		}
	}
	return cs
}

// lbHav returns a lower bound on the haversine value hav(θ) between the
// query and e, divided by cs.f (see Nearest for the derivation). The scan
// loops inline it by hand via ab; this form is for clarity and tests.
func (cs *cellScan) lbHav(e entry) float64 {
	a, b := cs.ab(e)
	if cs.fast {
		return a*a + cs.c*b*b
	}
	return cs.lbPrecise(a, b)
}

// ab returns the half-angle differences (radians) in latitude and
// longitude, the latter wrapped across the antimeridian.
func (cs *cellScan) ab(e entry) (float64, float64) {
	a := float64(e.lat)*e7HalfRad - cs.qa
	b := float64(e.lng)*e7HalfRad - cs.qb
	if b > math.Pi/2 {
		b -= math.Pi
	} else if b < -math.Pi/2 {
		b += math.Pi
	}
	return a, b
}

func (cs *cellScan) lbPrecise(a, b float64) float64 {
	sa := a * (1 - a*a/6)
	sb := b * (1 - b*b/6)
	return sa*sa + cs.c*sb*sb
}

// havBound converts a distance bound to the largest lower-bound haversine
// value that may still qualify, inflated by 1e-6 relative and 1e-6 m so
// that rounding can only admit extra drivers to the exact test, and divided
// by the cell's factor f.
func (cs *cellScan) havBound(d float64) float64 {
	x := (d + 1e-6) / earthDiameter
	return x * x * (1 + 1e-6) / cs.f
}

func (st *searchState) entryOK(e entry) bool {
	return (e.status() == StatusAvailable || st.anyStatus) && (st.anyProd || e.prodHint() == st.prod || e.prodHint() == prodOverflow)
}

// scan offers every driver of the cell that may beat the current bound to
// the top-K. A cell with many more drivers than K is scanned in passes, so
// that only about K drivers get the exact distance (and a record read)
// instead of every driver that improves on a still-loose bound:
//  1. keep the K smallest lower bounds among drivers passing the entry
//     filters (status, product), and remember the drivers that came within
//     nearBand of the running K-th bound;
//  2. evaluate the K exactly, smallest first, which tightens the bound;
//  3. evaluate any other driver whose lower bound is still within it: from
//     the remembered ones if the bound ended within nearBand of the K-th
//     lower bound (every driver not remembered was above that), else by
//     rescanning the cell.
func (st *searchState) scan(ci *cellInfo) {
	cs := st.newCellScan(ci)
	k := st.q.K
	total := 0
	for _, b := range ci.buckets {
		total += len(b)
	}
	if total == 0 {
		return
	}
	hb := cs.havBound(st.bound)
	if len(st.sc.top) == k || total <= 4*k {
		for si, b := range ci.buckets {
			for _, e := range b {
				x, y := cs.ab(e)
				h := x*x + cs.c*y*y
				if !cs.fast {
					h = cs.lbPrecise(x, y)
				}
				if h > hb || !st.entryOK(e) {
					continue
				}
				if st.eval(e, si) {
					hb = cs.havBound(st.bound)
				}
			}
		}
		return
	}
	// Pass 1.
	best, near := st.sc.best[:0], st.sc.near[:0]
	for si, b := range ci.buckets {
		for _, e := range b {
			x, y := cs.ab(e)
			h := x*x + cs.c*y*y
			if !cs.fast {
				h = cs.lbPrecise(x, y)
			}
			if h > hb || !st.entryOK(e) {
				continue
			}
			it := lbItem{h: h, e: e, si: uint16(si)}
			switch {
			case len(best) < k:
				best = heapPushMax(best, it)
			case h < best[0].h:
				out := best[0]
				best[0] = it
				heapFixMax(best, 0)
				if out.h <= best[0].h*nearBand {
					near = append(near, out)
				}
			case h <= best[0].h*nearBand:
				near = append(near, it)
			}
		}
	}
	// Pass 2.
	slices.SortFunc(best, func(x, y lbItem) int { return cmp.Compare(x.h, y.h) })
	for _, it := range best {
		st.eval(it.e, int(it.si))
	}
	st.sc.best, st.sc.near = best[:0], near[:0]
	if len(best) < k {
		return // every qualifying driver was in best
	}
	// Pass 3.
	hb = cs.havBound(st.bound)
	maxH := best[len(best)-1].h
	if hb <= maxH*nearBand {
		for _, it := range near {
			if it.h <= hb && st.eval(it.e, int(it.si)) {
				hb = cs.havBound(st.bound)
			}
		}
		return
	}
	for si, b := range ci.buckets {
		for _, e := range b {
			h := cs.lbHav(e)
			if h > hb || !st.entryOK(e) {
				continue
			}
			if h <= maxH && inBest(best, e, si) {
				continue // evaluated in pass 2
			}
			if st.eval(e, si) {
				hb = cs.havBound(st.bound)
			}
		}
	}
}

// eval applies the exact distance and the remaining filters to one driver
// and offers it to the top-K. It reports whether the bound changed.
func (st *searchState) eval(e entry, si int) bool {
	q := st.q
	d := geo.DistanceFrom(st.probe, geo.E7{Lat: e.lat, Lng: e.lng}.LatLng())
	if d > st.bound {
		return false
	}
	slot := e.slot()
	r := st.ix.shards[si].rec(slot)
	top := st.sc.top
	if len(top) == q.K && d == st.bound && r.id >= top[q.K-1].id {
		return false
	}
	if (!st.anyProd && uint32(r.product) != st.prod) || int64(r.seen) < st.cutoff {
		return false
	}
	if q.Exclude != nil {
		if _, ok := q.Exclude[r.id]; ok {
			return false
		}
	}
	st.sc.insert(topItem{dist: d, id: r.id, shard: uint16(si), slot: slot}, q.K)
	if len(st.sc.top) == q.K && st.sc.top[q.K-1].dist != st.bound {
		st.bound = st.sc.top[q.K-1].dist
		return true
	}
	return false
}

type lbItem struct {
	h  float64
	e  entry
	si uint16
}

func inBest(best []lbItem, e entry, si int) bool {
	for _, it := range best {
		if it.e.ref == e.ref && int(it.si) == si {
			return true
		}
	}
	return false
}

func heapPushMax(h []lbItem, it lbItem) []lbItem {
	h = append(h, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].h >= h[i].h {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func heapFixMax(h []lbItem, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].h > h[l].h {
			m = r
		}
		if h[i].h >= h[m].h {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// ---- scratch -------------------------------------------------------------------

type topItem struct {
	dist  float64
	id    string
	shard uint16
	slot  uint32
}

type cellItem struct {
	lb float64
	ci *cellInfo
}

type scratch struct {
	best []lbItem
	near []lbItem
	top  []topItem
	heap []cellItem
	seen cellSet
}

var scratchPool = sync.Pool{New: func() any { return &scratch{seen: newCellSet()} }}

func (sc *scratch) reset() {
	clear(sc.top) // drop id references
	sc.top = sc.top[:0]
	clear(sc.heap)
	clear(sc.near)
	sc.near = sc.near[:0]
	sc.heap = sc.heap[:0]
	sc.seen.reset()
}

func less(a, b *topItem) bool {
	if a.dist != b.dist {
		return a.dist < b.dist
	}
	return a.id < b.id
}

// insert keeps top sorted by (dist, id) and at most k long.
func (sc *scratch) insert(t topItem, k int) {
	n := len(sc.top)
	if n == k {
		if !less(&t, &sc.top[n-1]) {
			return
		}
		n--
		sc.top = sc.top[:n]
	}
	i := n
	for i > 0 && less(&t, &sc.top[i-1]) {
		i--
	}
	sc.top = append(sc.top, topItem{})
	copy(sc.top[i+1:], sc.top[i:n])
	sc.top[i] = t
}

func (sc *scratch) push(it cellItem) {
	h := append(sc.heap, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].lb <= h[i].lb {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	sc.heap = h
}

func (sc *scratch) pop() cellItem {
	h := sc.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = cellItem{}
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h[r].lb < h[l].lb {
			m = r
		}
		if h[i].lb <= h[m].lb {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	sc.heap = h
	return top
}

// cellSet is a small open-addressing set of cells, reused across queries.
type cellSet struct {
	keys []uint64
	n    int
}

func newCellSet() cellSet { return cellSet{keys: make([]uint64, 64)} }

func (s *cellSet) reset() {
	if s.n > 0 {
		if len(s.keys) > 4096 {
			s.keys = make([]uint64, 64)
		} else {
			clear(s.keys)
		}
		s.n = 0
	}
}

// add inserts k and reports whether it was new.
func (s *cellSet) add(k uint64) bool {
	if (s.n+1)*2 > len(s.keys) {
		old := s.keys
		s.keys = make([]uint64, len(old)*2)
		s.n = 0
		for _, o := range old {
			if o != 0 {
				s.add(o)
			}
		}
	}
	mask := uint64(len(s.keys) - 1)
	i := (k * 0x9E3779B97F4A7C15) >> 32 & mask
	for s.keys[i] != 0 {
		if s.keys[i] == k {
			return false
		}
		i = (i + 1) & mask
	}
	s.keys[i] = k
	s.n++
	return true
}

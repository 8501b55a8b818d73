package roads

import (
	"fmt"
	"time"
)

// Path is the fastest drive from one point to another along the roads: the
// snapped start, every road node passed, and the snapped end, with the time
// and distance from the start at which each point is reached. A car that
// follows it at the graph's speeds is at Points[i] at At[i].
type Path struct {
	Points []LatLng
	At     []time.Duration
	Meters []float64
}

// Time is how long the whole drive takes.
func (p Path) Time() time.Duration {
	if len(p.At) == 0 {
		return 0
	}
	return p.At[len(p.At)-1]
}

// Length is the whole drive's distance in metres.
func (p Path) Length() float64 {
	if len(p.Meters) == 0 {
		return 0
	}
	return p.Meters[len(p.Meters)-1]
}

// Position is where a car following the path is after elapsed (the end
// once the drive is over), interpolated linearly along the segment it is on,
// and the index of the next point it reaches.
func (p Path) Position(elapsed time.Duration) (LatLng, int) {
	n := len(p.Points)
	switch {
	case n == 0:
		return LatLng{}, 0
	case elapsed <= 0:
		return p.Points[0], min(1, n-1)
	case elapsed >= p.At[n-1]:
		return p.Points[n-1], n - 1
	}
	// The first point reached after elapsed.
	lo, hi := 1, n-1
	for lo < hi {
		mid := (lo + hi) / 2
		if p.At[mid] < elapsed {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	a, b := p.Points[lo-1], p.Points[lo]
	span := p.At[lo] - p.At[lo-1]
	if span <= 0 {
		return b, lo
	}
	f := float64(elapsed-p.At[lo-1]) / float64(span)
	return LatLng{a.Lat + f*(b.Lat-a.Lat), a.Lng + f*(b.Lng-a.Lng)}, lo
}

// Path returns the fastest drive from one point to another with its
// geometry: the same search as Route, whose shortcuts are then unpacked into
// the road segments they stand for. Its Time and Length equal Route's up to
// the rounding of the partial segments at either end.
func (g *Graph) Path(from, to LatLng) (Path, error) {
	src, err := g.Snap(from)
	if err != nil {
		return Path{}, fmt.Errorf("origin: %w", err)
	}
	return g.path(src, from, to)
}

// PathFacing is Path for a car at from heading the given way (degrees;
// NaN: unknown): it starts on the road the car is driving and leaves it
// only ahead, stopping on the way if to is ahead on it (SnapFacing).
func (g *Graph) PathFacing(from LatLng, heading float64, to LatLng) (Path, error) {
	src, err := g.SnapFacing(from, heading)
	if err != nil {
		return Path{}, fmt.Errorf("origin: %w", err)
	}
	return g.path(src, from, to)
}

func (g *Graph) path(src Snap, from, to LatLng) (Path, error) {
	dst, err := g.Snap(to)
	if err != nil {
		return Path{}, fmt.Errorf("destination: %w", err)
	}
	direct := src.direct(g, dst)
	q := g.pool.Get().(*query)
	defer g.pool.Put(q)
	c, meet := g.p2p(q, src.sources(g), dst.targets(g))
	b := pathBuilder{g: g}
	b.add(src.Point, 0)
	if direct <= c {
		if direct == noArc {
			return Path{}, fmt.Errorf("roads: no route from %v to %v", from, to)
		}
		b.add(dst.Point, direct)
		return b.p, nil
	}
	// The forward labels lead back from meet to a node at src's segment; the
	// backward labels lead on from meet to a node at dst's.
	var up []uint32
	for v := meet; v != noParent; v = q.fwd.lab[v].par {
		up = append(up, v)
	}
	first := up[len(up)-1]
	b.add(e7(g.lat[first], g.lng[first]), endCost(src.sources(g), first))
	for i := len(up) - 1; i > 0; i-- {
		b.arc(up[i], up[i-1])
	}
	last := meet
	for v := q.bwd.lab[meet].par; v != noParent; v = q.bwd.lab[v].par {
		b.arc(last, v)
		last = v
	}
	b.add(dst.Point, endCost(dst.targets(g), last))
	return b.p, nil
}

// endCost is what reaching (or leaving) node v through the snapped point's
// partial segment costs.
func endCost(ends []endpoint, v uint32) uint64 {
	c := uint64(noArc)
	for _, e := range ends {
		if e.node == v {
			c = min(c, e.cost)
		}
	}
	return c
}

// pathBuilder accumulates a Path arc by arc.
type pathBuilder struct {
	g     *Graph
	p     Path
	total uint64
}

// add appends a point reached after a further cost w.
func (b *pathBuilder) add(p LatLng, w uint64) {
	b.total += w
	b.p.Points = append(b.p.Points, p)
	b.p.At = append(b.p.At, weightTime(b.total))
	b.p.Meters = append(b.p.Meters, weightMeters(b.total))
}

// arc appends the road segments the search graph's arc u→v (an original
// arc or a shortcut) stands for.
func (b *pathBuilder) arc(u, v uint32) {
	w, ok := b.g.arcWeight(u, v)
	if !ok {
		panic(fmt.Sprintf("roads: search labels name a missing arc %d→%d", u, v))
	}
	b.unpack(u, v, w)
}

// unpack expands the arc u→v of weight w. A shortcut u→v bypasses a node m
// contracted before both (so m < u and m < v) through u→m and m→v whose
// weights add up to w exactly (weights are integers, and an arc is only
// ever lowered to the sum of a newer middle's arcs); an arc with no such
// middle is a road segment.
func (b *pathBuilder) unpack(u, v uint32, w uint64) {
	g := b.g
	down := g.downArcs()
	for i := down.first[u]; i < down.first[u+1]; i++ {
		m, w1 := down.head[i], down.w[i]
		if w1 > w {
			continue
		}
		for j := g.upFirst[m]; j < g.upFirst[m+1]; j++ {
			if g.upHead[j] == v && w1+g.upW[j] == w {
				b.unpack(u, m, w1)
				b.unpack(m, v, g.upW[j])
				return
			}
		}
	}
	b.add(e7(g.lat[v], g.lng[v]), w)
}

// arcWeight is the weight of the search graphs' arc u→v.
func (g *Graph) arcWeight(u, v uint32) (uint64, bool) {
	if u < v {
		for i := g.upFirst[u]; i < g.upFirst[u+1]; i++ {
			if g.upHead[i] == v {
				return g.upW[i], true
			}
		}
		return 0, false
	}
	// Downward arcs x→v (x > v) are stored at v.
	for i := g.dnFirst[v]; i < g.dnFirst[v+1]; i++ {
		if g.dnHead[i] == u {
			return g.dnW[i], true
		}
	}
	return 0, false
}

// downOut lists, per node u, the downward arcs u→m (m < u): the backward
// search graph turned around so that unpacking can find a shortcut's middle
// from its tail. Built on the first Path call.
type downOut struct {
	first, head []uint32
	w           []uint64
}

func (g *Graph) downArcs() *downOut {
	g.downOnce.Do(func() {
		n := len(g.lat)
		d := &downOut{first: make([]uint32, n+1), head: make([]uint32, len(g.dnHead)), w: make([]uint64, len(g.dnHead))}
		for _, x := range g.dnHead {
			d.first[x+1]++
		}
		for i := range n {
			d.first[i+1] += d.first[i]
		}
		pos := append([]uint32(nil), d.first[:n]...)
		for m := range n {
			for i := g.dnFirst[m]; i < g.dnFirst[m+1]; i++ {
				x := g.dnHead[i]
				d.head[pos[x]], d.w[pos[x]] = uint32(m), g.dnW[i]
				pos[x]++
			}
		}
		g.down = d
	})
	return g.down
}

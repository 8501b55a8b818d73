package roads

import (
	"fmt"
	"math"
	"slices"
)

// Snap is a point placed on the nearest road segment.
type Snap struct {
	Point  LatLng  // the nearest point on the road
	Meters float64 // distance from the query point to Point
	seg    int     // segment index
	frac   float64 // position along the segment, 0 at u, 1 at v
	// dir restricts a trip leaving the point to one way along the
	// segment: +1 towards v, -1 towards u, 0 either (see SnapFacing).
	dir int8
}

// gridCellDeg is the side of a snapping grid cell in degrees (~110 m of
// latitude).
const gridCellDeg = 0.001

// grid maps cells to the segments whose bounding box touches them, as a
// sorted key list over flat arrays.
type grid struct {
	keys  []uint64
	first []uint32
	items []uint32
}

func cellKey(cy, cx int32) uint64 { return uint64(uint32(cy))<<32 | uint64(uint32(cx)) }

func cellOf(latE7 float64) int32 { return int32(math.Floor(latE7 / 1e7 / gridCellDeg)) }

func buildGrid(g *Graph) grid {
	type pair struct {
		key uint64
		seg uint32
	}
	var pairs []pair
	for i, s := range g.segs {
		y0, y1 := cellOf(float64(g.lat[s.u])), cellOf(float64(g.lat[s.v]))
		x0, x1 := cellOf(float64(g.lng[s.u])), cellOf(float64(g.lng[s.v]))
		for cy := min(y0, y1); cy <= max(y0, y1); cy++ {
			for cx := min(x0, x1); cx <= max(x0, x1); cx++ {
				pairs = append(pairs, pair{cellKey(cy, cx), uint32(i)})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		return int(a.seg) - int(b.seg)
	})
	var gr grid
	gr.items = make([]uint32, len(pairs))
	for i, p := range pairs {
		if len(gr.keys) == 0 || gr.keys[len(gr.keys)-1] != p.key {
			gr.keys = append(gr.keys, p.key)
			gr.first = append(gr.first, uint32(i))
		}
		gr.items[i] = p.seg
	}
	gr.first = append(gr.first, uint32(len(pairs)))
	return gr
}

func (gr *grid) cell(cy, cx int32) []uint32 {
	i, ok := slices.BinarySearch(gr.keys, cellKey(cy, cx))
	if !ok {
		return nil
	}
	return gr.items[gr.first[i]:gr.first[i+1]]
}

// Snap places p on the nearest road segment. It fails with
// ErrTooFarFromRoad if no road is within the maximum snap distance.
func (g *Graph) Snap(p LatLng) (Snap, error) {
	if err := p.validate(); err != nil {
		return Snap{}, err
	}
	// Local equirectangular projection around p, in metres: exact enough at
	// snapping distances to pick the nearest segment.
	mLat := earthRadius * degToRad
	mLng := mLat * math.Cos(p.Lat*degToRad)
	// Longitude metres shrink away from the equator; bound the search square
	// with the narrowest cell it can reach (1° margin, far beyond any snap).
	mLngMin := mLat * math.Cos(math.Min(math.Abs(p.Lat)+1, 89.9)*degToRad)
	limit2 := g.maxSnap * g.maxSnap * 1.01 // planar vs haversine slack
	cy, cx := cellOf(p.Lat*1e7), cellOf(p.Lng*1e7)
	best, bestSeg, bestT := math.Inf(1), -1, 0.0
	for r := int32(0); ; r++ {
		for y := cy - r; y <= cy+r; y++ {
			step := int32(1)
			if y != cy-r && y != cy+r {
				step = 2 * r // inner rows: only the two ends are on the ring
			}
			for x := cx - r; x <= cx+r; x += max(step, 1) {
				for _, si := range g.grid.cell(y, x) {
					pr := g.project(si, p, mLat, mLng)
					t, d := pr.t, pr.d2
					if d < best || (d == best && int(si) < bestSeg) {
						best, bestSeg, bestT = d, int(si), t
					}
				}
			}
		}
		// A segment not seen yet has its nearest point outside the scanned
		// square of cells, so at least this far from p.
		edge := math.Min(
			math.Min(p.Lat-float64(cy-r)*gridCellDeg, float64(cy+r+1)*gridCellDeg-p.Lat)*mLat,
			math.Min(p.Lng-float64(cx-r)*gridCellDeg, float64(cx+r+1)*gridCellDeg-p.Lng)*mLngMin)
		if best <= edge*edge || edge*edge > limit2 {
			break
		}
	}
	if bestSeg < 0 {
		return Snap{}, fmt.Errorf("%w: nothing within %.0f m of %v", ErrTooFarFromRoad, g.maxSnap, p)
	}
	s := g.segs[bestSeg]
	u, v := e7(g.lat[s.u], g.lng[s.u]), e7(g.lat[s.v], g.lng[s.v])
	pt := LatLng{u.Lat + bestT*(v.Lat-u.Lat), u.Lng + bestT*(v.Lng-u.Lng)}
	m := distance(p, pt)
	if m > g.maxSnap {
		return Snap{}, fmt.Errorf("%w: nearest road is %.0f m from %v (limit %.0f m)", ErrTooFarFromRoad, m, p, g.maxSnap)
	}
	return Snap{Point: pt, Meters: m, seg: bestSeg, frac: bestT}, nil
}

// projection is a point's nearest point on a segment, in a local
// equirectangular projection around the point (metres east, north).
type projection struct {
	t      float64 // position along the segment, 0 at u, 1 at v
	d2     float64 // squared distance from the point
	dx, dy float64 // the segment, u to v
}

// project projects p onto segment si; mLat and mLng are metres per degree
// of latitude and of longitude at p.
func (g *Graph) project(si uint32, p LatLng, mLat, mLng float64) projection {
	s := g.segs[si]
	ax := (float64(g.lng[s.u])/1e7 - p.Lng) * mLng
	ay := (float64(g.lat[s.u])/1e7 - p.Lat) * mLat
	bx := (float64(g.lng[s.v])/1e7 - p.Lng) * mLng
	by := (float64(g.lat[s.v])/1e7 - p.Lat) * mLat
	pr := projection{dx: bx - ax, dy: by - ay}
	if l2 := pr.dx*pr.dx + pr.dy*pr.dy; l2 > 0 {
		pr.t = math.Max(0, math.Min(1, -(ax*pr.dx+ay*pr.dy)/l2))
	}
	ex, ey := ax+pr.t*pr.dx, ay+pr.t*pr.dy
	pr.d2 = ex*ex + ey*ey
	return pr
}

// Facing snaps: a moving car is on the road it is driving along, and can
// leave it only ahead. Its reported position may be nearer another road
// (a street beside or under a highway), so the nearest segment within
// facingRadius whose open direction is within facingTolerance degrees of
// the heading is taken, restricted to that direction.
const (
	facingRadius    = 25.0 // metres: GPS error and the width of a road
	facingTolerance = 60.0 // degrees
)

// SnapFacing places a car at p heading the given way (degrees clockwise
// from north) on the road it is driving: see facingRadius. A trip from the
// snap leaves only ahead. With no such road within facingRadius, or a
// NaN heading (unknown, or standing still), it is Snap.
func (g *Graph) SnapFacing(p LatLng, heading float64) (Snap, error) {
	if err := p.validate(); err != nil || math.IsNaN(heading) || math.IsInf(heading, 0) {
		return g.Snap(p)
	}
	mLat := earthRadius * degToRad
	mLng := mLat * math.Cos(p.Lat*degToRad)
	cy, cx := cellOf(p.Lat*1e7), cellOf(p.Lng*1e7)
	best := Snap{seg: -1, Meters: math.Inf(1)}
	radius := min(facingRadius, g.maxSnap)
	// The cells within radius of p's cell hold every segment within
	// radius of p (a segment is filed under each cell its box touches).
	ry := int32(math.Ceil(radius / (gridCellDeg * mLat)))
	rx := int32(math.Ceil(radius / (gridCellDeg * max(mLng, 1))))
	for y := cy - ry; y <= cy+ry; y++ {
		for x := cx - rx; x <= cx+rx; x++ {
			for _, si := range g.grid.cell(y, x) {
				s := g.segs[si]
				pr := g.project(si, p, mLat, mLng)
				if pr.dx == 0 && pr.dy == 0 {
					continue // no length, no direction
				}
				t, d := pr.t, math.Sqrt(pr.d2)
				if d > radius || d > best.Meters || d == best.Meters && int(si) > best.seg {
					continue
				}
				bearing := math.Atan2(pr.dx, pr.dy) / degToRad // u→v
				dir := int8(0)
				switch {
				case s.fwd != noArc && angleOff(bearing, heading) <= facingTolerance:
					dir = 1
				case s.bwd != noArc && angleOff(bearing+180, heading) <= facingTolerance:
					dir = -1
				default:
					continue
				}
				best = Snap{Meters: d, seg: int(si), frac: t, dir: dir}
			}
		}
	}
	if best.seg < 0 {
		return g.Snap(p)
	}
	s := g.segs[best.seg]
	u, v := e7(g.lat[s.u], g.lng[s.u]), e7(g.lat[s.v], g.lng[s.v])
	best.Point = LatLng{u.Lat + best.frac*(v.Lat-u.Lat), u.Lng + best.frac*(v.Lng-u.Lng)}
	best.Meters = distance(p, best.Point)
	return best, nil
}

// angleOff is the angle in degrees between two bearings, 0 to 180.
func angleOff(a, b float64) float64 {
	d := math.Mod(math.Abs(a-b), 360)
	return math.Min(d, 360-d)
}

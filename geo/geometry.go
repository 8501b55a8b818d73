package geo

import (
	"fmt"
	"math"
)

// Safety margins for the cell bounds below. H3 draws cell edges as great-circle
// arcs between boundary vertices (edges are straight lines in its per-face
// gnomonic projection), but which cell a point belongs to is decided by
// latLngToCell's own arithmetic, so points within a hair of an edge may land
// on either side. We never need tight bounds, only true ones: every bound is
// widened by a relative margin plus an absolute one, and the tests check them
// against latLngToCell on random points near edges, poles, the antimeridian
// and pentagons.
const (
	relMargin = 0.01 // 1 % of the cell's circumradius
	absMargin = 0.05 // metres
)

// CellGeometry caches what the dispatch search needs to know about a cell
// without further H3 calls. Build it once per cell with [Geometry].
type CellGeometry struct {
	Cell   Cell
	Center LatLng
	// InRadius: every point closer than this to Center lies in Cell
	// (conservative; used to skip re-indexing drivers that moved a little).
	InRadius float64
	// OutRadius: every point of Cell is within this distance of Center
	// (conservative).
	OutRadius float64
	// MaxAbsLat is an upper bound, in degrees, on |latitude| of any point of
	// the cell.
	MaxAbsLat float64

	center  vec3
	normals []vec3 // outward unit normals of the edge planes; nil if not convex
	margin  float64
	inChord float64 // squared chord length of InRadius
}

// Geometry computes c's cached geometry (three H3 calls).
func Geometry(c Cell) (CellGeometry, error) {
	ctr, err := c.Center()
	if err != nil {
		return CellGeometry{}, err
	}
	bnd, err := c.Boundary()
	if err != nil {
		return CellGeometry{}, err
	}
	if len(bnd) < 3 {
		return CellGeometry{}, fmt.Errorf("%w: %v has %d boundary vertices", ErrInvalidCell, c, len(bnd))
	}
	g := CellGeometry{Cell: c, Center: ctr, center: toVec(ctr)}
	verts := make([]vec3, len(bnd))
	maxV := 0.0
	for i, b := range bnd {
		verts[i] = toVec(b)
		maxV = math.Max(maxV, Distance(ctr, b))
	}
	// The farthest point of a small spherical polygon from an interior
	// point is a vertex.
	g.margin = relMargin*maxV + absMargin
	g.OutRadius = maxV + g.margin

	// Edge planes: n = a×b, oriented so the centre is on the inside
	// (n·centre < 0 means "outward normal"). The angular distance from a
	// point p to the great circle of an edge is asin(|n·p|).
	normals := make([]vec3, len(verts))
	minIn := math.Inf(1)
	for i := range verts {
		a, b := verts[i], verts[(i+1)%len(verts)]
		n := a.cross(b).norm()
		if n.dot(g.center) > 0 {
			n = vec3{-n.x, -n.y, -n.z}
		}
		normals[i] = n
		minIn = math.Min(minIn, math.Asin(-n.dot(g.center))*EarthRadius)
	}
	// A cap around the centre that meets no edge's great circle cannot
	// cross the boundary, so it lies inside the cell, convex or not.
	g.InRadius = math.Max(0, minIn-g.margin)
	ch := 2 * math.Sin(g.InRadius/(2*EarthRadius))
	g.inChord = ch * ch

	// Half-space bounds need convexity: every vertex inside every edge plane.
	// The tolerance is relative to the cell's angular size (cross products of
	// nearly parallel vectors carry ~1e-16/size relative error); a violation
	// that small is far inside the margin.
	convex := true
	tol := 1e-4 * maxV / EarthRadius
	for _, n := range normals {
		for _, v := range verts {
			if n.dot(v) > tol {
				convex = false
			}
		}
	}
	if convex {
		g.normals = normals
	}
	g.MaxAbsLat = math.Min(90, math.Abs(ctr.Lat)+g.OutRadius/EarthRadius*radToDeg)
	return g, nil
}

// MinDistance is a lower bound, in metres, on the distance from p to any
// point of the cell (0 if p may be inside). Two bounds, the larger wins:
//   - circle: d(p, centre) - OutRadius (triangle inequality);
//   - half-space: for a convex cell, the cell lies inside the hemisphere of
//     every edge plane, so d(p, cell) ≥ max over edges of d(p, that
//     hemisphere) = R·asin(n·p) when n·p > 0.
//
// Both are reduced by the cell's margin, so the bound holds for every point
// latLngToCell assigns to the cell.
func (g *CellGeometry) MinDistance(p LatLng) float64 {
	lb := Distance(p, g.Center) - g.OutRadius
	if g.normals != nil {
		v := toVec(p)
		s := 0.0
		for _, n := range g.normals {
			s = math.Max(s, n.dot(v))
		}
		if s > 0 {
			hs := math.Asin(math.Min(1, s))*EarthRadius - g.margin
			lb = math.Max(lb, hs)
		}
	}
	return math.Max(0, lb)
}

// Inside reports whether p is certainly inside the cell: within InRadius of
// its centre. A false answer proves nothing.
func (g *CellGeometry) Inside(p LatLng) bool {
	return Distance(p, g.Center) < g.InRadius
}

// RingMinDistance is a lower bound on the distance from p to any point of a
// cell at grid distance ≥ k from origin. Any path from inside the disk of
// radius k-1 to a cell farther out crosses ring k (grid distance changes by at
// most one between touching cells), so the minimum over ring k's cells of
// their MinDistance bounds every farther ring too. For k = 0 it is 0.
func RingMinDistance(p LatLng, origin Cell, k int) (float64, error) {
	if k == 0 {
		return 0, nil
	}
	ring, err := GridRing(origin, k)
	if err != nil {
		return 0, err
	}
	lb := math.Inf(1)
	for _, c := range ring {
		g, err := Geometry(c)
		if err != nil {
			return 0, err
		}
		lb = math.Min(lb, g.MinDistance(p))
	}
	return lb, nil
}

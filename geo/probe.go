package geo

import "math"

// Probe is a query point prepared once for many cell-bound evaluations
// (its unit vector and cos(latitude) are computed up front).
type Probe struct {
	LatLng
	CosLat float64
	v      vec3
}

// NewProbe prepares p.
func NewProbe(p LatLng) Probe {
	return Probe{LatLng: p, CosLat: math.Cos(p.Lat * degToRad), v: toVec(p)}
}

// MinDistanceProbe is [CellGeometry.MinDistance] for a prepared point, using
// chord arithmetic instead of trigonometry (about 4x cheaper). The chord form
// differs from [Distance] by rounding only, far inside the cell margin.
func (g *CellGeometry) MinDistanceProbe(p *Probe) float64 {
	dx, dy, dz := p.v.x-g.center.x, p.v.y-g.center.y, p.v.z-g.center.z
	chord := math.Sqrt(dx*dx + dy*dy + dz*dz)
	lb := 2*EarthRadius*math.Asin(math.Min(1, chord/2)) - g.OutRadius
	if g.normals != nil {
		s := 0.0
		for _, n := range g.normals {
			s = math.Max(s, n.dot(p.v))
		}
		if s > 0 {
			lb = math.Max(lb, math.Asin(math.Min(1, s))*EarthRadius-g.margin)
		}
	}
	return math.Max(0, lb)
}

// InsideProbe is [CellGeometry.Inside] for a prepared point: a chord
// comparison, no trigonometry.
func (g *CellGeometry) InsideProbe(p *Probe) bool {
	dx, dy, dz := p.v.x-g.center.x, p.v.y-g.center.y, p.v.z-g.center.z
	return dx*dx+dy*dy+dz*dz < g.inChord
}

// ContainsProbe reports whether p is certainly inside the cell: within the
// inscribed radius, or (for a convex cell) inside every edge plane by more
// than the safety margin. It is false only in a thin band along the edges
// (or outside), where the caller asks H3.
func (g *CellGeometry) ContainsProbe(p *Probe) bool {
	if g.InsideProbe(p) {
		return true
	}
	if g.normals == nil {
		return false
	}
	lim := -math.Sin(g.margin / EarthRadius)
	for _, n := range g.normals {
		if n.dot(p.v) >= lim {
			return false
		}
	}
	return true
}

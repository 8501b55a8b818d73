package geo

import (
	"errors"
	"fmt"
)

// ErrInvalidPolygon is returned for a polygon ring with fewer than 3 vertices
// or an invalid vertex.
var ErrInvalidPolygon = errors.New("geo: invalid polygon")

// Polygon is a service area: an outer ring and optional holes, vertices in
// degrees (either orientation, not closed: the last vertex joins the first).
//
// Edges are treated as straight lines in longitude/latitude, which is what
// service-area drawing tools produce and is exact enough at city scale.
// Longitudes of each ring are unwrapped relative to its first vertex, so
// areas crossing the antimeridian work. Areas containing a pole are not
// supported.
type Polygon struct {
	Outer []LatLng
	Holes [][]LatLng
}

// Validate checks ring sizes and vertices.
func (pg Polygon) Validate() error {
	rings := append([][]LatLng{pg.Outer}, pg.Holes...)
	for i, r := range rings {
		if len(r) < 3 {
			return fmt.Errorf("%w: ring %d has %d vertices", ErrInvalidPolygon, i, len(r))
		}
		for _, v := range r {
			if err := v.Validate(); err != nil {
				return fmt.Errorf("%w: ring %d: %w", ErrInvalidPolygon, i, err)
			}
		}
	}
	return nil
}

// Contains reports whether p is inside the outer ring and outside every hole
// (even-odd rule; points exactly on an edge may go either way).
func (pg Polygon) Contains(p LatLng) bool {
	if !ringContains(pg.Outer, p) {
		return false
	}
	for _, h := range pg.Holes {
		if ringContains(h, p) {
			return false
		}
	}
	return true
}

func ringContains(ring []LatLng, p LatLng) bool {
	if len(ring) < 3 {
		return false
	}
	ref := ring[0].Lng
	unwrap := func(lng float64) float64 {
		for lng-ref > 180 {
			lng -= 360
		}
		for lng-ref < -180 {
			lng += 360
		}
		return lng
	}
	px := unwrap(p.Lng)
	in := false
	j := len(ring) - 1
	for i := range ring {
		xi, yi := unwrap(ring[i].Lng), ring[i].Lat
		xj, yj := unwrap(ring[j].Lng), ring[j].Lat
		if (yi > p.Lat) != (yj > p.Lat) {
			x := xi + (p.Lat-yi)*(xj-xi)/(yj-yi)
			if px < x {
				in = !in
			}
		}
		j = i
	}
	return in
}

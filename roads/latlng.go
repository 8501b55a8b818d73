package roads

import (
	"errors"
	"fmt"
	"math"
)

// LatLng is a WGS84 position in degrees. It has the same fields as
// geo.LatLng, so a caller converts with roads.LatLng(p). roads does not
// import geo because geo links H3 through cgo and roads must stay pure Go.
type LatLng struct {
	Lat, Lng float64
}

// ErrInvalidLatLng is returned for a position that is not finite or lies
// outside [-90, 90] × [-180, 180].
var ErrInvalidLatLng = errors.New("roads: invalid latitude/longitude")

func (p LatLng) validate() error {
	if math.IsNaN(p.Lat) || math.IsNaN(p.Lng) || p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180 {
		return fmt.Errorf("%w: (%v, %v)", ErrInvalidLatLng, p.Lat, p.Lng)
	}
	return nil
}

// earthRadius and distance are geo.EarthRadius and geo.Distance, copied
// (same formula, same constant) so that metres agree with the rest of
// hexride without linking cgo.
const (
	earthRadius = 6371008.8
	degToRad    = math.Pi / 180
)

// distance is the haversine great-circle distance in metres.
func distance(a, b LatLng) float64 {
	phi1 := a.Lat * degToRad
	phi2 := b.Lat * degToRad
	sdp := math.Sin((phi2 - phi1) / 2)
	sdl := math.Sin((b.Lng - a.Lng) * degToRad / 2)
	h := sdp*sdp + math.Cos(phi1)*math.Cos(phi2)*sdl*sdl
	if h > 1 {
		h = 1
	}
	return 2 * earthRadius * math.Asin(math.Sqrt(h))
}

// BBox is a latitude/longitude rectangle (inclusive), in degrees.
type BBox struct {
	MinLat, MinLng, MaxLat, MaxLng float64
}

// ErrBadBBox is returned for an empty or out-of-range bounding box.
var ErrBadBBox = errors.New("roads: invalid bounding box")

// Validate reports whether b is a usable box.
func (b BBox) Validate() error {
	if err := (LatLng{b.MinLat, b.MinLng}).validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBBox, err)
	}
	if err := (LatLng{b.MaxLat, b.MaxLng}).validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadBBox, err)
	}
	if b.MinLat >= b.MaxLat || b.MinLng >= b.MaxLng {
		return fmt.Errorf("%w: min must be below max (%v)", ErrBadBBox, b)
	}
	return nil
}

func (b BBox) containsE7(lat, lng int32) bool {
	return float64(lat) >= b.MinLat*1e7 && float64(lat) <= b.MaxLat*1e7 &&
		float64(lng) >= b.MinLng*1e7 && float64(lng) <= b.MaxLng*1e7
}

func e7(lat, lng int32) LatLng { return LatLng{float64(lat) / 1e7, float64(lng) / 1e7} }

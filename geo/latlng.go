package geo

import (
	"errors"
	"fmt"
	"math"
)

// EarthRadius is the mean Earth radius in metres (IUGG), used by every
// distance in hexride.
const EarthRadius = 6371008.8

const (
	degToRad = math.Pi / 180
	radToDeg = 180 / math.Pi
)

// ErrInvalidLatLng is returned for a position that is not finite or lies
// outside [-90, 90] × [-180, 180].
var ErrInvalidLatLng = errors.New("geo: invalid latitude/longitude")

// LatLng is a WGS84 position in degrees.
type LatLng struct {
	Lat, Lng float64
}

// Validate reports whether p is a usable position.
func (p LatLng) Validate() error {
	if math.IsNaN(p.Lat) || math.IsNaN(p.Lng) || p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180 {
		return fmt.Errorf("%w: (%v, %v)", ErrInvalidLatLng, p.Lat, p.Lng)
	}
	return nil
}

// String formats p with 7 decimals (about 1 cm).
func (p LatLng) String() string { return fmt.Sprintf("(%.7f, %.7f)", p.Lat, p.Lng) }

// E7 is a position in units of 1e-7 degree (about 1.1 cm), the compact form
// the supply index stores: two int32 instead of two float64.
type E7 struct {
	Lat, Lng int32
}

// ToE7 rounds p to the nearest 1e-7 degree. p must be valid.
func (p LatLng) ToE7() E7 {
	return E7{Lat: int32(math.Round(p.Lat * 1e7)), Lng: int32(math.Round(p.Lng * 1e7))}
}

// LatLng converts back to degrees. ToE7 followed by LatLng is the canonical
// rounding of a stored position; distances are always computed on the result.
func (e E7) LatLng() LatLng {
	return LatLng{Lat: float64(e.Lat) / 1e7, Lng: float64(e.Lng) / 1e7}
}

// Distance is the great-circle (haversine) distance between a and b in
// metres. It is the canonical distance of hexride: the supply index orders
// drivers by exactly this function, so a brute-force scan calling it gives
// bit-identical answers.
func Distance(a, b LatLng) float64 {
	return distance(a, math.Cos(a.Lat*degToRad), b)
}

// DistanceFrom is Distance(p.LatLng, b) with p's cosine precomputed; the
// result is bit-identical (same code path).
func DistanceFrom(p *Probe, b LatLng) float64 {
	return distance(p.LatLng, p.CosLat, b)
}

func distance(a LatLng, cosA float64, b LatLng) float64 {
	phi1 := a.Lat * degToRad
	phi2 := b.Lat * degToRad
	sdp := math.Sin((phi2 - phi1) / 2)
	sdl := math.Sin((b.Lng - a.Lng) * degToRad / 2) // sin² has period 2π: no wrap needed
	h := sdp*sdp + cosA*math.Cos(phi2)*sdl*sdl
	if h > 1 {
		h = 1
	}
	return 2 * EarthRadius * math.Asin(math.Sqrt(h))
}

// Bearing is the initial great-circle bearing from a to b in degrees,
// clockwise from north, in [0, 360).
func Bearing(a, b LatLng) float64 {
	phi1 := a.Lat * degToRad
	phi2 := b.Lat * degToRad
	dl := (b.Lng - a.Lng) * degToRad
	y := math.Sin(dl) * math.Cos(phi2)
	x := math.Cos(phi1)*math.Sin(phi2) - math.Sin(phi1)*math.Cos(phi2)*math.Cos(dl)
	deg := math.Atan2(y, x) * radToDeg
	if deg < 0 {
		deg += 360
	}
	if deg >= 360 {
		deg -= 360
	}
	return deg
}

// Destination is the point reached from p after dist metres along the
// great circle with initial bearing (degrees). Longitude is normalised to
// [-180, 180].
func Destination(p LatLng, bearing, dist float64) LatLng {
	phi1 := p.Lat * degToRad
	l1 := p.Lng * degToRad
	th := bearing * degToRad
	d := dist / EarthRadius
	sinPhi2 := math.Sin(phi1)*math.Cos(d) + math.Cos(phi1)*math.Sin(d)*math.Cos(th)
	phi2 := math.Asin(math.Max(-1, math.Min(1, sinPhi2)))
	l2 := l1 + math.Atan2(math.Sin(th)*math.Sin(d)*math.Cos(phi1), math.Cos(d)-math.Sin(phi1)*sinPhi2)
	return LatLng{Lat: phi2 * radToDeg, Lng: NormalizeLng(l2 * radToDeg)}
}

// NormalizeLng maps a longitude in degrees to [-180, 180].
func NormalizeLng(lng float64) float64 {
	if lng >= -180 && lng <= 180 {
		return lng
	}
	lng = math.Mod(lng+180, 360)
	if lng < 0 {
		lng += 360
	}
	return lng - 180
}

// AngleDiff is the absolute difference between two bearings in degrees, in
// [0, 180].
func AngleDiff(a, b float64) float64 {
	d := math.Mod(math.Abs(a-b), 360)
	if d > 180 {
		d = 360 - d
	}
	return d
}

// vec3 is a point on the unit sphere.
type vec3 struct{ x, y, z float64 }

func toVec(p LatLng) vec3 {
	phi := p.Lat * degToRad
	l := p.Lng * degToRad
	c := math.Cos(phi)
	return vec3{c * math.Cos(l), c * math.Sin(l), math.Sin(phi)}
}

func (a vec3) dot(b vec3) float64 { return a.x*b.x + a.y*b.y + a.z*b.z }

func (a vec3) cross(b vec3) vec3 {
	return vec3{a.y*b.z - a.z*b.y, a.z*b.x - a.x*b.z, a.x*b.y - a.y*b.x}
}

func (a vec3) norm() vec3 {
	n := math.Sqrt(a.dot(a))
	return vec3{a.x / n, a.y / n, a.z / n}
}

package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// The San Francisco box drivers and query points are drawn from.
const (
	minLat, maxLat = 37.70, 37.82
	minLng, maxLng = -122.52, -122.36
)

// point is a position in degrees.
type point struct{ Lat, Lng float64 }

// randomPoint draws a point uniformly in the box.
func randomPoint(r *rand.Rand) point {
	return point{minLat + r.Float64()*(maxLat-minLat), minLng + r.Float64()*(maxLng-minLng)}
}

// points draws n points from seed (stream picks an independent sequence).
func points(seed, stream uint64, n int) []point {
	r := rand.New(rand.NewPCG(seed, stream))
	out := make([]point, n)
	for i := range out {
		out[i] = randomPoint(r)
	}
	return out
}

// Point streams.
const (
	streamDrivers = iota + 1 // the indexed drivers
	streamQueries            // query centres
	streamApps               // the driver apps' starting points
	streamIdle               // idle streams' positions
)

const metresPerDegLat = 111_320.0

// move returns p moved metres in a random direction, turned back at the
// box's edges.
func move(p point, metres float64, r *rand.Rand) point {
	h := r.Float64() * 2 * math.Pi
	q := point{
		Lat: p.Lat + metres*math.Cos(h)/metresPerDegLat,
		Lng: p.Lng + metres*math.Sin(h)/(metresPerDegLat*math.Cos(p.Lat*math.Pi/180)),
	}
	if q.Lat < minLat || q.Lat > maxLat {
		q.Lat = 2*p.Lat - q.Lat
	}
	if q.Lng < minLng || q.Lng > maxLng {
		q.Lng = 2*p.Lng - q.Lng
	}
	return q
}

// driverID names indexed driver i the same in hexride and Redis.
func driverID(i int) string { return fmt.Sprintf("d%07d", i) }

package sim

import (
	"math"
	"math/rand/v2"

	"github.com/hexride/hexride/geo"
)

// city is a run's seeded geography: where each driver starts and the
// requests in the order riders make them. A run and its hindsight draw
// from it alike, so both see the same city.
type city struct {
	cfg   Config
	rng   *rand.Rand   // the requests' draws
	spots []geo.LatLng // hot spots
}

// request is one ride a rider will ask for.
type request struct {
	pickup, dropoff geo.LatLng
	cancel          bool // the rider cancels while waiting
}

func newCity(cfg Config) *city {
	c := &city{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), spots: make([]geo.LatLng, 4)}
	for i := range c.spots {
		c.spots[i] = cfg.City.Random(c.rng)
	}
	return c
}

// driverRand is driver i's own source: its start, then its decisions.
func (c *city) driverRand(i int) *rand.Rand {
	return rand.New(rand.NewPCG(c.cfg.Seed, uint64(i)+1))
}

// place draws a position: near a hot spot (a HotSpots share) or anywhere
// in the city, on a street if the city has roads.
func (c *city) place(r *rand.Rand) geo.LatLng {
	if c.cfg.Roads != nil {
		return placeOnStreets(c.cfg.Roads, c.cfg.City, c.anywhere, r)
	}
	return c.anywhere(r)
}

func (c *city) anywhere(r *rand.Rand) geo.LatLng {
	if r.Float64() < c.cfg.HotSpots {
		spot := c.spots[r.IntN(len(c.spots))]
		p := geo.Destination(spot, r.Float64()*360, r.Float64()*1500)
		if c.cfg.City.Contains(p) {
			return p
		}
	}
	return c.cfg.City.Random(r)
}

// dropoff draws a drop-off for pickup: within TripRadius if set.
func (c *city) dropoff(r *rand.Rand, pickup geo.LatLng) geo.LatLng {
	if c.cfg.TripRadius <= 0 {
		return c.place(r)
	}
	for range 100 {
		p := geo.Destination(pickup, r.Float64()*360, c.cfg.TripRadius*math.Sqrt(r.Float64()))
		if c.cfg.City.Contains(p) {
			if c.cfg.Roads != nil {
				return placeOnStreets(c.cfg.Roads, c.cfg.City, func(*rand.Rand) geo.LatLng { return p }, r)
			}
			return p
		}
	}
	return c.place(r)
}

// nextRequest draws the next ride asked for.
func (c *city) nextRequest() request {
	pickup := c.place(c.rng)
	dropoff := c.dropoff(c.rng, pickup)
	return request{pickup: pickup, dropoff: dropoff, cancel: c.rng.Float64() < c.cfg.RiderCancelProbability}
}

package sim

import (
	"math/rand/v2"
	"time"

	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/roads"
)

// Driving on streets: with Config.Roads set, a car always follows a
// fastest path of the road graph at the graph's speeds (the speeds the
// platform's ETAs assume), so a drive lasts exactly the time the graph
// gives for it. Idle cars cruise to random nearby streets; an assigned car
// drives to the pickup, then to the drop-off. With DriveTime 0 the trip's
// actions wait for the car to arrive, and the drive to the pickup is
// measured against the ETA the rider was quoted.

// leg is what a car on the streets is driving for.
type leg uint8

const (
	legCruise leg = iota
	legPickup
	legDropoff
)

// cruiseRadius bounds how far an idle car heads before choosing again.
const cruiseRadius = 2000.0 // metres

// boardingTime is how long a rider takes to get in, on the streets in
// real time.
const boardingTime = 3 * time.Second

// realTime reports whether trip actions wait for the car to arrive (on
// streets, with no fixed drive time).
func (c Config) realTime() bool { return c.Roads != nil && c.DriveTime == 0 }

// onRoad returns a point on a road: p snapped, or (if p is too far from any
// road) another point drawn from the city by draw.
func onRoad(g *roads.Graph, p geo.LatLng, draw func() geo.LatLng) geo.LatLng {
	for range 100 {
		if s, err := g.Snap(roads.LatLng(p)); err == nil {
			return geo.LatLng(s.Point)
		}
		p = draw()
	}
	return p
}

// startLeg routes the car from where it is now to dst. A moving car
// cannot turn on the spot: it leaves along the road it is on, ahead, and
// stops on it if dst is ahead on it (roads.PathFacing).
func (d *driverAgent) startLeg(l leg, tripID string, dst geo.LatLng, now time.Time) {
	d.advance(now)
	moving := len(d.route.Points) > 0 && now.Sub(d.routeStart) < d.route.Time()
	var path roads.Path
	var err error
	if moving {
		path, err = d.cfg.Roads.PathFacing(roads.LatLng(d.pos), d.heading, roads.LatLng(dst))
	} else {
		path, err = d.cfg.Roads.Path(roads.LatLng(d.pos), roads.LatLng(dst))
	}
	if err != nil {
		// Nothing routes there (the graph is one strongly connected
		// component, so only an off-road point can do this): wait here.
		path = roads.Path{Points: []roads.LatLng{roads.LatLng(d.pos)}, At: []time.Duration{0}, Meters: []float64{0}}
	}
	d.route, d.routeStart, d.leg, d.legTrip, d.legArrived = path, now, l, tripID, false
	select { // a leg that ended with nobody waiting must not end this one
	case <-d.legDone:
	default:
	}
}

// startPickup routes the car to a trip's pickup. The rider's wait from
// the assignment (at assigned) until the car arrives is the pickup time
// recorded: the drive the car starts, and for a driver's next trip
// (chained supply) the rest of the ride before it too. (A compressed leg
// ends early, but the road time is the same.)
func (d *driverAgent) startPickup(tripID string, dst geo.LatLng, now, assigned time.Time) {
	d.startLeg(legPickup, tripID, dst, now)
	d.rec.pickupDrive(tripID, now.Sub(assigned)+d.route.Time())
}

// cruise sends an idle car towards a random street within cruiseRadius.
func (d *driverAgent) cruise(now time.Time) {
	draw := func() geo.LatLng {
		for {
			p := geo.Destination(d.pos, d.rng.Float64()*360, 200+d.rng.Float64()*(cruiseRadius-200))
			if d.cfg.City.Contains(p) {
				return p
			}
			if d.rng.IntN(4) == 0 { // near the edge: anywhere in the city
				return d.cfg.City.Random(d.rng)
			}
		}
	}
	d.startLeg(legCruise, "", onRoad(d.cfg.Roads, draw(), draw), now)
}

// advance moves the car along its route to where it is at now, and ends
// the leg if it arrived.
func (d *driverAgent) advance(now time.Time) {
	if len(d.route.Points) == 0 {
		return
	}
	elapsed := now.Sub(d.routeStart)
	pos, next := d.route.Position(elapsed)
	d.pos = geo.LatLng(pos)
	d.speed = 0
	if elapsed < d.route.Time() {
		// Speed and heading of the segment being driven.
		a, b := next-1, next
		if dt := d.route.At[b] - d.route.At[a]; dt > 0 {
			d.speed = (d.route.Meters[b] - d.route.Meters[a]) / dt.Seconds()
		}
		if to := geo.LatLng(d.route.Points[b]); to != d.pos {
			d.heading = geo.Bearing(d.pos, to)
		}
		return
	}
	if d.leg != legCruise && !d.legArrived {
		d.legArrived = true
		select {
		case d.legDone <- struct{}{}:
		default:
		}
	}
}

// locationOnStreets is location for a car on the streets.
func (d *driverAgent) locationOnStreets(now time.Time) {
	if d.onTrip == "" && (d.leg != legCruise || len(d.route.Points) == 0) {
		d.cruise(now) // idle: the last trip's drop-off, or the start
	}
	d.advance(now)
	if d.leg == legCruise && now.Sub(d.routeStart) >= d.route.Time() {
		d.cruise(now)
	}
}

// placeOnStreets draws a position the way place does and moves it onto a
// road.
func placeOnStreets(g *roads.Graph, city BBox, place func(*rand.Rand) geo.LatLng, r *rand.Rand) geo.LatLng {
	return onRoad(g, place(r), func() geo.LatLng { return city.Random(r) })
}

// streetsUpdate starts the leg an update of the car's trip calls for.
func (d *driverAgent) streetsUpdate(t *commonv1.Trip, now time.Time) {
	switch t.GetState() {
	case commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED:
		if d.leg != legPickup || d.legTrip != t.GetId() {
			d.startPickup(t.GetId(), geo.LatLng{Lat: t.GetPickup().GetLat(), Lng: t.GetPickup().GetLng()}, now, now)
		}
	case commonv1.TripState_TRIP_STATE_IN_PROGRESS:
		if d.leg != legDropoff || d.legTrip != t.GetId() {
			d.startLeg(legDropoff, t.GetId(), geo.LatLng{Lat: t.GetDropoff().GetLat(), Lng: t.GetDropoff().GetLng()}, now)
		}
	}
}

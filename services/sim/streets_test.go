package sim

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/roads"
	"github.com/hexride/hexride/roads/cities"
)

var (
	wilmingtonOnce  sync.Once
	wilmingtonGraph *roads.Graph
	wilmingtonErr   error
)

func wilmington(t *testing.T) *roads.Graph {
	t.Helper()
	wilmingtonOnce.Do(func() { wilmingtonGraph, wilmingtonErr = cities.Wilmington() })
	if wilmingtonErr != nil {
		t.Fatal(wilmingtonErr)
	}
	return wilmingtonGraph
}

func streetsDriver(t *testing.T, seed uint64) *driverAgent {
	t.Helper()
	g := wilmington(t)
	cfg := validConfig()
	cfg.Roads, cfg.City, cfg.DriveTime = g, BBox(g.Bounds()), 0
	d := &driverAgent{id: "d1", cfg: cfg, rec: newRecorder(), rng: rand.New(rand.NewPCG(seed, 1)),
		legDone: make(chan struct{}, 1), offered: map[string]geo.LatLng{}}
	d.pos = placeOnStreets(g, cfg.City, func(r *rand.Rand) geo.LatLng { return cfg.City.Random(r) }, d.rng)
	return d
}

// onStreet reports how far p is from the nearest road.
func offStreet(t *testing.T, g *roads.Graph, p geo.LatLng) float64 {
	t.Helper()
	s, err := g.Snap(roads.LatLng(p))
	if err != nil {
		t.Fatalf("%v: %v", p, err)
	}
	return s.Meters
}

// TestDriverOnStreets follows one car through cruising, a drive to a
// pickup and a drive to a drop-off, sample by sample: every sample is on a
// road at a road's speed, the pickup is reached exactly when the road graph
// says, the trip's next action is released then and not before, and the
// drive is measured against the quoted ETA.
func TestDriverOnStreets(t *testing.T) {
	g := wilmington(t)
	d := streetsDriver(t, 7)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	step := time.Second
	sample := func() geo.LatLng {
		m := d.location(now).GetLocation()
		p := geo.LatLng{Lat: m.GetPosition().GetLat(), Lng: m.GetPosition().GetLng()}
		if off := offStreet(t, g, p); off > 0.5 {
			t.Fatalf("sample %v is %.1f m off the road", p, off)
		}
		if kmh := float64(m.GetSpeedMps()) * 3.6; kmh < 0 || kmh > 130 {
			t.Fatalf("speed %.0f km/h", kmh)
		}
		now = now.Add(step)
		return p
	}
	// Cruising: the car moves, along roads.
	start := sample()
	var moved float64
	prev := start
	for range 60 {
		p := sample()
		if jump := geo.Distance(prev, p); jump > 130/3.6*step.Seconds()+1 {
			t.Fatalf("jumped %.0f m in %v", jump, step)
		}
		moved += geo.Distance(prev, p)
		prev = p
	}
	if moved < 100 {
		t.Fatalf("cruised only %.0f m in a minute", moved)
	}

	// Assigned: drive to a pickup ~1.5 km away.
	pickup := onRoad(g, geo.Destination(prev, 45, 1500), func() geo.LatLng { return d.cfg.City.Random(d.rng) })
	want, _, err := g.Route(roads.LatLng(prev), roads.LatLng(pickup))
	if err != nil {
		t.Fatal(err)
	}
	d.rec.requestedTrip("t1", now, want*11/10) // quoted 10 % long
	d.onTrip = "t1"
	d.streetsUpdate(&commonv1.Trip{Id: "t1", State: commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED,
		Pickup: &commonv1.LatLng{Lat: pickup.Lat, Lng: pickup.Lng}}, now.Add(-step))
	if got := d.route.Time(); got < want-time.Second || got > want+time.Second {
		t.Fatalf("route to the pickup takes %v, the graph says %v from the last sample", got, want)
	}
	legStart := d.routeStart
	for now.Sub(legStart) < d.route.Time() {
		select {
		case <-d.legDone:
			t.Fatalf("arrival signalled after %v of a %v drive", now.Sub(legStart), d.route.Time())
		default:
		}
		sample()
	}
	p := sample()
	if geo.Distance(p, pickup) > 1 {
		t.Fatalf("after the drive the car is at %v, %.0f m from the pickup", p, geo.Distance(p, pickup))
	}
	select {
	case <-d.legDone:
	default:
		t.Fatal("arriving at the pickup did not release the trip's next action")
	}
	s := d.rec.snapshot()
	if s.Pickups != 1 || s.PickupMeanS != d.route.Time().Seconds() || s.PickupP99S != s.PickupMeanS {
		t.Errorf("pickups %d, mean drive %v s; want 1, %v s", s.Pickups, s.PickupMeanS, d.route.Time().Seconds())
	}
	if wantErr := (want*11/10 - d.route.Time()).Seconds() / d.route.Time().Seconds(); s.PickupETAErrorP50 != wantErr || s.PickupETAAbsErrorP50 != wantErr {
		t.Errorf("ETA error %v (absolute %v), want %v", s.PickupETAErrorP50, s.PickupETAAbsErrorP50, wantErr)
	}

	// In progress: on to the drop-off; a repeated update does not restart it.
	dropoff := onRoad(g, geo.Destination(p, 200, 1000), func() geo.LatLng { return d.cfg.City.Random(d.rng) })
	inProgress := &commonv1.Trip{Id: "t1", State: commonv1.TripState_TRIP_STATE_IN_PROGRESS,
		Dropoff: &commonv1.LatLng{Lat: dropoff.Lat, Lng: dropoff.Lng}}
	d.streetsUpdate(inProgress, now)
	first := d.routeStart
	sample()
	d.streetsUpdate(inProgress, now)
	if d.routeStart != first {
		t.Fatal("a repeated trip update restarted the drive")
	}
	for now.Sub(first) < d.route.Time() {
		sample()
	}
	if p := sample(); geo.Distance(p, dropoff) > 1 {
		t.Fatalf("after the drive the car is %.0f m from the drop-off", geo.Distance(p, dropoff))
	}
	select {
	case <-d.legDone:
	default:
		t.Fatal("arriving at the drop-off did not release the trip's last action")
	}
	// The ride over, the car cruises again from the drop-off.
	d.onTrip = ""
	sample()
	if d.leg != legCruise {
		t.Errorf("after the ride the car's leg is %v, want cruising", d.leg)
	}
}

// TestPlaceOnStreets: riders and drivers stand on roads.
func TestPlaceOnStreets(t *testing.T) {
	g := wilmington(t)
	city := BBox(g.Bounds())
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		p := placeOnStreets(g, city, func(r *rand.Rand) geo.LatLng { return city.Random(r) }, rng)
		if off := offStreet(t, g, p); off > 0.5 || !city.Contains(p) {
			t.Fatalf("%v: %.1f m off the road, in the city %v", p, off, city.Contains(p))
		}
	}
}

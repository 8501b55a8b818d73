package sim

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

func validConfig() Config {
	c := DefaultConfig()
	c.RiderTargets, c.DriverTargets = []string{"127.0.0.1:1"}, []string{"127.0.0.1:1"}
	return c
}

func TestConfigValidate(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"defaults with targets", func(*Config) {}, nil},
		{"no rider targets", func(c *Config) { c.RiderTargets = nil }, ErrNoTargets},
		{"no driver targets", func(c *Config) { c.DriverTargets = []string{} }, ErrNoTargets},
		{"no drivers is allowed", func(c *Config) { c.Drivers = 0 }, nil},
		{"negative drivers", func(c *Config) { c.Drivers = -1 }, ErrBadConfig},
		{"bounded requests", func(c *Config) { c.Requests = 10 }, nil},
		{"negative requests", func(c *Config) { c.Requests = -1 }, ErrBadConfig},
		{"zero rate", func(c *Config) { c.Rate = 0 }, ErrBadConfig},
		{"negative rate", func(c *Config) { c.Rate = -1 }, ErrBadConfig},
		{"fractional rate", func(c *Config) { c.Rate = 0.25 }, nil},
		{"NaN rate", func(c *Config) { c.Rate = nan }, ErrBadConfig},
		{"infinite rate", func(c *Config) { c.Rate = inf }, ErrBadConfig},
		{"rate beyond a request per nanosecond", func(c *Config) { c.Rate = 2e9 }, ErrBadConfig},
		{"zero duration", func(c *Config) { c.Duration = 0 }, ErrBadConfig},
		{"zero grace is allowed", func(c *Config) { c.Grace = 0 }, nil},
		{"negative grace", func(c *Config) { c.Grace = -time.Second }, ErrBadConfig},
		{"accept 0", func(c *Config) { c.AcceptProbability = 0 }, nil},
		{"accept 1", func(c *Config) { c.AcceptProbability = 1 }, nil},
		{"accept above 1", func(c *Config) { c.AcceptProbability = 1.01 }, ErrBadConfig},
		{"accept negative", func(c *Config) { c.AcceptProbability = -0.1 }, ErrBadConfig},
		{"accept NaN", func(c *Config) { c.AcceptProbability = nan }, ErrBadConfig},
		{"cancel above 1", func(c *Config) { c.RiderCancelProbability = 2 }, ErrBadConfig},
		{"cancel negative", func(c *Config) { c.RiderCancelProbability = -1 }, ErrBadConfig},
		{"cancel NaN", func(c *Config) { c.RiderCancelProbability = nan }, ErrBadConfig},
		{"hot spots above 1", func(c *Config) { c.HotSpots = 1.5 }, ErrBadConfig},
		{"hot spots negative", func(c *Config) { c.HotSpots = -0.5 }, ErrBadConfig},
		{"hot spots NaN", func(c *Config) { c.HotSpots = nan }, ErrBadConfig},
		{"zero location interval", func(c *Config) { c.LocationInterval = 0 }, ErrBadConfig},
		{"zero reply delay is allowed", func(c *Config) { c.ReplyDelay = 0 }, nil},
		{"negative reply delay", func(c *Config) { c.ReplyDelay = -1 }, ErrBadConfig},
		{"negative drive time", func(c *Config) { c.DriveTime = -1 }, ErrBadConfig},
		{"zero city", func(c *Config) { c.City = BBox{} }, ErrBadConfig},
		{"inverted latitudes", func(c *Config) { c.City.MinLat, c.City.MaxLat = c.City.MaxLat, c.City.MinLat }, ErrBadConfig},
		{"inverted longitudes", func(c *Config) { c.City.MinLng, c.City.MaxLng = c.City.MaxLng, c.City.MinLng }, ErrBadConfig},
		{"NaN city corner", func(c *Config) { c.City.MaxLat = nan }, ErrBadConfig},
		{"other city", func(c *Config) { c.City = BBox{MinLat: 51.4, MinLng: -0.3, MaxLat: 51.6, MaxLng: 0.1} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); !errors.Is(err, ErrNoTargets) {
		t.Fatalf("DefaultConfig without targets: Validate() = %v, want ErrNoTargets", err)
	}
	if c.City != SanFrancisco {
		t.Errorf("default city = %+v, want SanFrancisco", c.City)
	}
}

func TestBBoxContains(t *testing.T) {
	b := SanFrancisco
	tests := []struct {
		name string
		p    geo.LatLng
		want bool
	}{
		{"downtown", geo.LatLng{Lat: 37.7749, Lng: -122.4194}, true},
		{"south-west corner", geo.LatLng{Lat: b.MinLat, Lng: b.MinLng}, true},
		{"north-east corner", geo.LatLng{Lat: b.MaxLat, Lng: b.MaxLng}, true},
		{"north of it", geo.LatLng{Lat: b.MaxLat + 1e-9, Lng: -122.4}, false},
		{"south of it", geo.LatLng{Lat: b.MinLat - 1e-9, Lng: -122.4}, false},
		{"east of it (Oakland)", geo.LatLng{Lat: 37.8044, Lng: -122.2712}, false},
		{"west of it (ocean)", geo.LatLng{Lat: 37.75, Lng: -122.6}, false},
		{"origin", geo.LatLng{}, false},
	}
	for _, tt := range tests {
		if got := b.Contains(tt.p); got != tt.want {
			t.Errorf("%s: Contains(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestBBoxRandom(t *testing.T) {
	b := BBox{MinLat: 10, MinLng: 20, MaxLat: 11, MaxLng: 22}
	r := rand.New(rand.NewPCG(1, 2))
	var north, east int
	for range 1000 {
		p := b.Random(r)
		if !b.Contains(p) {
			t.Fatalf("Random() = %v, outside %+v", p, b)
		}
		if p.Lat > 10.5 {
			north++
		}
		if p.Lng > 21 {
			east++
		}
	}
	// Uniform: each half gets roughly half (a seeded, fixed sequence).
	if north < 400 || north > 600 || east < 400 || east > 600 {
		t.Errorf("north half %d, east half %d of 1000: not uniform", north, east)
	}
	a := b.Random(rand.New(rand.NewPCG(7, 7)))
	if again := b.Random(rand.New(rand.NewPCG(7, 7))); a != again {
		t.Errorf("same seed gave %v and %v", a, again)
	}
}

// Package sim is a city simulator that drives a hexride deployment through
// its public gRPC APIs exactly as the mobile apps would: driver apps holding
// Connect streams, moving and sending locations, answering offers and
// driving trips through their states; riders asking for quotes, requesting
// rides and watching them. It measures what a rider and a driver see.
package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/roads"
)

// BBox is a rectangle of the map.
type BBox struct {
	MinLat, MinLng, MaxLat, MaxLng float64
}

// SanFrancisco is the default city.
var SanFrancisco = BBox{MinLat: 37.70, MinLng: -122.52, MaxLat: 37.82, MaxLng: -122.36}

// Contains reports whether p is inside.
func (b BBox) Contains(p geo.LatLng) bool {
	return p.Lat >= b.MinLat && p.Lat <= b.MaxLat && p.Lng >= b.MinLng && p.Lng <= b.MaxLng
}

// Random returns a uniform point inside.
func (b BBox) Random(r *rand.Rand) geo.LatLng {
	return geo.LatLng{Lat: b.MinLat + r.Float64()*(b.MaxLat-b.MinLat), Lng: b.MinLng + r.Float64()*(b.MaxLng-b.MinLng)}
}

// Config configures a run.
type Config struct {
	// RiderTargets and DriverTargets are gRPC addresses of rider and driver
	// instances; apps spread over them.
	RiderTargets  []string
	DriverTargets []string
	// Drivers is how many driver apps connect.
	Drivers int
	// Requests is how many rides riders request in all (0: unlimited until
	// Duration ends); Rate is requests per second.
	Requests int
	Rate     float64
	// Duration bounds the request phase; Grace is how long the run then
	// waits for rides in flight to reach a terminal state.
	Duration time.Duration
	Grace    time.Duration
	// City is where everything happens; HotSpots is the share of pickups
	// drawn near a few hot spots instead of uniformly.
	City     BBox
	HotSpots float64
	// Roads, if set, is the city's road graph: cars drive its fastest paths
	// at its speeds, and riders stand on its streets (nil: cars move in
	// straight lines across an empty box).
	Roads *roads.Graph
	// TripRadius bounds how far (metres, straight line) a drop-off is from
	// its pickup (0: anywhere in the city).
	TripRadius float64
	// Seed makes the spatial mix and decisions repeatable.
	Seed uint64
	// IDPrefix starts every app's id ("<prefix>-driver-3", "<prefix>-rider-7");
	// empty means "sim". Runs sharing a deployment at once need distinct
	// prefixes: two apps with one id are one driver (or rider).
	IDPrefix string
	// AcceptProbability is the chance a driver accepts an offer.
	AcceptProbability float64
	// RiderCancelProbability is the chance a rider cancels while waiting.
	RiderCancelProbability float64
	// LocationInterval is how often drivers send locations (the server's
	// cadence message overrides it).
	LocationInterval time.Duration
	// DriveTime is how long (wall clock) a simulated drive to the pickup
	// and to the drop-off takes. 0 on streets (Roads set) is real time: the
	// trip waits for the car to get there, and the drive to the pickup is
	// measured against the quoted ETA; 0 without streets is 20 s.
	DriveTime time.Duration
	// ReplyDelay is how long a driver looks at an offer before answering.
	ReplyDelay time.Duration
	// RetryBudget is how long an app keeps retrying one call that gets
	// retryable answers (Unavailable, DeadlineExceeded, Aborted) before it
	// gives up (0: DefaultRetryBudget). Apps retry with the same
	// idempotency key, exponential backoff with jitter, and the server's
	// RetryInfo delay when it sends one.
	RetryBudget time.Duration
	// Progress, if set, receives a snapshot of the counters every second.
	Progress func(Stats)
	// Credentials make each app's calls act as its rider or driver (nil:
	// the development principal header, for test platforms).
	Credentials Credentials
	// Transport secures the connections (nil: plaintext).
	Transport credentials.TransportCredentials
}

// DefaultConfig is a modest run over San Francisco.
func DefaultConfig() Config {
	return Config{
		Drivers:                50,
		Rate:                   1,
		Duration:               30 * time.Second,
		Grace:                  30 * time.Second,
		City:                   SanFrancisco,
		HotSpots:               0.5,
		Seed:                   1,
		AcceptProbability:      0.9,
		RiderCancelProbability: 0.02,
		LocationInterval:       2 * time.Second,
		ReplyDelay:             300 * time.Millisecond,
		RetryBudget:            DefaultRetryBudget,
	}
}

// Config errors.
var (
	ErrNoTargets = errors.New("sim: rider and driver targets are required")
	ErrBadConfig = errors.New("sim: counts, rates, probabilities and durations out of range")
)

// maxRate is one request per nanosecond, the request ticker's resolution.
const maxRate = float64(time.Second)

// Validate reports the first problem. The float checks are written so that
// NaN fails them (NaN compares false with everything).
func (c Config) Validate() error {
	switch {
	case len(c.RiderTargets) == 0 || len(c.DriverTargets) == 0:
		return ErrNoTargets
	case c.Drivers < 0 || c.Requests < 0 || !(c.Rate > 0 && c.Rate <= maxRate) || c.Duration <= 0 || c.Grace < 0 ||
		!probability(c.AcceptProbability) || !probability(c.RiderCancelProbability) || !probability(c.HotSpots) ||
		c.LocationInterval <= 0 || c.ReplyDelay < 0 || c.DriveTime < 0 || c.RetryBudget < 0 || !(c.TripRadius >= 0):
		return ErrBadConfig
	case !(c.City.MinLat < c.City.MaxLat && c.City.MinLng < c.City.MaxLng):
		return fmt.Errorf("%w: empty city box", ErrBadConfig)
	}
	return nil
}

func (c Config) idPrefix() string {
	if c.IDPrefix == "" {
		return "sim"
	}
	return c.IDPrefix
}

func probability(p float64) bool { return p >= 0 && p <= 1 }

// Package rider is the rider app's entry point: quotes that lock a fare,
// ride requests that become trips and start dispatch, cancellation, and the
// rider's view of a trip (including the assigned driver's position, live).
// It reaches the trip service and the matching workers only through their
// client packages.
package rider

import (
	"errors"
	"fmt"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// Config configures the rider engine.
type Config struct {
	// NearbyRadiusM is how far GetQuote looks for drivers to estimate the
	// pickup ETA.
	NearbyRadiusM float64
	// Topology is the process's one topology: surge cells of quotes, and
	// how long a request looks for a driver.
	Topology dispatch.Topology
	// PositionInterval is how often WatchTrip refreshes the assigned
	// driver's position.
	PositionInterval time.Duration
	// CallTimeout bounds every outgoing unary call.
	CallTimeout time.Duration
	// MaxTripKm is the longest ride served, pickup to drop-off as the crow
	// flies; GetQuote refuses farther drop-offs with InvalidArgument.
	MaxTripKm float64
}

// Config errors.
var (
	ErrBadConfig  = errors.New("rider: radius and durations must be positive")
	ErrBadMaxTrip = fmt.Errorf("rider: MaxTripKm must be above 0 and at most %v", maxTripKmLimit)
)

// maxTripKmLimit bounds MaxTripKm so every trip served can be priced: the
// fare table refuses road distances and durations far beyond it.
const maxTripKmLimit = 1000

// DefaultConfig returns production defaults in topology.
func DefaultConfig(topology dispatch.Topology) Config {
	return Config{
		Topology:         topology,
		NearbyRadiusM:    5000,
		PositionInterval: 2 * time.Second,
		CallTimeout:      5 * time.Second,
		MaxTripKm:        300,
	}
}

// Validate reports the first problem.
func (c Config) Validate() error {
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	if c.NearbyRadiusM <= 0 || c.PositionInterval <= 0 || c.CallTimeout <= 0 {
		return ErrBadConfig
	}
	if !(c.MaxTripKm > 0 && c.MaxTripKm <= maxTripKmLimit) {
		return fmt.Errorf("%w (got %v)", ErrBadMaxTrip, c.MaxTripKm)
	}
	return nil
}

// QuoteClaims is what a verified quote id says.
type QuoteClaims struct {
	RiderID string
	Product commonv1.Product
	Pickup  geo.LatLng
	Dropoff geo.LatLng
	Fare    *commonv1.Money
}

// Pricing prices rides and signs and verifies the quotes that lock fares.
type Pricing interface {
	// Quote prices a ride for rider at the given surge and signs it.
	Quote(riderID string, product commonv1.Product, pickup, dropoff geo.LatLng, surge float64, now time.Time) (*riderv1.Quote, error)
	// Verify checks a quote id's signature, expiry and rider; errors wrap
	// ErrQuoteInvalid or ErrQuoteExpired.
	Verify(quoteID, riderID string, now time.Time) (QuoteClaims, error)
	// Drive estimates driving from one point to another: along the roads
	// when there is a road network, else the straight-line estimate.
	Drive(from, to geo.LatLng, now time.Time) (meters float64, d time.Duration)
}

// Quote verification errors.
var (
	ErrQuoteInvalid = errors.New("quote is not valid")
	ErrQuoteExpired = errors.New("quote expired")
)

package dispatch

import (
	"fmt"
	"math"
	"time"
)

// Price is a product's tariff in integer minor units of Currency (cents).
type Price struct {
	Currency  string // ISO 4217, e.g. "USD"
	Base      int64
	PerKm     int64
	PerMinute int64
	Minimum   int64 // applied to the pre-surge subtotal
}

// PriceTable maps product → price.
type PriceTable map[string]Price

// Limits that keep fare arithmetic far from int64 overflow.
const (
	maxPrice    = 1_000_000_000 // minor units per component
	maxDistance = 10_000_000    // metres
	maxDuration = 100 * time.Hour
	maxSurge    = 100.0
)

// Validate checks every price.
func (t PriceTable) Validate() error {
	if len(t) == 0 {
		return fmt.Errorf("%w: empty price table", ErrInvalidConfig)
	}
	for prod, p := range t {
		if len(p.Currency) != 3 || p.Currency[0] < 'A' || p.Currency[0] > 'Z' || p.Currency[1] < 'A' || p.Currency[1] > 'Z' || p.Currency[2] < 'A' || p.Currency[2] > 'Z' {
			return fmt.Errorf("%w: product %q currency %q", ErrInvalidConfig, prod, p.Currency)
		}
		for _, v := range []int64{p.Base, p.PerKm, p.PerMinute, p.Minimum} {
			if v < 0 || v > maxPrice {
				return fmt.Errorf("%w: product %q price component %d out of [0, %d]", ErrInvalidConfig, prod, v, maxPrice)
			}
		}
	}
	return nil
}

// Fare is a priced trip with its parts, all in minor units.
type Fare struct {
	Product    string
	Currency   string
	Base       int64
	Distance   int64
	Time       int64
	Subtotal   int64 // Base + Distance + Time
	PreSurge   int64 // max(Subtotal, Minimum)
	SurgeMilli int64 // multiplier × 1000
	Total      int64
}

// Fare prices a trip of distanceM metres and duration dur at surge.
//
// Rounding (all values non-negative, every step half-up to the minor unit):
// the distance is rounded to whole metres and the duration to whole
// seconds; Distance = PerKm·m/1000 and Time = PerMinute·s/60 are each
// rounded; the surge multiplier is rounded to thousandths; Total =
// PreSurge·SurgeMilli/1000, rounded. The quote locks Total.
func (t PriceTable) Fare(product string, distanceM float64, dur time.Duration, surge float64) (Fare, error) {
	p, ok := t[product]
	if !ok {
		return Fare{}, fmt.Errorf("%w: %q", ErrUnknownProduct, product)
	}
	if !(distanceM >= 0 && distanceM <= maxDistance) || dur < 0 || dur > maxDuration || !(surge >= 1 && surge <= maxSurge) {
		return Fare{}, fmt.Errorf("%w: distance %v, duration %v, surge %v", ErrInvalidQuery, distanceM, dur, surge)
	}
	m := int64(math.Round(distanceM))
	s := int64(math.Round(dur.Seconds()))
	f := Fare{Product: product, Currency: p.Currency, Base: p.Base}
	f.Distance = divRound(p.PerKm*m, 1000)
	f.Time = divRound(p.PerMinute*s, 60)
	f.Subtotal = f.Base + f.Distance + f.Time
	f.PreSurge = max(f.Subtotal, p.Minimum)
	f.SurgeMilli = int64(math.Round(surge * 1000))
	f.Total = divRound(f.PreSurge*f.SurgeMilli, 1000)
	return f, nil
}

// divRound is a/b rounded half up, for a ≥ 0, b > 0.
func divRound(a, b int64) int64 { return (a + b/2) / b }

package rider

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
)

// fakeRoute answers every Route with one road time and length, or err.
type fakeRoute struct {
	dur    time.Duration
	meters float64
	err    error
}

func (f fakeRoute) Route(geo.LatLng, geo.LatLng) (time.Duration, float64, error) {
	return f.dur, f.meters, f.err
}

// TestPricingUsesRoadRoute: with a road network the quote's distance and
// duration (and so its fare) are the road route's; without an answer from
// it, the straight-line estimate, as with no network at all.
func TestPricingUsesRoadRoute(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	pickup := geo.LatLng{Lat: 39.74, Lng: -75.55}
	dropoff := geo.Destination(pickup, 45, 2000)
	now := time.Unix(1_800_000_000, 0)
	quote := func(opts ...PricingOption) (float64, time.Duration, int64) {
		t.Helper()
		p, err := NewPricing(key, time.Minute, opts...)
		if err != nil {
			t.Fatal(err)
		}
		q, err := p.Quote("rider-1", commonv1.Product_PRODUCT_STANDARD, pickup, dropoff, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		return q.GetDistanceMeters(), q.GetDuration().AsDuration(), q.GetFare().GetTotal().GetAmountMinor()
	}
	straightM, straightD, straightFare := quote()
	if math.Abs(straightM-2000*1.4) > 1 {
		t.Fatalf("straight-line distance %v, want ≈ 2800", straightM)
	}
	roadM, roadD, roadFare := quote(WithRoads(fakeRoute{dur: 11 * time.Minute, meters: 5200}))
	if roadM != 5200 || roadD != 11*time.Minute {
		t.Fatalf("road quote %v m %v, want the route's 5200 m 11m0s", roadM, roadD)
	}
	// standard: 250 + 120/km + 30/min.
	if want := int64(250 + 120*5.2 + 30*11); roadFare != want || roadFare <= straightFare {
		t.Fatalf("road fare %d, want %d (straight-line %d)", roadFare, want, straightFare)
	}
	for _, r := range []fakeRoute{
		{err: errors.New("destination: roads: too far from any road")},
		{dur: -1, meters: math.NaN()},
	} {
		m, d, fare := quote(WithRoads(r))
		if m != straightM || d != straightD || fare != straightFare {
			t.Fatalf("route %+v: quote %v m %v %d, want the straight-line %v m %v %d", r, m, d, fare, straightM, straightD, straightFare)
		}
	}
}

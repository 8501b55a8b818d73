package rider

import (
	"errors"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// FuzzQuote: if a GetQuoteRequest passes validation, pricing it must not
// panic, must give a non-negative total, and must sign a quote that verifies
// for its rider only and locks exactly the quoted fare. Every trip the edge
// serves (no longer than MaxTripKm) at a plausible surge must be priced.
func FuzzQuote(f *testing.F) {
	for _, r := range []*riderv1.GetQuoteRequest{
		{Pickup: &commonv1.LatLng{Lat: 37.77, Lng: -122.41}, Dropoff: &commonv1.LatLng{Lat: 37.80, Lng: -122.27}, Product: commonv1.Product_PRODUCT_STANDARD},
		{Pickup: &commonv1.LatLng{Lat: 90, Lng: 180}, Dropoff: &commonv1.LatLng{Lat: -90, Lng: -180}, Product: commonv1.Product_PRODUCT_XL},
		{Pickup: &commonv1.LatLng{Lat: 0, Lng: 179.9999}, Dropoff: &commonv1.LatLng{Lat: 0, Lng: -179.9999}, Product: commonv1.Product_PRODUCT_PREMIUM},
		{Pickup: &commonv1.LatLng{}, Dropoff: &commonv1.LatLng{}, Product: commonv1.Product_PRODUCT_ACCESSIBLE},
		// Just under the default 300 km limit, and just over.
		{Pickup: &commonv1.LatLng{Lat: 37.77, Lng: -122.41}, Dropoff: &commonv1.LatLng{Lat: 40.45, Lng: -122.41}, Product: commonv1.Product_PRODUCT_STANDARD},
		{Pickup: &commonv1.LatLng{Lat: 37.77, Lng: -122.41}, Dropoff: &commonv1.LatLng{Lat: 40.48, Lng: -122.41}, Product: commonv1.Product_PRODUCT_PREMIUM},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 1.0)
	}
	v, err := protovalidate.New()
	if err != nil {
		f.Fatal(err)
	}
	p, err := NewPricing([]byte(strings.Repeat("k", 32)), time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	maxKm := DefaultConfig(dispatch.DefaultTopology()).MaxTripKm
	f.Fuzz(func(t *testing.T, raw []byte, surge float64) {
		var req riderv1.GetQuoteRequest
		if proto.Unmarshal(raw, &req) != nil || v.Validate(&req) != nil {
			return
		}
		pickup := geo.LatLng{Lat: req.GetPickup().GetLat(), Lng: req.GetPickup().GetLng()}
		dropoff := geo.LatLng{Lat: req.GetDropoff().GetLat(), Lng: req.GetDropoff().GetLng()}
		q, err := p.Quote("rider-1", req.GetProduct(), pickup, dropoff, surge, now)
		if err != nil {
			if !errors.Is(err, ErrNoPrice) {
				t.Fatalf("valid request priced with %v", err)
			}
			if _, priced := DefaultPrices()[req.GetProduct().Key()]; priced && checkTripLength(pickup, dropoff, maxKm) == nil && surge >= 1 && surge <= 10 {
				t.Fatalf("a trip the edge serves was not priced: %v", err)
			}
			return
		}
		if q.GetFare().GetTotal().GetAmountMinor() < 0 {
			t.Fatalf("negative fare %v", q.GetFare())
		}
		claims, err := p.Verify(q.GetQuoteId(), "rider-1", now)
		if err != nil {
			t.Fatalf("own quote rejected: %v", err)
		}
		if claims.Fare.GetAmountMinor() != q.GetFare().GetTotal().GetAmountMinor() || claims.Product != req.GetProduct() {
			t.Fatalf("quote locks %v for %v, quoted %v for %v", claims.Fare, claims.Product, q.GetFare().GetTotal(), req.GetProduct())
		}
		if _, err := p.Verify(q.GetQuoteId(), "rider-2", now); !errors.Is(err, ErrQuoteInvalid) {
			t.Fatalf("another rider's use of the quote: %v", err)
		}
	})
}

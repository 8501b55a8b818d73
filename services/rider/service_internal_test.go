package rider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// northOf is the point km north of p (along its meridian).
func northOf(p geo.LatLng, km float64) geo.LatLng {
	return geo.LatLng{Lat: p.Lat + km*1000/geo.EarthRadius*180/math.Pi, Lng: p.Lng}
}

func ll(p geo.LatLng) *commonv1.LatLng { return &commonv1.LatLng{Lat: p.Lat, Lng: p.Lng} }

// failingPricing fails every call with err.
type failingPricing struct {
	err    error
	claims QuoteClaims
}

func (f failingPricing) Quote(string, commonv1.Product, geo.LatLng, geo.LatLng, float64, time.Time) (*riderv1.Quote, error) {
	return nil, f.err
}

func (f failingPricing) Drive(geo.LatLng, geo.LatLng, time.Time) (float64, time.Duration) {
	return 0, 0
}

func (f failingPricing) Verify(string, string, time.Time) (QuoteClaims, error) {
	return f.claims, f.err
}

// testService is a rider service whose matching has no workers (surge and
// nearby drivers are best effort) and no trip service.
func testService(t *testing.T, cfg Config, p Pricing) *Service {
	t.Helper()
	pool := dial.NewPool()
	t.Cleanup(func() { pool.Close() })
	mc := matchingclient.New(ring.NewStatic(), pool, cfg.Topology.PartitionResolution)
	s, err := New(cfg, nil, mc, nil, p, slog.New(slog.DiscardHandler), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// internalText is what no status message may carry: package prefixes,
// Go float formatting, wrapped internals.
var internalText = regexp.MustCompile(`dispatch:|rider:|invalid query|e\+0|key k1|signer`)

// TestQuoteStatuses: trips longer than MaxTripKm are refused with a
// message the app can show; no status carries internal error text.
func TestQuoteStatuses(t *testing.T) {
	sf := geo.LatLng{Lat: 37.77, Lng: -122.41}
	antipode := geo.LatLng{Lat: -sf.Lat, Lng: sf.Lng + 180}
	real, err := NewPricing([]byte(strings.Repeat("k", 32)), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig(dispatch.DefaultTopology())
	short := def
	short.MaxTripKm = 2.5
	for _, tc := range []struct {
		name            string
		cfg             Config
		pricing         Pricing
		pickup, dropoff geo.LatLng
		want            codes.Code
		msg             string // exact, or a regexp when it starts with ^
	}{
		{"across town", def, real, sf, geo.LatLng{Lat: 37.80, Lng: -122.27}, codes.OK, ""},
		{"just under the limit", def, real, sf, northOf(sf, 299.9), codes.OK, ""},
		{"just over the limit", def, real, sf, northOf(sf, 300.01), codes.InvalidArgument, "drop-off is 300.1 km from pickup; rides are limited to 300 km"},
		{"antipodal drop-off", def, real, sf, antipode, codes.InvalidArgument, `^drop-off is 20,0\d\d km from pickup; rides are limited to 300 km$`},
		{"across the antimeridian", def, real, geo.LatLng{Lat: 0, Lng: 179.9999}, geo.LatLng{Lat: 0, Lng: -179.9999}, codes.OK, ""},
		{"pole to pole", def, real, geo.LatLng{Lat: 90, Lng: 0}, geo.LatLng{Lat: -90, Lng: 0}, codes.InvalidArgument, `^drop-off is 20,0\d\d km from pickup; rides are limited to 300 km$`},
		{"a smaller configured limit", short, real, sf, northOf(sf, 3), codes.InvalidArgument, "drop-off is 3 km from pickup; rides are limited to 2.5 km"},
		{"no price: the reason stays inside", def, failingPricing{err: fmt.Errorf("%w: %w: distance 1.98e+07", ErrNoPrice, dispatch.ErrInvalidQuery)}, sf, northOf(sf, 10), codes.FailedPrecondition, "no price for this product"},
		{"signing failed", def, failingPricing{err: errors.New("signer: key k1: short")}, sf, northOf(sf, 10), codes.Internal, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testService(t, tc.cfg, tc.pricing)
			ctx := auth.WithPrincipal(context.Background(), auth.Principal{Role: auth.RoleRider, Subject: "r-1"})
			resp, err := s.GetQuote(ctx, &riderv1.GetQuoteRequest{Pickup: ll(tc.pickup), Dropoff: ll(tc.dropoff), Product: commonv1.Product_PRODUCT_STANDARD})
			checkStatus(t, err, tc.want, tc.msg)
			if tc.want == codes.OK && resp.GetQuote().GetQuoteId() == "" {
				t.Fatalf("no quote: %v", resp)
			}
		})
	}
}

// TestRequestRideStatuses: RequestRide says what is wrong with the quote,
// never how verification found out, and refuses a quote for a trip beyond
// the limit (signed before the limit was lowered).
func TestRequestRideStatuses(t *testing.T) {
	sf := geo.LatLng{Lat: 37.77, Lng: -122.41}
	def := DefaultConfig(dispatch.DefaultTopology())
	for _, tc := range []struct {
		name    string
		pricing Pricing
		want    codes.Code
		msg     string
	}{
		{"forged quote", failingPricing{err: fmt.Errorf("%w: dispatch: bad signature for key k1", ErrQuoteInvalid)}, codes.InvalidArgument, "quote is not valid; get a new quote"},
		{"expired quote", failingPricing{err: fmt.Errorf("%w: dispatch: quote expired at 1.7e9", ErrQuoteExpired)}, codes.FailedPrecondition, "quote expired; get a new quote"},
		{"quote beyond the limit", failingPricing{claims: QuoteClaims{RiderID: "r-1", Pickup: sf, Dropoff: northOf(sf, 1000), Product: commonv1.Product_PRODUCT_STANDARD}}, codes.InvalidArgument, "drop-off is 1,000 km from pickup; rides are limited to 300 km"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testService(t, def, tc.pricing)
			ctx := auth.WithPrincipal(context.Background(), auth.Principal{Role: auth.RoleRider, Subject: "r-1"})
			_, err := s.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: "q", IdempotencyKey: "k"})
			checkStatus(t, err, tc.want, tc.msg)
		})
	}
}

func checkStatus(t *testing.T, err error, want codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a status: %v", err)
	}
	if st.Code() != want {
		t.Fatalf("code %v, want %v (%q)", st.Code(), want, st.Message())
	}
	if want == codes.OK {
		return
	}
	if strings.HasPrefix(msg, "^") {
		if !regexp.MustCompile(msg).MatchString(st.Message()) {
			t.Fatalf("message %q, want %s", st.Message(), msg)
		}
	} else if st.Message() != msg {
		t.Fatalf("message %q, want %q", st.Message(), msg)
	}
	if internalText.MatchString(st.Message()) {
		t.Fatalf("message %q carries internal text", st.Message())
	}
}

func TestConfigMaxTripKm(t *testing.T) {
	for _, tc := range []struct {
		km float64
		ok bool
	}{{300, true}, {0.5, true}, {maxTripKmLimit, true}, {0, false}, {-1, false}, {math.NaN(), false}, {math.Inf(1), false}, {maxTripKmLimit + 1, false}} {
		cfg := DefaultConfig(dispatch.DefaultTopology())
		cfg.MaxTripKm = tc.km
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("MaxTripKm %v: %v, want ok=%v", tc.km, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrBadMaxTrip) || !strings.Contains(err.Error(), "MaxTripKm")) {
			t.Errorf("MaxTripKm %v: error %q does not name the field", tc.km, err)
		}
	}
}

package rider

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// DefaultPrices is the price table a deployment starts with (USD, cents).
func DefaultPrices() dispatch.PriceTable {
	return dispatch.PriceTable{
		"standard":   {Currency: "USD", Base: 250, PerKm: 120, PerMinute: 30, Minimum: 700},
		"xl":         {Currency: "USD", Base: 400, PerKm: 190, PerMinute: 45, Minimum: 1000},
		"premium":    {Currency: "USD", Base: 700, PerKm: 300, PerMinute: 60, Minimum: 1500},
		"accessible": {Currency: "USD", Base: 250, PerKm: 120, PerMinute: 30, Minimum: 700},
	}
}

// pricing prices rides with the dispatch fare table and locks them with
// the dispatch quote signer. The quote id the rider gets is self-contained
// (the signed fields travel with the signature), so any rider instance
// holding the key can honour it.
type pricing struct {
	prices dispatch.PriceTable
	rank   dispatch.RankConfig
	roads  RoadRoute
	signer *dispatch.QuoteSigner
}

// RoadRoute is the road network as pricing needs it: the fastest driving
// time from one point to another and that path's length in metres. An
// error (either point off the network) or a negative time means no road
// answer; pricing then uses the straight-line estimate.
type RoadRoute interface {
	Route(from, to geo.LatLng) (time.Duration, float64, error)
}

// PricingOption configures NewPricing.
type PricingOption func(*pricing)

// WithRoads prices rides by the road route from pickup to drop-off
// (distance and duration); without it, or where the route has no answer,
// straight-line distance × road factor at the default speed.
func WithRoads(r RoadRoute) PricingOption { return func(p *pricing) { p.roads = r } }

// NewPricing returns Pricing over the default prices, signing quotes with
// key (≥ 32 bytes, shared by every rider instance) that lock fares for ttl.
func NewPricing(key []byte, ttl time.Duration, opts ...PricingOption) (Pricing, error) {
	signer, err := dispatch.NewQuoteSigner(dispatch.QuoteConfig{KeyID: "k1", Keys: map[string][]byte{"k1": key}, TTL: ttl}, dispatch.SystemClock{})
	if err != nil {
		return nil, err
	}
	prices := DefaultPrices()
	if err := prices.Validate(); err != nil {
		return nil, err
	}
	p := &pricing{prices: prices, rank: dispatch.DefaultRankConfig(), signer: signer}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

// estimate is the ride's road distance and duration: the road route's when
// there is one, else the straight-line estimate.
func (p *pricing) estimate(pickup, dropoff geo.LatLng, now time.Time) (float64, time.Duration) {
	if p.roads != nil {
		if dur, meters, err := p.roads.Route(pickup, dropoff); err == nil && dur >= 0 && !math.IsNaN(meters) {
			return meters, dur
		}
	}
	road := geo.Distance(pickup, dropoff) * p.rank.RoadFactor
	cell, _ := geo.CellAt(pickup, 9)
	speed := p.rank.Speeds.Speed(cell, now)
	return road, time.Duration(road / speed * float64(time.Second))
}

// Drive implements Pricing.
func (p *pricing) Drive(from, to geo.LatLng, now time.Time) (float64, time.Duration) {
	return p.estimate(from, to, now)
}

func money(amount int64, currency string) *commonv1.Money {
	return &commonv1.Money{AmountMinor: amount, Currency: currency}
}

// Quote implements Pricing.
func (p *pricing) Quote(riderID string, product commonv1.Product, pickup, dropoff geo.LatLng, surge float64, now time.Time) (*riderv1.Quote, error) {
	key := product.Key()
	dist, dur := p.estimate(pickup, dropoff, now)
	fare, err := p.prices.Fare(key, dist, dur, surge)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPrice, err)
	}
	q, err := p.signer.Issue(dispatch.QuoteFields{
		RiderID: riderID, Product: key, Pickup: pickup, Dropoff: dropoff,
		Currency: fare.Currency, Amount: fare.Total, SurgeMilli: fare.SurgeMilli,
		DistanceM: int64(dist), DurationS: int64(dur.Seconds()),
	})
	if err != nil {
		return nil, err
	}
	id, err := encodeQuote(q)
	if err != nil {
		return nil, err
	}
	return &riderv1.Quote{
		QuoteId:         id,
		ExpiresAt:       timestamppb.New(q.ExpiresAt),
		Product:         product,
		SurgeMultiplier: float64(fare.SurgeMilli) / 1000,
		DistanceMeters:  dist,
		Duration:        durationpb.New(dur),
		Fare: &riderv1.FareBreakdown{
			Base:     money(fare.Base, fare.Currency),
			Distance: money(fare.Distance, fare.Currency),
			Time:     money(fare.Time, fare.Currency),
			Surge:    money(fare.Total-fare.PreSurge, fare.Currency),
			Minimum:  money(p.prices[key].Minimum, fare.Currency),
			Total:    money(fare.Total, fare.Currency),
		},
	}, nil
}

// ErrNoPrice means the product has no price here.
var ErrNoPrice = errors.New("no price for this product")

// Verify implements Pricing.
func (p *pricing) Verify(quoteID, riderID string, _ time.Time) (QuoteClaims, error) {
	q, err := decodeQuote(quoteID)
	if err != nil {
		return QuoteClaims{}, fmt.Errorf("%w: %v", ErrQuoteInvalid, err)
	}
	if err := p.signer.Verify(q); err != nil {
		if errors.Is(err, dispatch.ErrQuoteExpired) {
			return QuoteClaims{}, fmt.Errorf("%w: %v", ErrQuoteExpired, err)
		}
		return QuoteClaims{}, fmt.Errorf("%w: %v", ErrQuoteInvalid, err)
	}
	if q.RiderID != riderID {
		return QuoteClaims{}, fmt.Errorf("%w: issued to another rider", ErrQuoteInvalid)
	}
	return QuoteClaims{
		RiderID: q.RiderID,
		Product: commonv1.ProductOfKey(q.Product),
		Pickup:  q.Pickup,
		Dropoff: q.Dropoff,
		Fare:    money(q.Amount, q.Currency),
	}, nil
}

// A quote id is "<signed id>~<base64url(JSON of the signed fields)>".
const quoteSep = "~"

func encodeQuote(q dispatch.Quote) (string, error) {
	fields, err := json.Marshal(q.QuoteFields)
	if err != nil {
		return "", err
	}
	return q.ID + quoteSep + base64.RawURLEncoding.EncodeToString(fields), nil
}

func decodeQuote(id string) (dispatch.Quote, error) {
	signed, encoded, ok := strings.Cut(id, quoteSep)
	if !ok {
		return dispatch.Quote{}, errors.New("malformed quote id")
	}
	raw, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return dispatch.Quote{}, errors.New("malformed quote id")
	}
	var q dispatch.Quote
	if err := json.Unmarshal(raw, &q.QuoteFields); err != nil {
		return dispatch.Quote{}, errors.New("malformed quote id")
	}
	exp, err := dispatch.ParseQuoteExpiry(signed)
	if err != nil {
		return dispatch.Quote{}, err
	}
	q.ID, q.ExpiresAt = signed, exp
	return q, nil
}

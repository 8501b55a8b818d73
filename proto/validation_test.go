package proto_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

const tripID = "0b8f3f2e-6f43-4a4e-9a52-3b8f0c1d2e3f"

func sf() *commonv1.LatLng  { return &commonv1.LatLng{Lat: 37.7749, Lng: -122.4194} }
func oak() *commonv1.LatLng { return &commonv1.LatLng{Lat: 37.8044, Lng: -122.2712} }

func validLocation() *matchingv1.DriverLocation {
	return &matchingv1.DriverLocation{
		DriverId:       "driver-1",
		Position:       sf(),
		HeadingDeg:     90,
		SpeedMps:       12,
		Product:        commonv1.Product_PRODUCT_STANDARD,
		Status:         matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE,
		GatewayAddress: "127.0.0.1:7070",
		RecordedAt:     timestamppb.Now(),
	}
}

func locations(n int) []*matchingv1.DriverLocation {
	out := make([]*matchingv1.DriverLocation, n)
	for i := range out {
		out[i] = validLocation()
	}
	return out
}

// TestValidation checks that well-formed requests pass and that each class of
// bad input is rejected with a violation naming the offending field.
func TestValidation(t *testing.T) {
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		msg       proto.Message
		wantField string // empty: must be valid
	}{
		{"quote ok", &riderv1.GetQuoteRequest{Pickup: sf(), Dropoff: oak(), Product: commonv1.Product_PRODUCT_XL}, ""},
		{"quote lat above 90", &riderv1.GetQuoteRequest{Pickup: &commonv1.LatLng{Lat: 90.5, Lng: 0}, Dropoff: oak(), Product: commonv1.Product_PRODUCT_XL}, "pickup.lat"},
		{"quote lat below -90", &riderv1.GetQuoteRequest{Pickup: sf(), Dropoff: &commonv1.LatLng{Lat: -91, Lng: 0}, Product: commonv1.Product_PRODUCT_XL}, "dropoff.lat"},
		{"quote lng out of range", &riderv1.GetQuoteRequest{Pickup: &commonv1.LatLng{Lat: 0, Lng: 180.01}, Dropoff: oak(), Product: commonv1.Product_PRODUCT_XL}, "pickup.lng"},
		{"quote NaN lat", &riderv1.GetQuoteRequest{Pickup: &commonv1.LatLng{Lat: math.NaN(), Lng: 0}, Dropoff: oak(), Product: commonv1.Product_PRODUCT_XL}, "pickup.lat"},
		{"quote Inf lng", &riderv1.GetQuoteRequest{Pickup: sf(), Dropoff: &commonv1.LatLng{Lat: 0, Lng: math.Inf(-1)}, Product: commonv1.Product_PRODUCT_XL}, "dropoff.lng"},
		{"quote missing pickup", &riderv1.GetQuoteRequest{Dropoff: oak(), Product: commonv1.Product_PRODUCT_XL}, "pickup"},
		{"quote unspecified product", &riderv1.GetQuoteRequest{Pickup: sf(), Dropoff: oak()}, "product"},
		{"quote unknown product", &riderv1.GetQuoteRequest{Pickup: sf(), Dropoff: oak(), Product: 99}, "product"},
		{"quote poles and antimeridian ok", &riderv1.GetQuoteRequest{Pickup: &commonv1.LatLng{Lat: 90, Lng: 180}, Dropoff: &commonv1.LatLng{Lat: -90, Lng: -180}, Product: commonv1.Product_PRODUCT_STANDARD}, ""},
		{"request ok", &riderv1.RequestRideRequest{QuoteId: "q", IdempotencyKey: "k"}, ""},
		{"request missing quote id", &riderv1.RequestRideRequest{IdempotencyKey: "k"}, "quote_id"},
		{"request missing idempotency key", &riderv1.RequestRideRequest{QuoteId: "q"}, "idempotency_key"},
		{"request oversized key", &riderv1.RequestRideRequest{QuoteId: "q", IdempotencyKey: strings.Repeat("k", 129)}, "idempotency_key"},
		{"cancel bad trip id", &riderv1.CancelRideRequest{TripId: "not-a-uuid", IdempotencyKey: "k"}, "trip_id"},
		{"cancel oversized reason", &riderv1.CancelRideRequest{TripId: tripID, IdempotencyKey: "k", Reason: strings.Repeat("r", 501)}, "reason"},
		{"rate ok", &riderv1.RateTripRequest{TripId: tripID, Stars: 5}, ""},
		{"rate zero stars", &riderv1.RateTripRequest{TripId: tripID, Stars: 0}, "stars"},
		{"rate six stars", &riderv1.RateTripRequest{TripId: tripID, Stars: 6}, "stars"},
		{"list rider page too big", &riderv1.ListTripsRequest{PageSize: 101}, "page_size"},
		{"watch missing trip id", &riderv1.WatchTripRequest{}, "trip_id"},

		{"connect location ok", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: sf(), HeadingDeg: 359, SpeedMps: 10, AccuracyM: 5, RecordedAt: timestamppb.Now()}}}, ""},
		{"connect empty message", &driverv1.ConnectRequest{Seq: 1}, "msg"},
		{"connect NaN speed", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: sf(), SpeedMps: float32(math.NaN()), RecordedAt: timestamppb.Now()}}}, "location.speed_mps"},
		{"connect heading 361", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: sf(), HeadingDeg: 361, RecordedAt: timestamppb.Now()}}}, "location.heading_deg"},
		{"connect missing timestamp", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: sf()}}}, "location.recorded_at"},
		{"connect lat out of range", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: &commonv1.LatLng{Lat: 100}, RecordedAt: timestamppb.Now()}}}, "location.position.lat"},
		{"connect reply missing offer id", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: &driverv1.OfferReply{TripId: tripID, Decision: driverv1.OfferDecision_OFFER_DECISION_ACCEPT}}}, "offer_reply.offer_id"},
		{"connect availability unspecified", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{}}}, "availability.availability"},
		{"driver cancel needs reason", &driverv1.CancelTripRequest{TripId: tripID, IdempotencyKey: "k"}, "reason"},
		{"driver arrive ok", &driverv1.ArriveAtPickupRequest{TripId: tripID, IdempotencyKey: "k"}, ""},
		{"push missing driver", &driverv1.PushToDriverRequest{Message: &driverv1.ConnectResponse{}}, "driver_id"},

		{"ingest ok", &matchingv1.IngestLocationsRequest{Locations: locations(3)}, ""},
		{"ingest oversized batch", &matchingv1.IngestLocationsRequest{Locations: locations(5001)}, "locations"},
		{"ingest missing driver id", &matchingv1.IngestLocationsRequest{Locations: []*matchingv1.DriverLocation{func() *matchingv1.DriverLocation { l := validLocation(); l.DriverId = ""; return l }()}}, "locations[0].driver_id"},
		{"ingest missing gateway", &matchingv1.IngestLocationsRequest{Locations: []*matchingv1.DriverLocation{func() *matchingv1.DriverLocation { l := validLocation(); l.GatewayAddress = ""; return l }()}}, "locations[0].gateway_address"},
		{"nearby ok", &matchingv1.NearbyDriversRequest{Center: sf(), RadiusMeters: 3000, Limit: 10}, ""},
		{"nearby radius too big", &matchingv1.NearbyDriversRequest{Center: sf(), RadiusMeters: 50001, Limit: 10}, "radius_meters"},
		{"nearby NaN radius", &matchingv1.NearbyDriversRequest{Center: sf(), RadiusMeters: math.NaN(), Limit: 10}, "radius_meters"},
		{"nearby zero limit", &matchingv1.NearbyDriversRequest{Center: sf(), RadiusMeters: 10}, "limit"},
		{"cell stats oversized list", &matchingv1.CellStatsRequest{Cells: make([]string, 2001)}, "cells"},
		{"dispatch missing trip", &matchingv1.DispatchRequest{}, "trip"},

		{"create ok", &tripv1.CreateTripRequest{IdempotencyKey: "k", RiderId: "r", Pickup: sf(), Dropoff: oak(), Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1250, Currency: "USD"}}, ""},
		{"create missing rider", &tripv1.CreateTripRequest{IdempotencyKey: "k", Pickup: sf(), Dropoff: oak(), Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1250, Currency: "USD"}}, "rider_id"},
		{"create negative fare", &tripv1.CreateTripRequest{IdempotencyKey: "k", RiderId: "r", Pickup: sf(), Dropoff: oak(), Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: -1, Currency: "USD"}}, "quoted_fare.amount_minor"},
		{"create bad currency", &tripv1.CreateTripRequest{IdempotencyKey: "k", RiderId: "r", Pickup: sf(), Dropoff: oak(), Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1, Currency: "usd"}}, "quoted_fare.currency"},
		{"assign missing driver", &tripv1.AssignDriverRequest{TripId: tripID, IdempotencyKey: "k"}, "driver_id"},
		{"transition created event rejected", &tripv1.TransitionRequest{TripId: tripID, Event: commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED, Actor: commonv1.Actor_ACTOR_RIDER, IdempotencyKey: "k"}, "event"},
		{"transition missing actor", &tripv1.TransitionRequest{TripId: tripID, Event: commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED, IdempotencyKey: "k"}, "actor"},
		{"list too many states", &tripv1.ListTripsRequest{States: make([]commonv1.TripState, 9)}, "states"},
		{"list unspecified state", &tripv1.ListTripsRequest{States: []commonv1.TripState{0}}, "states[0]"},
		{"watch bad trip id", &tripv1.WatchTripsRequest{TripIds: []string{"x"}}, "trip_ids[0]"},
		{"watch too many trips", &tripv1.WatchTripsRequest{TripIds: make([]string, 101)}, "trip_ids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Validate(tt.msg)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("valid request rejected: %v", err)
				}
				return
			}
			var verr *protovalidate.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a validation error on %s", err, tt.wantField)
			}
			var fields []string
			for _, viol := range verr.Violations {
				field := protovalidate.FieldPathString(viol.Proto.GetField())
				fields = append(fields, field+": "+viol.Proto.GetMessage())
				if field == tt.wantField {
					if viol.Proto.GetMessage() == "" {
						t.Fatalf("violation on %s has no reason", field)
					}
					return
				}
			}
			t.Fatalf("no violation on %s; got %q", tt.wantField, fields)
		})
	}
}

package node

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// tripWatch collects what a rider's WatchTrip stream delivers.
type tripWatch struct {
	mu        sync.Mutex
	states    []commonv1.TripState
	last      *commonv1.Trip
	positions []*commonv1.DriverPosition
	remaining []float64       // metres to the next stop, per position
	etas      []time.Duration // time to the next stop, per position
	done      chan struct{}
}

func watchTrip(t *testing.T, cc *grpc.ClientConn, riderID, tripID string) *tripWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(as(auth.RoleRider, riderID))
	t.Cleanup(cancel)
	s, err := riderv1.NewRiderServiceClient(cc).WatchTrip(ctx, &riderv1.WatchTripRequest{TripId: tripID})
	if err != nil {
		t.Fatal(err)
	}
	w := &tripWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if tr := m.GetTrip(); tr != nil {
				w.mu.Lock()
				if n := len(w.states); n == 0 || w.states[n-1] != tr.GetState() {
					w.states = append(w.states, tr.GetState())
				}
				w.last = tr
				w.mu.Unlock()
			}
			if p := m.GetDriverPosition(); p != nil {
				w.mu.Lock()
				w.positions = append(w.positions, p)
				w.remaining = append(w.remaining, m.GetRemainingMeters())
				w.etas = append(w.etas, m.GetEta().AsDuration())
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// waitState waits until the watch has seen state.
func (w *tripWatch) waitState(t *testing.T, state commonv1.TripState) *commonv1.Trip {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, s := range w.states {
			if s == state {
				last := w.last
				w.mu.Unlock()
				return last
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("watch never saw %v; saw %v", state, w.states)
	return nil
}

// waitPosition waits until the watch has delivered the driver at lat.
func (w *tripWatch) waitPosition(t *testing.T, driverID string, lat float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		for _, p := range w.positions {
			if p.GetDriverId() == driverID && p.GetPosition().GetLat() == lat {
				w.mu.Unlock()
				return
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("watch never delivered %s at lat %v; got %v", driverID, lat, w.positions)
}

// TestWatchTripFollowsDriver: once a driver is assigned, the rider's watch
// gets each position the driver's app reports, pushed from the gateway
// holding its stream, and keeps getting them after the driver's app
// reconnects.
func TestWatchTripFollowsDriver(t *testing.T) {
	_, cc := startNode(t, AllServices...)
	at := &commonv1.LatLng{Lat: 37.7750, Lng: -122.4195}
	s, cancel := connect(t, cc, "d-followed", at)
	defer cancel()
	waitIndexed(t, cc, "d-followed")
	trip := request(t, cc, "r-follow", "follow-1")
	reply(t, s, 10, next(t, s, offerOf), driverv1.OfferDecision_OFFER_DECISION_ACCEPT)
	if r := next(t, s, resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED {
		t.Fatalf("outcome %v", r)
	}
	w := watchTrip(t, cc, "r-follow", trip.GetId())
	w.waitState(t, commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED)
	seq := uint64(20)
	for i, lat := range []float64{37.7751, 37.7752} {
		// Samples a second apart (the gateway refuses faster ones).
		if err := s.Send(withSeq(seq+uint64(i), location(&commonv1.LatLng{Lat: lat, Lng: -122.4195}, time.Now()))); err != nil {
			t.Fatal(err)
		}
		w.waitPosition(t, "d-followed", lat)
		time.Sleep(1100 * time.Millisecond)
	}
	// Each position comes with the drive left to the pickup: here (no road
	// network) the straight-line estimate, distance × 1.4.
	w.mu.Lock()
	got, eta := w.remaining[len(w.remaining)-1], w.etas[len(w.etas)-1]
	w.mu.Unlock()
	if eta <= 0 {
		t.Errorf("ETA %v with the position", eta)
	}
	want := geo.Distance(geo.LatLng{Lat: 37.7752, Lng: -122.4195}, geo.LatLng{Lat: sfPickup.GetLat(), Lng: sfPickup.GetLng()}) * 1.4
	if math.Abs(got-want) > 0.01*want+1 {
		t.Errorf("remaining %.0f m to the pickup, want %.0f m", got, want)
	}
	// The app reconnects: the old feed ends, the rider's service finds the
	// driver again and follows the new stream.
	cancel()
	s2, cancel2 := connect(t, cc, "d-followed", &commonv1.LatLng{Lat: 37.7753, Lng: -122.4195})
	defer cancel2()
	_ = s2
	w.waitPosition(t, "d-followed", 37.7753)
}

func withSeq(seq uint64, m *driverv1.ConnectRequest) *driverv1.ConnectRequest {
	m.Seq = seq
	return m
}

// waitIndexed waits until matching indexes the driver.
func waitIndexed(t *testing.T, cc *grpc.ClientConn, driverID string) {
	t.Helper()
	m := matchingv1.NewMatchingServiceClient(cc)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := m.NearbyDrivers(as(auth.RoleService, "test"), &matchingv1.NearbyDriversRequest{Center: sfPickup, RadiusMeters: 5000, Limit: 10, DriverIds: []string{driverID}, IncludeBusy: true})
		if err == nil && len(resp.GetDrivers()) == 1 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("driver %s never indexed", driverID)
}

func offerOf(m *driverv1.ConnectResponse) (*driverv1.Offer, bool) {
	o := m.GetOffer()
	return o, o != nil
}

func resultOf(m *driverv1.ConnectResponse) (*driverv1.OfferResult, bool) {
	r := m.GetOfferResult()
	return r, r != nil
}

func tripUpdate(state commonv1.TripState) func(*driverv1.ConnectResponse) (*commonv1.Trip, bool) {
	return func(m *driverv1.ConnectResponse) (*commonv1.Trip, bool) {
		tr := m.GetTripUpdate().GetTrip()
		return tr, tr != nil && tr.GetState() == state
	}
}

func reply(t *testing.T, s driverv1.DriverService_ConnectClient, seq uint64, o *driverv1.Offer, d driverv1.OfferDecision) {
	t.Helper()
	if err := s.Send(&driverv1.ConnectRequest{Seq: seq, Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: &driverv1.OfferReply{OfferId: o.GetOfferId(), TripId: o.GetTripId(), Decision: d}}}); err != nil {
		t.Fatal(err)
	}
}

// request quotes and requests a ride for rider.
func request(t *testing.T, cc *grpc.ClientConn, riderID, key string) *commonv1.Trip {
	t.Helper()
	rc := riderv1.NewRiderServiceClient(cc)
	ctx := as(auth.RoleRider, riderID)
	q, err := rc.GetQuote(ctx, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
	if err != nil {
		t.Fatal(err)
	}
	if q.GetQuote().GetFare().GetTotal().GetAmountMinor() <= 0 {
		t.Fatalf("quote without a price: %v", q)
	}
	resp, err := rc.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: q.GetQuote().GetQuoteId(), IdempotencyKey: key})
	if err != nil {
		t.Fatal(err)
	}
	again, err := rc.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: q.GetQuote().GetQuoteId(), IdempotencyKey: key})
	if err != nil || again.GetTrip().GetId() != resp.GetTrip().GetId() {
		t.Fatalf("same key gave trip %v (%v), want %s", again.GetTrip().GetId(), err, resp.GetTrip().GetId())
	}
	if resp.GetTrip().GetQuotedFare().GetAmountMinor() != q.GetQuote().GetFare().GetTotal().GetAmountMinor() {
		t.Fatalf("trip fare %v != quoted %v", resp.GetTrip().GetQuotedFare(), q.GetQuote().GetFare().GetTotal())
	}
	return resp.GetTrip()
}

// TestRide runs a whole ride through the services over real sockets: the
// first driver declines, the second lets the offer lapse, the third accepts
// and drives it to completion; rider and driver see each change. Batched
// dispatch walks the same drivers: each window's nearest remaining one.
func TestRide(t *testing.T) {
	for _, mode := range []string{"greedy", "batched"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(AllServices...)
			cfg.DispatchMode, cfg.BatchWindow = mode, time.Second
			// Three windows and a lapse must fit.
			cfg.Topology.DispatchDeadline = 12 * time.Second
			ride(t, cfg)
		})
	}
}

func ride(t *testing.T, cfg Config) {
	_, cc := startNodeConfig(t, cfg)
	drv := driverv1.NewDriverServiceClient(cc)
	// Three drivers at increasing distance from the pickup.
	var streams []driverv1.DriverService_ConnectClient
	for i, at := range []*commonv1.LatLng{
		{Lat: 37.7750, Lng: -122.4195},
		{Lat: 37.7760, Lng: -122.4200},
		{Lat: 37.7770, Lng: -122.4210},
	} {
		id := []string{"d-near", "d-mid", "d-far"}[i]
		s, cancel := connect(t, cc, id, at)
		t.Cleanup(cancel)
		waitIndexed(t, cc, id)
		streams = append(streams, s)
	}
	trip := request(t, cc, "r-ride", "ride-1")
	w := watchTrip(t, cc, "r-ride", trip.GetId())

	o := next(t, streams[0], offerOf)
	if o.GetTripId() != trip.GetId() || o.GetFare().GetAmountMinor() != trip.GetQuotedFare().GetAmountMinor() {
		t.Fatalf("offer %v does not match trip %v", o, trip)
	}
	reply(t, streams[0], 10, o, driverv1.OfferDecision_OFFER_DECISION_DECLINE)
	if r := next(t, streams[0], resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_DECLINED {
		t.Fatalf("decline outcome %v", r)
	}
	// The second driver lets it lapse.
	o2 := next(t, streams[1], offerOf)
	if r := next(t, streams[1], resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED || r.GetOfferId() != o2.GetOfferId() {
		t.Fatalf("lapsed offer outcome %v", r)
	}
	o3 := next(t, streams[2], offerOf)
	reply(t, streams[2], 10, o3, driverv1.OfferDecision_OFFER_DECISION_ACCEPT)
	if r := next(t, streams[2], resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED {
		t.Fatalf("accept outcome %v", r)
	}
	assigned := w.waitState(t, commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED)
	if assigned.GetDriverId() != "d-far" {
		t.Fatalf("assigned to %q", assigned.GetDriverId())
	}
	dctx := as(auth.RoleDriver, "d-far")
	if _, err := drv.ArriveAtPickup(dctx, &driverv1.ArriveAtPickupRequest{TripId: trip.GetId(), IdempotencyKey: "a"}); err != nil {
		t.Fatal(err)
	}
	next(t, streams[2], tripUpdate(commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED))
	if _, err := drv.StartTrip(dctx, &driverv1.StartTripRequest{TripId: trip.GetId(), IdempotencyKey: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := drv.CompleteTrip(dctx, &driverv1.CompleteTripRequest{TripId: trip.GetId(), IdempotencyKey: "c"}); err != nil {
		t.Fatal(err)
	}
	done := w.waitState(t, commonv1.TripState_TRIP_STATE_COMPLETED)
	if done.GetFinalFare().GetAmountMinor() != trip.GetQuotedFare().GetAmountMinor() {
		t.Fatalf("final fare %v, quoted %v", done.GetFinalFare(), trip.GetQuotedFare())
	}
	<-w.done // the watch ends at a terminal state
	w.mu.Lock()
	defer w.mu.Unlock()
	want := []commonv1.TripState{commonv1.TripState_TRIP_STATE_REQUESTED, commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED,
		commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED, commonv1.TripState_TRIP_STATE_IN_PROGRESS, commonv1.TripState_TRIP_STATE_COMPLETED}
	if len(w.states) != len(want) {
		t.Fatalf("rider saw %v, want %v", w.states, want)
	}
	for i := range want {
		if w.states[i] != want[i] {
			t.Fatalf("rider saw %v, want %v", w.states, want)
		}
	}
}

// TestRiderCancels: before assignment the offer is withdrawn from the
// driver; after assignment the driver gets the cancellation as an update.
func TestRiderCancels(t *testing.T) {
	_, cc := startNode(t, AllServices...)
	rc := riderv1.NewRiderServiceClient(cc)
	s, cancel := connect(t, cc, "d-cancel", &commonv1.LatLng{Lat: 37.7750, Lng: -122.4195})
	defer cancel()
	waitIndexed(t, cc, "d-cancel")

	before := request(t, cc, "r-cancel", "c-1")
	o := next(t, s, offerOf)
	if _, err := rc.CancelRide(as(auth.RoleRider, "r-cancel"), &riderv1.CancelRideRequest{TripId: before.GetId(), Reason: "too slow", IdempotencyKey: "x1"}); err != nil {
		t.Fatal(err)
	}
	if r := next(t, s, resultOf); r.GetOfferId() != o.GetOfferId() || r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN {
		t.Fatalf("offer of a cancelled trip: %v", r)
	}

	after := request(t, cc, "r-cancel", "c-2")
	o = next(t, s, offerOf)
	reply(t, s, 20, o, driverv1.OfferDecision_OFFER_DECISION_ACCEPT)
	if r := next(t, s, resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED {
		t.Fatalf("accept outcome %v", r)
	}
	if _, err := rc.CancelRide(as(auth.RoleRider, "r-cancel"), &riderv1.CancelRideRequest{TripId: after.GetId(), Reason: "plans changed", IdempotencyKey: "x2"}); err != nil {
		t.Fatal(err)
	}
	tr := next(t, s, tripUpdate(commonv1.TripState_TRIP_STATE_CANCELLED))
	if tr.GetId() != after.GetId() || tr.GetCancelledBy() != commonv1.Actor_ACTOR_RIDER || tr.GetEndReason() != "plans changed" {
		t.Fatalf("driver saw %v", tr)
	}
}

// TestNoDriverFound: with nobody nearby the request ends NO_DRIVER_FOUND at
// its deadline, with a reason, and the rider's watch says so.
func TestNoDriverFound(t *testing.T) {
	_, cc := startNode(t, AllServices...)
	trip := request(t, cc, "r-alone", "n-1")
	w := watchTrip(t, cc, "r-alone", trip.GetId())
	got := w.waitState(t, commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND)
	if got.GetEndReason() == "" {
		t.Fatal("no reason given")
	}
}

package driver

import (
	"testing"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

// TestTripHold follows a driver's trips through the trip events the
// gateway relays: its dispatch status, and which offers it may get. A
// driver carrying a rider is finishing (offered only the trip after that
// ride); one with a pickup is busy; events of other drivers' trips or in
// any order leave the rest alone.
func TestTripHold(t *testing.T) {
	const (
		assigned   = commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED
		arrived    = commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED
		inProgress = commonv1.TripState_TRIP_STATE_IN_PROGRESS
		completed  = commonv1.TripState_TRIP_STATE_COMPLETED
		cancelled  = commonv1.TripState_TRIP_STATE_CANCELLED
		requested  = commonv1.TripState_TRIP_STATE_REQUESTED
		available  = matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE
		busy       = matchingv1.DriverStatus_DRIVER_STATUS_BUSY
		finishing  = matchingv1.DriverStatus_DRIVER_STATUS_FINISHING
	)
	dropoff := &commonv1.LatLng{Lat: 39.74, Lng: -75.55}
	type step struct {
		trip  string
		state commonv1.TripState
		mine  bool
	}
	tests := []struct {
		name       string
		steps      []step
		want       matchingv1.DriverStatus
		offerAfter map[string]bool // offer naming this ride ("" none) → may be pushed
	}{
		{"free", nil, available, map[string]bool{"": true, "t1": true}},
		{"assigned", []step{{"t1", assigned, true}}, busy, map[string]bool{"": false, "t1": false}},
		{"arrived", []step{{"t1", assigned, true}, {"t1", arrived, true}}, busy, map[string]bool{"": false}},
		{"riding: finishing, offered only the trip after this ride", []step{{"t1", assigned, true}, {"t1", inProgress, true}}, finishing,
			map[string]bool{"": false, "t1": true, "t0": false}},
		{"riding with a next trip", []step{{"t1", inProgress, true}, {"t2", assigned, true}}, busy, map[string]bool{"": false, "t1": false}},
		{"the ride ends: the next trip is its pickup", []step{{"t1", inProgress, true}, {"t2", assigned, true}, {"t1", completed, true}}, busy, map[string]bool{"t1": false}},
		{"events out of order: the next assigned after the ride ended", []step{{"t1", inProgress, true}, {"t1", completed, true}, {"t2", assigned, true}}, busy, nil},
		{"the next trip taken back while riding", []step{{"t1", inProgress, true}, {"t2", assigned, true}, {"t2", requested, false}}, finishing, map[string]bool{"t1": true}},
		{"the ride cancelled", []step{{"t1", inProgress, true}, {"t1", cancelled, true}}, available, map[string]bool{"": true}},
		{"completed", []step{{"t1", assigned, true}, {"t1", inProgress, true}, {"t1", completed, true}}, available, map[string]bool{"": true}},
		{"a trip now another driver's", []step{{"t1", assigned, true}, {"t1", assigned, false}}, available, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h tripHold
			for _, s := range tt.steps {
				h = h.after(s.trip, s.state, s.mine, dropoff)
			}
			if got := h.status(); got != tt.want {
				t.Errorf("status %v, want %v (hold %+v)", got, tt.want, h)
			}
			if tt.want == finishing && (h.dropoff != dropoff || h.ride == "") {
				t.Errorf("finishing hold %+v lacks its ride or dropoff", h)
			}
			for after, want := range tt.offerAfter {
				if got := h.offerable(&driverv1.Offer{TripId: "t9", AfterTripId: after}); got != want {
					t.Errorf("offer after %q: offerable %v, want %v", after, got, want)
				}
			}
		})
	}
}

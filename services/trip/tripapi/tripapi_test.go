package tripapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
)

func TestStates(t *testing.T) {
	for _, tc := range []struct {
		state             commonv1.TripState
		holds, isTerminal bool
	}{
		{commonv1.TripState_TRIP_STATE_UNSPECIFIED, false, false},
		{commonv1.TripState_TRIP_STATE_REQUESTED, false, false},
		{commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, true, false},
		{commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED, true, false},
		{commonv1.TripState_TRIP_STATE_IN_PROGRESS, true, false},
		{commonv1.TripState_TRIP_STATE_COMPLETED, false, true},
		{commonv1.TripState_TRIP_STATE_CANCELLED, false, true},
		{commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND, false, true},
	} {
		if got := HoldsDriver(tc.state); got != tc.holds {
			t.Errorf("HoldsDriver(%s) = %v", tc.state, got)
		}
		if got := IsTerminal(tc.state); got != tc.isTerminal {
			t.Errorf("IsTerminal(%s) = %v", tc.state, got)
		}
	}
	for _, s := range lifecycle.States {
		if StateOf(StateToProto(s)) != s {
			t.Errorf("state %s does not round-trip", s)
		}
	}
}

// TestClassify: every domain error travels as its code and reason, the
// reason comes back as the same error, and the message never carries what
// a store wrapped around it.
func TestClassify(t *testing.T) {
	storeWrap := func(err error) error {
		return fmt.Errorf("sqlstore: assign driver: %w: ERROR: duplicate key (SQLSTATE 23505)", err)
	}
	for _, tc := range []struct {
		err     error
		code    codes.Code
		message string
	}{
		{storeWrap(ErrNotFound), codes.NotFound, "trip not found"},
		{storeWrap(ErrTripNotRequested), codes.FailedPrecondition, "trip is not REQUESTED"},
		{storeWrap(ErrDriverBusy), codes.FailedPrecondition, "driver already has a trip in that stage (a pickup, or a ride in progress)"},
		{storeWrap(ErrIdempotencyKeyReused), codes.AlreadyExists, "idempotency key reused for a different request"},
		{storeWrap(ErrNotCompleted), codes.FailedPrecondition, "trip is not COMPLETED"},
		{storeWrap(InvalidArgument("stars must be 1..5")), codes.InvalidArgument, "stars must be 1..5"},
		{storeWrap(&lifecycle.TransitionError{From: lifecycle.StateInProgress, Event: lifecycle.EventCancel, Actor: lifecycle.ActorRider, Err: lifecycle.ErrActorNotAllowed}),
			codes.PermissionDenied, "trip IN_PROGRESS: cancel by rider: actor not allowed"},
		{storeWrap(ErrRetriesExhausted), codes.Aborted, ErrRetriesExhausted.Error()},
		{storeWrap(ErrStoreUnavailable), codes.Unavailable, ErrStoreUnavailable.Error()},
	} {
		c, ok := Classify(tc.err)
		if !ok || c.Code != tc.code || c.Message != tc.message {
			t.Errorf("Classify(%v) = %+v, %v; want %s %q", tc.err, c, ok, tc.code, tc.message)
			continue
		}
		if strings.Contains(c.Message, "sqlstore") || strings.Contains(c.Message, "SQLSTATE") {
			t.Errorf("message %q leaks the store", c.Message)
		}
		if back := ErrorOf(c.Reason); back == nil || !errors.Is(tc.err, back) {
			t.Errorf("ErrorOf(%s) = %v, does not match %v", c.Reason, back, tc.err)
		}
	}
	if _, ok := Classify(errors.New("connection reset")); ok {
		t.Error("a foreign error was classified")
	}
}

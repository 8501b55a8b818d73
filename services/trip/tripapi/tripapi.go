// Package tripapi is what both sides of the trip service's API share: the
// domain errors a trip call can fail with, the gRPC code and ErrorInfo
// reason each travels as, and the trip vocabulary in API terms (which
// states hold a driver, which are final). The trip server maps errors to
// statuses with Classify; tripclient maps statuses back with ErrorOf. It
// links no store or database code, so clients stay light.
package tripapi

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
)

// ErrorDomain is the ErrorInfo domain of the trip service's errors.
const ErrorDomain = "trip.hexride"

// ErrorInfo reasons attached to statuses, so clients can tell apart errors
// that share a code.
const (
	ReasonNotFound          = "TRIP_NOT_FOUND"
	ReasonTripNotRequested  = "TRIP_NOT_REQUESTED"
	ReasonDriverBusy        = "DRIVER_BUSY"
	ReasonInvalidTransition = "INVALID_TRANSITION"
	ReasonActorNotAllowed   = "ACTOR_NOT_ALLOWED"
	ReasonNotCompleted      = "TRIP_NOT_COMPLETED"
	ReasonKeyReused         = "IDEMPOTENCY_KEY_REUSED"
	ReasonInvalidArgument   = "INVALID_ARGUMENT"
	ReasonRetriesExhausted  = "RETRIES_EXHAUSTED"
	ReasonStoreUnavailable  = "STORE_UNAVAILABLE"
	ReasonWatcherFellBehind = "WATCHER_FELL_BEHIND"
	ReasonShuttingDown      = "SHUTTING_DOWN"
	ReasonTripChanged       = "TRIP_CHANGED"
)

// The trip service's domain errors. Stores and the server return them
// (possibly wrapped); clients get them back from statuses, so callers on
// both sides match with errors.Is.
var (
	// ErrNotFound: no trip with that id.
	ErrNotFound = errors.New("trip not found")
	// ErrTripNotRequested: an assignment lost its compare-and-set: the trip
	// is no longer REQUESTED (another driver won, or it was cancelled).
	ErrTripNotRequested = errors.New("trip is not REQUESTED")
	// ErrDriverBusy: the driver already holds a trip in the stage this
	// change would put another in. A driver holds at most one pickup
	// (DRIVER_ASSIGNED or DRIVER_ARRIVED) and at most one ride IN_PROGRESS:
	// assigning a driver who holds a pickup fails, and so does starting a
	// trip while the driver's other ride is in progress.
	ErrDriverBusy = errors.New("driver already has a trip in that stage (a pickup, or a ride in progress)")
	// ErrIdempotencyKeyReused: the key was first used for a different
	// request (other trip, driver, event or payload).
	ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different request")
	// ErrTripChanged: a change made on condition that the trip was still
	// at the version the caller read (the watchdog's) found it had moved.
	ErrTripChanged = errors.New("trip changed since it was read")
	// ErrNotCompleted: a rating of a trip that is not COMPLETED.
	ErrNotCompleted = errors.New("trip is not COMPLETED")
	// ErrInvalidArgument: a malformed request; see InvalidArgument.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrRetriesExhausted: the store gave up on contention; retrying with
	// the same idempotency key is safe.
	ErrRetriesExhausted = errors.New("too many concurrent changes; retry with the same idempotency key")
	// ErrStoreUnavailable: the trip store cannot be reached right now;
	// retrying with the same idempotency key is safe.
	ErrStoreUnavailable = errors.New("the trip store is unavailable; retry shortly with the same idempotency key")
	// ErrInvalidTransition and ErrActorNotAllowed are the state machine's
	// refusals (lifecycle owns them).
	ErrInvalidTransition = lifecycle.ErrInvalidTransition
	ErrActorNotAllowed   = lifecycle.ErrActorNotAllowed
)

// InvalidArgument returns an error that is ErrInvalidArgument and whose
// message (what the caller must fix) is safe to show the caller.
func InvalidArgument(format string, args ...any) error {
	return &argumentError{msg: fmt.Sprintf(format, args...)}
}

type argumentError struct{ msg string }

func (e *argumentError) Error() string        { return "invalid argument: " + e.msg }
func (e *argumentError) Is(target error) bool { return target == ErrInvalidArgument }

// rule is one domain error, the code it travels as and its reason.
type rule struct {
	err    error
	code   codes.Code
	reason string
}

// rules in match order: the first match wins (ErrTripNotRequested comes
// before ErrInvalidTransition, which a refused assignment may also wrap).
var rules = []rule{
	{ErrNotFound, codes.NotFound, ReasonNotFound},
	{ErrTripNotRequested, codes.FailedPrecondition, ReasonTripNotRequested},
	{ErrDriverBusy, codes.FailedPrecondition, ReasonDriverBusy},
	{ErrTripChanged, codes.FailedPrecondition, ReasonTripChanged},
	{ErrInvalidTransition, codes.FailedPrecondition, ReasonInvalidTransition},
	{ErrActorNotAllowed, codes.PermissionDenied, ReasonActorNotAllowed},
	{ErrNotCompleted, codes.FailedPrecondition, ReasonNotCompleted},
	{ErrIdempotencyKeyReused, codes.AlreadyExists, ReasonKeyReused},
	{ErrInvalidArgument, codes.InvalidArgument, ReasonInvalidArgument},
	{lifecycle.ErrInvalidCommand, codes.InvalidArgument, ReasonInvalidArgument},
	{ErrRetriesExhausted, codes.Aborted, ReasonRetriesExhausted},
	{ErrStoreUnavailable, codes.Unavailable, ReasonStoreUnavailable},
}

// Classification is how a domain error travels: its code, reason and a
// message the caller can act on (never internal text).
type Classification struct {
	Code    codes.Code
	Reason  string
	Message string
}

// Classify maps a domain error (matched with errors.Is/As, so wrapping
// keeps it) to its status parts; ok is false for errors that are not the
// trip domain's.
func Classify(err error) (Classification, bool) {
	for _, r := range rules {
		if errors.Is(err, r.err) {
			return Classification{Code: r.code, Reason: r.reason, Message: publicMessage(err, r.err)}, true
		}
	}
	return Classification{}, false
}

// publicMessage is the part of err a caller may see: the state machine's
// refusal (built from states, events and actors), an invalid argument's
// own text, or the sentinel's text; never what a store wrapped around it.
func publicMessage(err, sentinel error) string {
	var te *lifecycle.TransitionError
	if errors.As(err, &te) {
		return te.Error()
	}
	var ae *argumentError
	if errors.As(err, &ae) {
		return ae.msg
	}
	return sentinel.Error()
}

// ErrorOf returns the domain error a reason stands for (nil if unknown).
func ErrorOf(reason string) error {
	for _, r := range rules {
		if r.reason == reason {
			return r.err
		}
	}
	return nil
}

// HoldsDriver reports whether a trip in state s occupies its driver (the
// one definition is lifecycle.ActiveStates).
func HoldsDriver(s commonv1.TripState) bool { return StateOf(s).Active() }

// IsTerminal reports whether no event can leave state s.
func IsTerminal(s commonv1.TripState) bool { return StateOf(s).Terminal() }

var stateToProto = map[lifecycle.State]commonv1.TripState{
	lifecycle.StateRequested:      commonv1.TripState_TRIP_STATE_REQUESTED,
	lifecycle.StateDriverAssigned: commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED,
	lifecycle.StateDriverArrived:  commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED,
	lifecycle.StateInProgress:     commonv1.TripState_TRIP_STATE_IN_PROGRESS,
	lifecycle.StateCompleted:      commonv1.TripState_TRIP_STATE_COMPLETED,
	lifecycle.StateCancelled:      commonv1.TripState_TRIP_STATE_CANCELLED,
	lifecycle.StateNoDriverFound:  commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND,
}

var stateFromProto = func() map[commonv1.TripState]lifecycle.State {
	out := make(map[commonv1.TripState]lifecycle.State, len(stateToProto))
	for k, v := range stateToProto {
		out[v] = k
	}
	return out
}()

// StateOf converts an API state to the state machine's ("" for UNSPECIFIED
// or unknown values).
func StateOf(s commonv1.TripState) lifecycle.State { return stateFromProto[s] }

// StateToProto converts a state machine state to the API's.
func StateToProto(s lifecycle.State) commonv1.TripState { return stateToProto[s] }

package trip

import (
	"context"
	"errors"
	"log/slog"

	"buf.build/go/protovalidate"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
)

// ErrorDomain is the ErrorInfo domain of the trip service's errors.
const ErrorDomain = "trip.hexride"

// ErrorInfo reasons attached to statuses, so clients (tripclient) can tell
// apart errors that share a code.
const (
	ReasonNotFound           = "TRIP_NOT_FOUND"
	ReasonTripNotRequested   = "TRIP_NOT_REQUESTED"
	ReasonDriverBusy         = "DRIVER_BUSY"
	ReasonInvalidTransition  = "INVALID_TRANSITION"
	ReasonActorNotAllowed    = "ACTOR_NOT_ALLOWED"
	ReasonNotCompleted       = "TRIP_NOT_COMPLETED"
	ReasonKeyReused          = "IDEMPOTENCY_KEY_REUSED"
	ReasonInvalidArgument    = "INVALID_ARGUMENT"
	ReasonRetriesExhausted   = "RETRIES_EXHAUSTED"
	ReasonWatcherFellBehind  = "WATCHER_FELL_BEHIND"
	ReasonServerShuttingDown = "SHUTTING_DOWN"
)

// statusRule maps one domain error to a code and reason. Order matters:
// the first match wins (ErrTripNotRequested also wraps
// ErrInvalidTransition).
var statusRules = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{store.ErrNotFound, codes.NotFound, ReasonNotFound},
	{store.ErrTripNotRequested, codes.FailedPrecondition, ReasonTripNotRequested},
	{store.ErrDriverBusy, codes.FailedPrecondition, ReasonDriverBusy},
	{lifecycle.ErrInvalidTransition, codes.FailedPrecondition, ReasonInvalidTransition},
	{lifecycle.ErrActorNotAllowed, codes.PermissionDenied, ReasonActorNotAllowed},
	{store.ErrNotCompleted, codes.FailedPrecondition, ReasonNotCompleted},
	{store.ErrIdempotencyKeyReused, codes.AlreadyExists, ReasonKeyReused},
	{store.ErrInvalidArgument, codes.InvalidArgument, ReasonInvalidArgument},
	{lifecycle.ErrInvalidCommand, codes.InvalidArgument, ReasonInvalidArgument},
	{postgres.ErrMaxRetries, codes.Aborted, ReasonRetriesExhausted},
}

// ToStatus is the one place where the trip service's errors become gRPC
// statuses. Matching uses errors.Is/As, so wrapped errors keep their code:
//
//	store.ErrNotFound                         NotFound
//	store.ErrTripNotRequested (lost CAS)      FailedPrecondition  TRIP_NOT_REQUESTED
//	store.ErrDriverBusy                       FailedPrecondition  DRIVER_BUSY
//	lifecycle.ErrInvalidTransition            FailedPrecondition  INVALID_TRANSITION
//	lifecycle.ErrActorNotAllowed              PermissionDenied    ACTOR_NOT_ALLOWED
//	store.ErrNotCompleted                     FailedPrecondition  TRIP_NOT_COMPLETED
//	store.ErrIdempotencyKeyReused             AlreadyExists       IDEMPOTENCY_KEY_REUSED
//	store.ErrInvalidArgument, ErrInvalidCommand, protovalidate errors  InvalidArgument
//	postgres.ErrMaxRetries (contention)       Aborted: retry with the same idempotency key
//	context.Canceled / DeadlineExceeded       Canceled / DeadlineExceeded
//	database unreachable (safe to retry)      Unavailable
//	anything else                             Internal (logged)
//
// A lost compare-and-set is FailedPrecondition, not Aborted: retrying the
// same request cannot succeed, the caller must re-plan (offer the trip to
// another driver, or the driver another trip). Every status but Internal,
// Canceled and DeadlineExceeded carries an ErrorInfo with the reason.
func ToStatus(err error) error {
	return toStatus(err, nil)
}

func toStatus(err error, log *slog.Logger) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, r := range statusRules {
		if errors.Is(err, r.err) {
			return withReason(r.code, r.reason, err.Error())
		}
	}
	var verr *protovalidate.ValidationError
	if errors.As(err, &verr) {
		return withReason(codes.InvalidArgument, ReasonInvalidArgument, verr.Error())
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case pgconn.SafeToRetry(err):
		return status.Error(codes.Unavailable, err.Error())
	}
	if log != nil {
		log.Error("trip: internal error", "err", err)
	}
	return status.Error(codes.Internal, err.Error())
}

func withReason(code codes.Code, reason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

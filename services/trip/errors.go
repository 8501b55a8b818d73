package trip

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"time"

	"buf.build/go/protovalidate"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hexride/hexride/infra/admission"
	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/rpcerror"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// retryDelay is the RetryInfo delay on statuses a caller should retry
// (Unavailable, Aborted): long enough for a database restart or a burst of
// contention to pass, short enough for an app with a rider waiting.
const retryDelay = time.Second

// ToStatus is the one place where the trip service's errors become gRPC
// statuses. Matching uses errors.Is/As, so wrapped errors keep their code:
//
//	tripapi.ErrNotFound                         NotFound
//	tripapi.ErrTripNotRequested (lost CAS)      FailedPrecondition  TRIP_NOT_REQUESTED
//	tripapi.ErrDriverBusy                       FailedPrecondition  DRIVER_BUSY
//	lifecycle.ErrInvalidTransition              FailedPrecondition  INVALID_TRANSITION
//	lifecycle.ErrActorNotAllowed                PermissionDenied    ACTOR_NOT_ALLOWED
//	tripapi.ErrNotCompleted                     FailedPrecondition  TRIP_NOT_COMPLETED
//	tripapi.ErrIdempotencyKeyReused             AlreadyExists       IDEMPOTENCY_KEY_REUSED
//	tripapi.InvalidArgument, ErrInvalidCommand, protovalidate errors  InvalidArgument
//	postgres.ErrMaxRetries (contention), a bare
//	serialization failure (40001)               Aborted + RetryInfo: retry with the same key
//	database unreachable (postgres.IsUnavailable) Unavailable + RetryInfo
//	admission.ErrOverloaded (store gate full)    ResourceExhausted + RetryInfo, reason OVERLOADED
//	postgres.ErrTooLateToCommit (rolled back)   Unavailable + RetryInfo (caller still waiting)
//	context.Canceled / DeadlineExceeded         Canceled / DeadlineExceeded
//	anything else                               Internal "internal error" (details logged)
//
// A lost compare-and-set is FailedPrecondition, not Aborted: retrying the
// same request cannot succeed, the caller must re-plan (offer the trip to
// another driver, or the driver another trip). Status messages are what the
// caller can act on; SQL, DSNs, hosts and store prefixes go to the log only.
func ToStatus(err error) error {
	return toStatus(nil, err, nil)
}

// toStatus maps err for a call whose context is ctx (nil: unknown, context
// errors are taken as the caller's). A timeout or cancellation while the
// caller still waits is the store giving up (its connect or statement
// timeout, a dropped connection): Unavailable, not the caller's deadline.
func toStatus(ctx context.Context, err error, log *slog.Logger) error {
	if err == nil {
		return nil
	}
	if st, ok := rpcerror.StatusOf(err); ok {
		return st.Err()
	}
	callerDone := ctx == nil || ctx.Err() != nil
	var verr *protovalidate.ValidationError
	if errors.As(err, &verr) {
		return withReason(tripapi.Classification{Code: codes.InvalidArgument, Reason: tripapi.ReasonInvalidArgument, Message: verr.Error()})
	}
	switch {
	case errors.Is(err, admission.ErrOverloaded):
		// Refused before any work: safe to retry after the delay.
		return admission.Refusal("the trip store", retryDelay)
	case errors.Is(err, postgres.ErrMaxRetries), postgres.SQLState(err) == postgres.CodeSerializationFailure:
		// InTx and Admit retry 40001 themselves; one that still escapes
		// (a statement run outside them) is contention all the same.
		logCause(log, "trip: transaction retries exhausted", err)
		err = tripapi.ErrRetriesExhausted
	case callerDone && errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "the call was cancelled")
	case callerDone && (errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)):
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before the trip store answered")
	case postgres.IsUnavailable(err), pgconn.Timeout(err), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		logCause(log, "trip: store unavailable", err)
		err = tripapi.ErrStoreUnavailable
	}
	if c, ok := tripapi.Classify(err); ok {
		return withReason(c)
	}
	logCause(log, "trip: internal error", err)
	return status.Error(codes.Internal, "internal error")
}

// edge converts a panic in a handler into an Internal error and maps
// domain errors to statuses.
func (s *Server) edge(ctx context.Context, method string, err *error) {
	if r := recover(); r != nil {
		s.log.Error("trip: panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
		*err = toStatus(ctx, errHandlerPanic, nil)
		return
	}
	*err = toStatus(ctx, *err, s.log)
}

// errHandlerPanic is a handler that panicked (logged by edge with its
// stack); the caller sees Internal.
var errHandlerPanic = errors.New("panic in handler")

// errShuttingDown ends watches when the server drains: the watcher
// reconnects to another instance.
func errShuttingDown() error {
	return withReason(tripapi.Classification{Code: codes.Unavailable, Reason: tripapi.ReasonShuttingDown, Message: "trip server is shutting down; watch again"})
}

// errFellBehind drops a watcher that stopped reading.
func errFellBehind() error {
	return withReason(tripapi.Classification{Code: codes.ResourceExhausted, Reason: tripapi.ReasonWatcherFellBehind, Message: "watcher fell behind; watch again with send_initial"})
}

func logCause(log *slog.Logger, msg string, err error) {
	if log != nil {
		log.Error(msg, "err", err)
	}
}

func withReason(c tripapi.Classification) error {
	st := status.New(c.Code, c.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: c.Reason, Domain: tripapi.ErrorDomain}}
	if c.Code == codes.Unavailable || c.Code == codes.Aborted {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)})
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}

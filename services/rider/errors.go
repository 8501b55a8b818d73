package rider

import (
	"errors"

	"github.com/hexride/hexride/infra/rpcerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The rider service's own domain errors (quote errors are in rider.go).
var (
	errInvalidPickup    = errors.New("pickup is not a valid position")
	errNotYourTrip      = errors.New("this trip belongs to another rider")
	errDriverNotIndexed = errors.New("the driver's position is not known yet")
	errWatchEnded       = errors.New("the trip watch ended; watch again")
)

// toStatus is the one place where the rider service's errors become gRPC
// statuses (errors.Is, so wrapping keeps the code). Statuses from the trip
// and matching services (their clients' errors) pass through: they already
// say what the app can act on.
//
//	ErrQuoteExpired, ErrNoPrice            FailedPrecondition
//	ErrQuoteInvalid, errInvalidPickup      InvalidArgument
//	errNotYourTrip                         PermissionDenied
//	errDriverNotIndexed                    NotFound
//	errWatchEnded, grpcserver.ErrDraining  Unavailable (watch again)
//	context.Canceled / DeadlineExceeded    Canceled / DeadlineExceeded
//	anything else                          Internal "internal error"
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := rpcerror.StatusOf(err); ok {
		return st.Err()
	}
	switch {
	// Quote errors say what is wrong with the quote, not how pricing or
	// signing found out (those wrap package errors and key ids).
	case errors.Is(err, ErrQuoteExpired):
		return status.Error(codes.FailedPrecondition, ErrQuoteExpired.Error()+"; get a new quote")
	case errors.Is(err, ErrNoPrice):
		return status.Error(codes.FailedPrecondition, ErrNoPrice.Error())
	case errors.Is(err, ErrQuoteInvalid):
		return status.Error(codes.InvalidArgument, ErrQuoteInvalid.Error()+"; get a new quote")
	case errors.Is(err, errInvalidPickup):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errNotYourTrip):
		return status.Error(codes.PermissionDenied, errNotYourTrip.Error())
	case errors.Is(err, errDriverNotIndexed):
		return status.Error(codes.NotFound, errDriverNotIndexed.Error())
	case errors.Is(err, errWatchEnded):
		return status.Error(codes.Unavailable, errWatchEnded.Error())
	}
	return rpcerror.Fallback(err)
}

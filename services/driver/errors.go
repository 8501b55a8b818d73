package driver

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/grpcserver"
	"github.com/hexride/hexride/infra/rpcerror"
)

// The gateway's own domain errors. (Refusals of one stream message travel
// in its Ack, not as statuses: see ack.)
var (
	errNoStream   = errors.New("the driver has no stream on this gateway")
	errNotReading = errors.New("the driver's app is not reading its stream")
	errReplaced   = errors.New("replaced by a newer connection of the same driver")
	// errOfferOutstanding and errOnTrip refuse an offer to a driver who
	// holds another, or who is on a trip (a worker may not know yet).
	errOfferOutstanding = errors.New("the driver holds another offer")
	errOnTrip           = errors.New("the driver is on a trip")
)

// toStatus is the one place where the driver gateway's errors become gRPC
// statuses (errors.Is, so wrapping keeps the code). Statuses from the trip
// and matching services pass through.
//
//	errNoStream                            NotFound
//	errNotReading, grpcserver.ErrDraining  Unavailable
//	errReplaced                            Aborted
//	errOfferOutstanding, errOnTrip         FailedPrecondition
//	context.Canceled / DeadlineExceeded    Canceled / DeadlineExceeded
//	anything else                          Internal "internal error"
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, grpcserver.ErrDraining):
		return grpcserver.ErrDraining
	case errors.Is(err, errNoStream):
		return status.Error(codes.NotFound, errNoStream.Error())
	case errors.Is(err, errNotReading):
		return status.Error(codes.Unavailable, errNotReading.Error())
	case errors.Is(err, errReplaced):
		return status.Error(codes.Aborted, errReplaced.Error())
	case errors.Is(err, errOfferOutstanding), errors.Is(err, errOnTrip):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return rpcerror.Fallback(err)
}

package matching

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/grpcserver"
	"github.com/hexride/hexride/infra/rpcerror"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// The worker's own domain errors (matchingapi holds those clients match).
var (
	errTripIncomplete   = errors.New("trip needs an id and a pickup")
	errTripNotRequested = errors.New("only a REQUESTED trip can be dispatched")
	errInvalidCell      = errors.New("cell is not an H3 cell")
	errCellTooCoarse    = errors.New("cell is coarser than a partition")
	errCellTooFine      = errors.New("cell is finer than the supply index")
	errInvalidSearch    = errors.New("search parameters out of range")
	errInvalidReading   = errors.New("surge reading out of range")
)

// toStatus is the one place where the matching worker's errors become
// gRPC statuses (errors.Is/As, so wrapping keeps the code). Messages are
// what the caller can act on; nothing internal.
//
//	*matchingapi.NotOwnerError                  Aborted + NotOwner detail (retry on the owner)
//	matchingapi.ErrNoOwner                      Unavailable
//	matchingapi.ErrInvalidPosition, ErrInvalidPartition,
//	errTripIncomplete, errInvalidCell, errCellTooCoarse,
//	errCellTooFine, errInvalidSearch,
//	errInvalidReading                           InvalidArgument
//	errTripNotRequested                         FailedPrecondition
//	grpcserver.ErrDraining                      Unavailable
//	context.Canceled / DeadlineExceeded         Canceled / DeadlineExceeded
//	a status (from a peer)                      passed through
//	anything else                               Internal "internal error"
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var notOwner *matchingapi.NotOwnerError
	switch {
	case errors.As(err, &notOwner):
		return notOwner.Status().Err()
	case errors.Is(err, matchingapi.ErrNoOwner):
		return status.Error(codes.Unavailable, matchingapi.ErrNoOwner.Error())
	case errors.Is(err, grpcserver.ErrDraining):
		return grpcserver.ErrDraining
	}
	// These wrap only the caller's own values (a position, a cell), so
	// their text is safe to show.
	for _, invalid := range []error{matchingapi.ErrInvalidPosition, matchingapi.ErrInvalidPartition, errTripIncomplete,
		errInvalidCell, errCellTooCoarse, errCellTooFine, errInvalidReading} {
		if errors.Is(err, invalid) {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if errors.Is(err, errInvalidSearch) {
		return status.Error(codes.InvalidArgument, errInvalidSearch.Error())
	}
	if errors.Is(err, errTripNotRequested) {
		return status.Error(codes.FailedPrecondition, errTripNotRequested.Error())
	}
	return rpcerror.Fallback(err)
}

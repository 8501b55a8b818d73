package rider

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/hexride/hexride/geo"
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

// tripTooLongError: the drop-off is farther from the pickup than rides go.
// Its text is for the rider app.
type tripTooLongError struct{ km, maxKm float64 }

func (e *tripTooLongError) Error() string {
	km := roundKm(e.km, math.Round)
	if km <= e.maxKm {
		km = roundKm(e.km, math.Ceil) // never reads as within the limit
	}
	return fmt.Sprintf("drop-off is %s km from pickup; rides are limited to %s km", formatKm(km), formatKm(roundKm(e.maxKm, math.Round)))
}

// checkTripLength refuses a drop-off farther than maxKm from the pickup,
// as the crow flies.
func checkTripLength(pickup, dropoff geo.LatLng, maxKm float64) error {
	if km := geo.Distance(pickup, dropoff) / 1000; !(km <= maxKm) {
		return &tripTooLongError{km: km, maxKm: maxKm}
	}
	return nil
}

// roundKm rounds km as people read it: to 0.1 km below 1,000 km, to 1 km
// above.
func roundKm(km float64, round func(float64) float64) float64 {
	if km < 1000 {
		return round(km*10) / 10
	}
	return round(km)
}

// formatKm writes a rounded distance: "2.5", "300", "19,800".
func formatKm(km float64) string {
	if km < 1000 {
		return strconv.FormatFloat(km, 'f', -1, 64)
	}
	digits := strconv.FormatInt(int64(math.Round(km)), 10)
	var out []byte
	for i := range len(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, digits[i])
	}
	return string(out)
}

// toStatus is the one place where the rider service's errors become gRPC
// statuses (errors.Is, so wrapping keeps the code). Statuses from the trip
// and matching services (their clients' errors) pass through: they already
// say what the app can act on.
//
//	ErrQuoteExpired, ErrNoPrice            FailedPrecondition
//	ErrQuoteInvalid, errInvalidPickup      InvalidArgument
//	tripTooLongError                       InvalidArgument (its text)
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
	var tooLong *tripTooLongError
	switch {
	case errors.As(err, &tooLong):
		return status.Error(codes.InvalidArgument, tooLong.Error())
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

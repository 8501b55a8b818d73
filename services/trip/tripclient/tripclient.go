// Package tripclient is how other services call the trip service. It wraps
// the generated client and turns statuses back into the trip service's
// errors, so callers match them with errors.Is (ErrDriverBusy,
// ErrTripNotRequested, …) instead of comparing codes and strings.
package tripclient

import (
	"context"
	"errors"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/rpcerror"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// Errors a call can be matched against with errors.Is (the trip domain's,
// from tripapi).
var (
	ErrNotFound             = tripapi.ErrNotFound
	ErrTripNotRequested     = tripapi.ErrTripNotRequested
	ErrDriverBusy           = tripapi.ErrDriverBusy
	ErrInvalidTransition    = tripapi.ErrInvalidTransition
	ErrActorNotAllowed      = tripapi.ErrActorNotAllowed
	ErrNotCompleted         = tripapi.ErrNotCompleted
	ErrIdempotencyKeyReused = tripapi.ErrIdempotencyKeyReused
	ErrInvalidArgument      = tripapi.ErrInvalidArgument
	// ErrRetriesExhausted: the store gave up on contention; retrying with
	// the same idempotency key is safe.
	ErrRetriesExhausted = tripapi.ErrRetriesExhausted
	// ErrStoreUnavailable: the trip store cannot be reached; retrying with
	// the same idempotency key is safe.
	ErrStoreUnavailable = tripapi.ErrStoreUnavailable
)

// HoldsDriver reports whether a trip in state s occupies its driver.
func HoldsDriver(s commonv1.TripState) bool { return tripapi.HoldsDriver(s) }

// IsTerminal reports whether no event can leave state s.
func IsTerminal(s commonv1.TripState) bool { return tripapi.IsTerminal(s) }

// FromStatus converts an error returned by a generated client call.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	out := &rpcerror.Error{Status: st}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == tripapi.ErrorDomain {
			out.Err = tripapi.ErrorOf(info.GetReason())
		}
	}
	if out.Err == nil && st.Code() == codes.InvalidArgument {
		out.Err = ErrInvalidArgument
	}
	return out
}

// Client calls the trip service.
type Client struct {
	rpc tripv1.TripServiceClient
}

// New returns a client over conn.
func New(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: tripv1.NewTripServiceClient(conn)}
}

// Raw returns the generated client.
func (c *Client) Raw() tripv1.TripServiceClient { return c.rpc }

// CreateTrip creates a trip (or returns the one the key created first:
// created == false).
func (c *Client) CreateTrip(ctx context.Context, req *tripv1.CreateTripRequest, opts ...grpc.CallOption) (t *commonv1.Trip, created bool, err error) {
	resp, err := c.rpc.CreateTrip(ctx, req, opts...)
	if err != nil {
		return nil, false, FromStatus(err)
	}
	return resp.GetTrip(), resp.GetCreated(), nil
}

// AssignDriver assigns driverID to a REQUESTED trip: ErrTripNotRequested if
// another driver won, ErrDriverBusy if the driver already has a pickup, or
// carries a rider on a trip other than afterTripID (a driver carrying a
// rider is given a pickup only as that ride's next trip; "" for a driver
// not riding).
func (c *Client) AssignDriver(ctx context.Context, tripID, driverID, afterTripID, idempotencyKey string, opts ...grpc.CallOption) (*commonv1.Trip, error) {
	resp, err := c.rpc.AssignDriver(ctx, &tripv1.AssignDriverRequest{TripId: tripID, DriverId: driverID, AfterTripId: afterTripID, IdempotencyKey: idempotencyKey}, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp.GetTrip(), nil
}

// Transition fires an event on a trip.
func (c *Client) Transition(ctx context.Context, req *tripv1.TransitionRequest, opts ...grpc.CallOption) (*commonv1.Trip, *commonv1.TripEvent, error) {
	resp, err := c.rpc.Transition(ctx, req, opts...)
	if err != nil {
		return nil, nil, FromStatus(err)
	}
	return resp.GetTrip(), resp.GetEvent(), nil
}

// RateTrip records the rider's rating of a completed trip.
func (c *Client) RateTrip(ctx context.Context, req *tripv1.RateTripRequest, opts ...grpc.CallOption) (*commonv1.Trip, error) {
	resp, err := c.rpc.RateTrip(ctx, req, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp.GetTrip(), nil
}

// GetTrip returns a trip.
func (c *Client) GetTrip(ctx context.Context, tripID string, opts ...grpc.CallOption) (*commonv1.Trip, error) {
	resp, err := c.rpc.GetTrip(ctx, &tripv1.GetTripRequest{TripId: tripID}, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp.GetTrip(), nil
}

// ListTrips returns one page of trips.
func (c *Client) ListTrips(ctx context.Context, req *tripv1.ListTripsRequest, opts ...grpc.CallOption) (*tripv1.ListTripsResponse, error) {
	resp, err := c.rpc.ListTrips(ctx, req, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp, nil
}

// Events returns a trip's history, oldest first.
func (c *Client) Events(ctx context.Context, tripID string, opts ...grpc.CallOption) ([]*commonv1.TripEvent, error) {
	resp, err := c.rpc.GetTripEvents(ctx, &tripv1.GetTripEventsRequest{TripId: tripID}, opts...)
	if err != nil {
		return nil, FromStatus(err)
	}
	return resp.GetEvents(), nil
}

// Watch streams changes to fn until ctx is cancelled (returns nil), fn
// returns an error (returned), or the stream fails (returned, converted).
func (c *Client) Watch(ctx context.Context, req *tripv1.WatchTripsRequest, fn func(*commonv1.TripEvent) error, opts ...grpc.CallOption) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.WatchTrips(ctx, req, opts...)
	if err != nil {
		return FromStatus(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return FromStatus(err)
		}
		if err := fn(resp.GetEvent()); err != nil {
			return err
		}
	}
}

package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

// ride is one rider's request, followed to a terminal state.
type ride struct {
	riderID string
	cfg     Config
	client  riderv1.RiderServiceClient
	rec     *recorder
	pickup  geo.LatLng
	dropoff geo.LatLng
	cancel  bool        // the rider cancels while waiting
	retry   retryPolicy // zero: newRetryPolicy(cfg, rec)
}

func (r *ride) ctx(ctx context.Context) context.Context {
	return r.cfg.as(ctx, r.rec, auth.Principal{Role: auth.RoleRider, Subject: r.riderID})
}

// policy is how this rider's app retries (a ride built without one, in
// tests, gets the configured default).
func (r *ride) policy() retryPolicy {
	if r.retry.now == nil {
		return newRetryPolicy(r.cfg, r.rec)
	}
	return r.retry
}

// timed wraps fn to note when its last attempt started and how long it
// took, so that a refusal's answer time can be recorded.
func timed[T any](last *time.Duration, fn func(context.Context) (T, error)) func(context.Context) (T, error) {
	return func(ctx context.Context) (T, error) {
		t0 := time.Now()
		out, err := fn(ctx)
		*last = time.Since(t0)
		return out, err
	}
}

// refused reports whether err is the platform refusing a new request before
// doing any work (a rate limit, or load shedding): a definite answer on
// which the rider gives up the ride. It records the refusal and how long
// it took to answer.
func (r *ride) refused(err error, took time.Duration) bool {
	if status.Code(err) != codes.ResourceExhausted {
		return false
	}
	r.rec.refusal(took)
	return true
}

// run requests the ride and follows it until a terminal state or until
// giveUp; it reports whether the ride ended.
func (r *ride) run(ctx context.Context, key string) {
	ctx = r.ctx(ctx)
	var took time.Duration
	quote, err := retry(ctx, r.policy(), timed(&took, func(ctx context.Context) (*riderv1.GetQuoteResponse, error) {
		return r.client.GetQuote(ctx, &riderv1.GetQuoteRequest{
			Pickup:  &commonv1.LatLng{Lat: r.pickup.Lat, Lng: r.pickup.Lng},
			Dropoff: &commonv1.LatLng{Lat: r.dropoff.Lat, Lng: r.dropoff.Lng},
			Product: commonv1.Product_PRODUCT_STANDARD,
		})
	}))
	if err != nil {
		if ctx.Err() == nil && !r.refused(err, took) { // a stopped run is not a failed request
			r.rec.error(fmt.Errorf("GetQuote: %w", err))
		}
		return
	}
	req, err := retry(ctx, r.policy(), timed(&took, func(ctx context.Context) (*riderv1.RequestRideResponse, error) {
		return r.client.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: quote.GetQuote().GetQuoteId(), IdempotencyKey: key})
	}))
	if err != nil {
		if ctx.Err() == nil && !r.refused(err, took) { // a stopped run is not a failed request
			r.rec.error(fmt.Errorf("RequestRide: %w", err))
		}
		return
	}
	trip := req.GetTrip()
	r.rec.requestedTrip(trip.GetId(), time.Now(), quote.GetQuote().GetPickupEta().AsDuration())
	if r.cancel {
		time.AfterFunc(time.Duration(500+rand.IntN(1500))*time.Millisecond, func() {
			_, err := retry(ctx, r.policy().inProgress(), func(ctx context.Context) (*riderv1.CancelRideResponse, error) {
				return r.client.CancelRide(ctx, &riderv1.CancelRideRequest{TripId: trip.GetId(), Reason: "changed my mind", IdempotencyKey: key + "-cancel"})
			})
			if err != nil && ctx.Err() == nil && !r.tooLateToCancel(ctx, trip.GetId(), err) {
				r.rec.error(fmt.Errorf("CancelRide: %w", err))
			}
		})
	}
	r.follow(ctx, trip)
}

// tooLateToCancel reports whether err is the platform rightly refusing the
// rider's cancel because the ride moved on before it landed: it ended
// (FailedPrecondition), or it started (PermissionDenied: once a trip is
// IN_PROGRESS only a dispatcher or the system may cancel it), which the
// trip's state must confirm; refusing a ride that has not started is an
// error.
func (r *ride) tooLateToCancel(ctx context.Context, tripID string, err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition:
		return true
	case codes.PermissionDenied:
		got, gerr := retry(ctx, r.policy().inProgress(), func(ctx context.Context) (*riderv1.GetTripResponse, error) {
			return r.client.GetTrip(ctx, &riderv1.GetTripRequest{TripId: tripID})
		})
		if gerr != nil {
			return false
		}
		switch got.GetTrip().GetState() {
		case commonv1.TripState_TRIP_STATE_REQUESTED, commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED:
			return false
		}
		return true
	}
	return false
}

// follow watches the trip, re-opening the watch if an instance drains,
// until it ends or ctx ends (then the ride counts as lost).
func (r *ride) follow(ctx context.Context, trip *commonv1.Trip) {
	matched := false
	for {
		stream, err := r.client.WatchTrip(ctx, &riderv1.WatchTripRequest{TripId: trip.GetId()})
		if err == nil {
			for {
				var m *riderv1.WatchTripResponse
				m, err = stream.Recv()
				if err != nil {
					break
				}
				t := m.GetTrip()
				if t == nil {
					continue
				}
				if !matched && t.GetDriverId() != "" && t.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED {
					matched = true
					r.rec.matched(t.GetId(), time.Now())
				}
				if r.terminal(t) {
					return
				}
			}
		}
		if ctx.Err() != nil {
			r.rec.do(func(s *Stats) { s.Lost++; s.InFlight-- })
			return
		}
		if !errors.Is(err, io.EOF) {
			r.rec.code(err)
		}
		wait := 300 * time.Millisecond
		switch {
		case errors.Is(err, io.EOF), retryableCode(ctx, err):
		case shed(ctx, err):
			// The platform shed the watch (nothing was done): the ride
			// is under way, so follow it again after the delay asked.
			wait = r.policy().wait(0, err)
		default:
			r.rec.error(fmt.Errorf("WatchTrip: %w", err))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// terminal records a terminal trip and reports whether t is one.
func (r *ride) terminal(t *commonv1.Trip) bool {
	switch t.GetState() {
	case commonv1.TripState_TRIP_STATE_COMPLETED:
		r.rec.do(func(s *Stats) { s.Completed++; s.InFlight-- })
	case commonv1.TripState_TRIP_STATE_CANCELLED:
		r.rec.do(func(s *Stats) { s.Cancelled++; s.InFlight--; s.CancelReasons[t.GetEndReason()]++ })
	case commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND:
		r.rec.do(func(s *Stats) { s.NoDriver++; s.InFlight--; s.NoDriverReasons[t.GetEndReason()]++ })
	default:
		return false
	}
	return true
}

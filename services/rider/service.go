package rider

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/grpcserver"
	"github.com/hexride/hexride/infra/telemetry"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// Service implements RiderService. The caller is always the rider named by
// its credentials.
type Service struct {
	riderv1.UnimplementedRiderServiceServer
	cfg      Config
	trips    *tripclient.Client
	matching *matchingclient.Client
	drivers  *driverclient.Client
	pricing  Pricing
	logger   *slog.Logger
	now      func() time.Time
	draining <-chan struct{}
	streams  metric.Int64UpDownCounter
	requests singleflight.Group // RequestRide calls in flight, by idempotency key
}

var _ riderv1.RiderServiceServer = (*Service)(nil)

// New builds the service; WatchTrip streams end with UNAVAILABLE when
// draining closes.
func New(cfg Config, trips *tripclient.Client, matching *matchingclient.Client, drivers *driverclient.Client, pricing Pricing, logger *slog.Logger, draining <-chan struct{}, meter metric.MeterProvider) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if meter == nil {
		meter = noop.NewMeterProvider()
	}
	streams, err := meter.Meter("hexride").Int64UpDownCounter(telemetry.MetricActiveStreams,
		metric.WithDescription("Open long-lived streams, by service."))
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, trips: trips, matching: matching, drivers: drivers, pricing: pricing, logger: logger, now: time.Now, draining: draining, streams: streams}, nil
}

var riderStreams = metric.WithAttributes(attribute.String("service", "rider"))

// Register adds the service to r.
func (s *Service) Register(r grpc.ServiceRegistrar) { riderv1.RegisterRiderServiceServer(r, s) }

func (s *Service) rider(ctx context.Context) (string, error) {
	p, err := auth.Require(ctx, auth.RoleRider)
	if err != nil {
		return "", err
	}
	return p.Subject, nil
}

func (s *Service) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

// GetQuote implements RiderService.
func (s *Service) GetQuote(ctx context.Context, req *riderv1.GetQuoteRequest) (*riderv1.GetQuoteResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	pickup, dropoff := latLngOf(req.GetPickup()), latLngOf(req.GetDropoff())
	// Asked at the index resolution: matching answers one index cell from
	// its counters and the surge of the surge cell holding it.
	cell, err := geo.CellAt(pickup, s.cfg.Topology.IndexResolution)
	if err != nil {
		return nil, toStatus(fmt.Errorf("%w: %v", errInvalidPickup, pickup))
	}
	if err := checkTripLength(pickup, dropoff, s.cfg.MaxTripKm); err != nil {
		return nil, toStatus(err)
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	surge := 1.0
	// Supply and surge are best effort: a quote without them is still a
	// quote (at no surge), which beats failing the rider.
	if stat, err := s.matching.CellStats(cctx, cell); err == nil && stat.GetSurgeMultiplier() >= 1 {
		surge = stat.GetSurgeMultiplier()
	} else if err != nil {
		s.logger.WarnContext(ctx, "surge unavailable", "cell", cell.String(), "err", err)
	}
	quote, err := s.pricing.Quote(riderID, req.GetProduct(), pickup, dropoff, surge, s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	quote.PickupCell = cell.String()
	nearby, err := s.matching.NearbyDrivers(cctx, &matchingv1.NearbyDriversRequest{
		Center:       req.GetPickup(),
		RadiusMeters: s.cfg.NearbyRadiusM,
		Limit:        10,
		Product:      req.GetProduct(),
	})
	if err != nil {
		s.logger.WarnContext(ctx, "nearby drivers unavailable", "err", err)
	} else if drivers := nearby.GetDrivers(); len(drivers) > 0 {
		quote.NearbyDrivers = int32(len(drivers))
		// The fastest, not the nearest: matching's ETAs follow the road
		// network when it has one, and dispatch ranks by the same ETA.
		quote.PickupEta = drivers[0].GetEta()
		for _, d := range drivers[1:] {
			if d.GetEta().AsDuration() < quote.PickupEta.AsDuration() {
				quote.PickupEta = d.GetEta()
			}
		}
	}
	return &riderv1.GetQuoteResponse{Quote: quote}, nil
}

// RequestRide implements RiderService.
func (s *Service) RequestRide(ctx context.Context, req *riderv1.RequestRideRequest) (*riderv1.RequestRideResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	claims, err := s.pricing.Verify(req.GetQuoteId(), riderID, s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	// A quote signed before the limit was lowered is not served either.
	if err := checkTripLength(claims.Pickup, claims.Dropoff, s.cfg.MaxTripKm); err != nil {
		return nil, toStatus(err)
	}
	key := "rider:" + riderID + ":" + req.GetIdempotencyKey()
	// Concurrent retries of one request (an app resending through a slow
	// moment) share one trip-store call instead of racing each other
	// into serialization retries; each gets the same answer.
	res, err, _ := s.requests.Do(key+"\x00"+req.GetQuoteId(), func() (any, error) {
		return s.requestRide(ctx, riderID, key, req.GetQuoteId(), claims)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &riderv1.RequestRideResponse{Trip: res.(*commonv1.Trip)}, nil
}

// requestRide creates the trip for key and starts its dispatch.
func (s *Service) requestRide(ctx context.Context, riderID, key, quoteID string, claims QuoteClaims) (*commonv1.Trip, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	trip, _, err := s.trips.CreateTrip(cctx, &tripv1.CreateTripRequest{
		IdempotencyKey: key,
		RiderId:        riderID,
		Pickup:         latLngToProto(claims.Pickup),
		Dropoff:        latLngToProto(claims.Dropoff),
		Product:        claims.Product,
		QuotedFare:     claims.Fare,
		QuoteId:        quoteID,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if trip.GetState() == commonv1.TripState_TRIP_STATE_REQUESTED {
		// A lost Dispatch is not fatal: the trip is REQUESTED in the store
		// and the owning worker's recovery sweep picks it up.
		_, err := s.matching.Dispatch(cctx, &matchingv1.DispatchRequest{
			Trip:     trip,
			Deadline: timestamppb.New(trip.GetCreatedAt().AsTime().Add(s.cfg.Topology.DispatchDeadline)),
		})
		if err != nil {
			s.logger.WarnContext(ctx, "dispatch not started; recovery will pick the trip up", "trip", trip.GetId(), "err", err)
		}
	}
	return trip, nil
}

// ownTrip fetches a trip and checks it is the caller's.
func (s *Service) ownTrip(ctx context.Context, riderID, tripID string) (*commonv1.Trip, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	trip, err := s.trips.GetTrip(cctx, tripID)
	if err != nil {
		return nil, err
	}
	if trip.GetRiderId() != riderID {
		// Not NotFound: the id exists, and hiding that is not worth the
		// confusion; PermissionDenied is what a client can act on.
		return nil, toStatus(errNotYourTrip)
	}
	return trip, nil
}

// CancelRide implements RiderService.
func (s *Service) CancelRide(ctx context.Context, req *riderv1.CancelRideRequest) (*riderv1.CancelRideResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, err
	}
	trip, err := s.ownTrip(ctx, riderID, req.GetTripId())
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	cancelled, _, err := s.trips.Transition(cctx, &tripv1.TransitionRequest{
		TripId:         req.GetTripId(),
		Event:          commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED,
		Actor:          commonv1.Actor_ACTOR_RIDER,
		ActorId:        riderID,
		Reason:         req.GetReason(),
		IdempotencyKey: "rider:" + riderID + ":" + req.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, err
	}
	if trip.GetState() == commonv1.TripState_TRIP_STATE_REQUESTED {
		// Stop offering it; if this is lost the dispatch finds the trip
		// cancelled at its next assign and stops then.
		if _, err := s.matching.CancelDispatch(cctx, &matchingv1.CancelDispatchRequest{TripId: trip.GetId(), Pickup: trip.GetPickup()}); err != nil {
			s.logger.WarnContext(ctx, "cancel dispatch failed", "trip", trip.GetId(), "err", err)
		}
	}
	return &riderv1.CancelRideResponse{Trip: cancelled}, nil
}

// GetTrip implements RiderService.
func (s *Service) GetTrip(ctx context.Context, req *riderv1.GetTripRequest) (*riderv1.GetTripResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, err
	}
	trip, err := s.ownTrip(ctx, riderID, req.GetTripId())
	if err != nil {
		return nil, err
	}
	resp := &riderv1.GetTripResponse{Trip: trip}
	if hasDriver(trip) {
		if d, err := s.locateDriver(ctx, trip.GetDriverId(), trip.GetPickup()); err == nil {
			resp.DriverPosition = d.GetPosition()
		}
	}
	return resp, nil
}

func hasDriver(t *commonv1.Trip) bool {
	return tripclient.HoldsDriver(t.GetState()) && t.GetDriverId() != ""
}

// locateDriver looks the driver up in the supply index: its position and
// the gateway holding its stream.
func (s *Service) locateDriver(ctx context.Context, driverID string, near *commonv1.LatLng) (*matchingv1.NearbyDriver, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.matching.NearbyDrivers(cctx, &matchingv1.NearbyDriversRequest{
		Center:       near,
		RadiusMeters: 50000,
		Limit:        1,
		IncludeBusy:  true,
		DriverIds:    []string{driverID},
	})
	if err != nil {
		return nil, err
	}
	for _, d := range resp.GetDrivers() {
		if d.GetPosition().GetDriverId() == driverID {
			return d, nil
		}
	}
	return nil, toStatus(errDriverNotIndexed)
}

// ListTrips implements RiderService.
func (s *Service) ListTrips(ctx context.Context, req *riderv1.ListTripsRequest) (*riderv1.ListTripsResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, err
	}
	size := req.GetPageSize()
	if size == 0 {
		size = 20
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.trips.ListTrips(cctx, &tripv1.ListTripsRequest{RiderId: riderID, PageSize: size, PageToken: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	return &riderv1.ListTripsResponse{Trips: resp.GetTrips(), NextPageToken: resp.GetNextPageToken()}, nil
}

// RateTrip implements RiderService.
func (s *Service) RateTrip(ctx context.Context, req *riderv1.RateTripRequest) (*riderv1.RateTripResponse, error) {
	riderID, err := s.rider(ctx)
	if err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	rated, err := s.trips.RateTrip(cctx, &tripv1.RateTripRequest{TripId: req.GetTripId(), RiderId: riderID, Stars: req.GetStars(), Comment: req.GetComment()})
	if err != nil {
		return nil, err
	}
	return &riderv1.RateTripResponse{Trip: rated}, nil
}

// WatchTrip implements RiderService: the trip's current state first, then
// every change, and the driver's position while one is assigned. It ends
// when the trip reaches a terminal state.
func (s *Service) WatchTrip(req *riderv1.WatchTripRequest, stream grpc.ServerStreamingServer[riderv1.WatchTripResponse]) error {
	ctx := stream.Context()
	riderID, err := s.rider(ctx)
	if err != nil {
		return err
	}
	s.streams.Add(ctx, 1, riderStreams)
	defer s.streams.Add(context.WithoutCancel(ctx), -1, riderStreams)
	trip, err := s.ownTrip(ctx, riderID, req.GetTripId())
	if err != nil {
		return err
	}
	if err := stream.Send(&riderv1.WatchTripResponse{Update: &riderv1.WatchTripResponse_Trip{Trip: trip}}); err != nil {
		return err
	}
	if tripclient.IsTerminal(trip.GetState()) {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan *commonv1.Trip)
	watchErr := make(chan error, 1)
	go func() {
		// send_initial closes the gap between the GetTrip above and the
		// watch starting: the current state comes first, and versions
		// already sent are skipped below.
		watchErr <- s.trips.Watch(ctx, &tripv1.WatchTripsRequest{TripIds: []string{trip.GetId()}, SendInitial: true}, func(ev *commonv1.TripEvent) error {
			select {
			case events <- ev.GetTrip():
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	// The driver's position is pushed from the gateway holding its stream
	// (followDriver); positions of a driver no longer on the trip are
	// dropped.
	positions := make(chan *commonv1.DriverPosition, 1)
	var follow following
	defer follow.stop()
	follow.update(ctx, s, trip, positions)
	var lastPos *commonv1.DriverPosition
	for {
		select {
		case t := <-events:
			if t.GetVersion() <= trip.GetVersion() {
				continue // already sent (the watch may replay)
			}
			trip = t
			if err := stream.Send(&riderv1.WatchTripResponse{Update: &riderv1.WatchTripResponse_Trip{Trip: trip}}); err != nil {
				return err
			}
			if tripclient.IsTerminal(trip.GetState()) {
				return nil
			}
			follow.update(ctx, s, trip, positions)
		case pos := <-positions:
			if !hasDriver(trip) || pos.GetDriverId() != trip.GetDriverId() || proto.Equal(pos, lastPos) {
				continue
			}
			lastPos = pos
			if err := stream.Send(s.positionUpdate(trip, pos)); err != nil {
				return err
			}
		case err := <-watchErr:
			if err == nil {
				err = errWatchEnded
			}
			return toStatus(err)
		case <-s.draining:
			return toStatus(grpcserver.ErrDraining)
		case <-ctx.Done():
			return toStatus(ctx.Err())
		}
	}
}

// positionUpdate is the driver's position on the rider's trip, with how
// long the driver needs from there to where the trip goes next.
func (s *Service) positionUpdate(trip *commonv1.Trip, pos *commonv1.DriverPosition) *riderv1.WatchTripResponse {
	resp := &riderv1.WatchTripResponse{Update: &riderv1.WatchTripResponse_DriverPosition{DriverPosition: pos}}
	var next *commonv1.LatLng
	switch trip.GetState() {
	case commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED:
		next = trip.GetPickup()
	case commonv1.TripState_TRIP_STATE_IN_PROGRESS:
		next = trip.GetDropoff()
	default:
		return resp
	}
	meters, d := s.pricing.Drive(latLngOf(pos.GetPosition()), latLngOf(next), s.now())
	resp.Eta, resp.RemainingMeters = durationpb.New(d), meters
	return resp
}

// following is the driver a WatchTrip follows, if any.
type following struct {
	driverID string
	cancel   context.CancelFunc
	done     chan struct{}
}

// update follows trip's driver while the trip holds one, switching when the
// driver changes.
func (f *following) update(ctx context.Context, s *Service, trip *commonv1.Trip, out chan *commonv1.DriverPosition) {
	if !hasDriver(trip) {
		f.stop()
		return
	}
	if f.driverID == trip.GetDriverId() {
		return
	}
	f.stop()
	fctx, cancel := context.WithCancel(ctx)
	*f = following{driverID: trip.GetDriverId(), cancel: cancel, done: make(chan struct{})}
	go func(done chan struct{}) {
		defer close(done)
		s.followDriver(fctx, trip.GetDriverId(), trip.GetPickup(), out)
	}(f.done)
}

// stop ends the follow and waits for it.
func (f *following) stop() {
	if f.cancel != nil {
		f.cancel()
		<-f.done
	}
	*f = following{}
}

// followDriver puts the driver's positions in out (latest wins) until ctx
// ends: it finds the gateway holding the driver's stream through matching,
// then takes the positions that gateway pushes; when the driver leaves that
// gateway (or is not indexed yet) it looks again after PositionInterval.
func (s *Service) followDriver(ctx context.Context, driverID string, near *commonv1.LatLng, out chan *commonv1.DriverPosition) {
	for {
		d, err := s.locateDriver(ctx, driverID, near)
		if err == nil {
			offerLatest(out, d.GetPosition())
			near = d.GetPosition().GetPosition()
			err = s.drivers.WatchPosition(ctx, d.GetGatewayAddress(), driverID, func(p *commonv1.DriverPosition) error {
				offerLatest(out, p)
				return nil
			})
		}
		if ctx.Err() != nil {
			return
		}
		s.logger.DebugContext(ctx, "driver position feed ended; locating the driver again", "driver", driverID, "err", err)
		select {
		case <-time.After(s.cfg.PositionInterval):
		case <-ctx.Done():
			return
		}
	}
}

// offerLatest puts p in out's one slot, replacing what is unread.
func offerLatest(out chan *commonv1.DriverPosition, p *commonv1.DriverPosition) {
	for {
		select {
		case out <- p:
			return
		default:
		}
		select {
		case <-out:
		default:
		}
	}
}

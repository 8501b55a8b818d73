// Package trip is the trip service: the gRPC TripService over a trip store
// (store.Store: memstore for `hexride dev`, sqlstore in production). The
// handlers are thin: validate (protovalidate), convert, call the store, map
// errors (ToStatus). Watch tails the store's event log, so a watcher on any
// instance sees changes committed by any other within about a second.
//
// Wiring:
//
//	st, err := sqlstore.Open(ctx, dsn)      // or memstore.New()
//	srv, err := trip.NewServer(st)
//	srv.Register(grpcServer)
//	...
//	srv.Close()                             // ends watches, stops tailing
//	st.Close()
package trip

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/hexride/hexride/dispatch"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

var _ tripv1.TripServiceServer = (*Server)(nil)

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithValidator sets the protovalidate validator (default protovalidate.New()).
func WithValidator(v protovalidate.Validator) Option { return func(s *Server) { s.validator = v } }

// WithWatchPoll sets how often watches poll the event log (default 200ms)
// and the lookback window re-read each poll (default 5s).
func WithWatchPoll(interval, lookback time.Duration) Option {
	return func(s *Server) { s.pollInterval, s.lookback = interval, lookback }
}

// WithEventStream makes watches read the trip event stream (NATS
// JetStream; see StreamName) instead of polling the store's event log. A
// Relay must publish the store's outbox to it (sqlstore.WithOutbox,
// memstore.WithOutbox); the server does not run one.
func WithEventStream(js jetstream.JetStream) Option { return func(s *Server) { s.stream = js } }

// WithWatchBuffer sets how many events a watcher may lag behind before it
// is dropped with ResourceExhausted (default 1024).
func WithWatchBuffer(n int) Option { return func(s *Server) { s.watchBuffer = n } }

// WithRegionMap homes each new trip in the region of its pickup
// (RegionOf), the region map being the one definition of which region
// homes what; the request's region field is then ignored. Without it the
// request's region (empty: the store's default) is used.
func WithRegionMap(m *dispatch.RegionMap) Option { return func(s *Server) { s.regions = m } }

// Server implements tripv1.TripServiceServer over a store.Store.
type Server struct {
	tripv1.UnimplementedTripServiceServer

	store        store.Store
	log          *slog.Logger
	validator    protovalidate.Validator
	pollInterval time.Duration
	lookback     time.Duration
	watchBuffer  int
	stream       jetstream.JetStream
	hub          *hub
	regions      *dispatch.RegionMap

	meterProvider metric.MeterProvider
	metrics       tripMetrics
}

// NewServer returns a Server over st. Call Close when done. The store stays
// the caller's to close.
func NewServer(st store.Store, opts ...Option) (*Server, error) {
	s := &Server{
		store:        st,
		log:          slog.Default(),
		pollInterval: 200 * time.Millisecond,
		lookback:     store.DefaultLookback,
		watchBuffer:  1024,
	}
	for _, o := range opts {
		o(s)
	}
	if s.validator == nil {
		v, err := protovalidate.New()
		if err != nil {
			return nil, fmt.Errorf("trip: validator: %w", err)
		}
		s.validator = v
	}
	m, err := newTripMetrics(s.meterProvider)
	if err != nil {
		return nil, fmt.Errorf("trip: metrics: %w", err)
	}
	s.metrics = m
	if s.stream != nil {
		s.hub = newHub(streamFeed{js: s.stream, log: s.log}, s.watchBuffer, s.log)
	} else {
		s.hub = newHub(pollFeed{src: st, interval: s.pollInterval, lookback: s.lookback, log: s.log}, s.watchBuffer, s.log)
	}
	return s, nil
}

// Register registers the TripService on r.
func (s *Server) Register(r grpc.ServiceRegistrar) { tripv1.RegisterTripServiceServer(r, s) }

// Close ends every watch (Unavailable) and stops tailing the event log.
func (s *Server) Close() { s.hub.close() }

// validate is the one place requests are checked against their
// protovalidate rules.
func (s *Server) validate(msg proto.Message) error {
	if err := s.validator.Validate(msg); err != nil {
		return toStatus(nil, err, s.log)
	}
	return nil
}

// CreateTrip implements tripv1.TripServiceServer.
func (s *Server) CreateTrip(ctx context.Context, req *tripv1.CreateTripRequest) (_ *tripv1.CreateTripResponse, err error) {
	defer s.edge(ctx, "CreateTrip", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	pickup := latLngOf(req.GetPickup())
	region := req.GetRegion()
	if s.regions != nil {
		if region, err = s.regions.RegionOf(pickup); err != nil {
			return nil, tripapi.InvalidArgument("pickup %v: %v", pickup, err)
		}
	}
	t, created, err := s.store.Create(ctx, store.CreateTrip{
		IdempotencyKey: req.GetIdempotencyKey(),
		RiderID:        req.GetRiderId(),
		Pickup:         pickup,
		Dropoff:        latLngOf(req.GetDropoff()),
		Product:        req.GetProduct().Key(),
		QuotedFare:     lifecycle.Money{Minor: req.GetQuotedFare().GetAmountMinor(), Currency: req.GetQuotedFare().GetCurrency()},
		QuoteID:        req.GetQuoteId(),
		Region:         region,
	})
	if err != nil {
		return nil, err
	}
	if created {
		s.metrics.transition(ctx, store.Event{To: t.State})
	}
	return &tripv1.CreateTripResponse{Trip: TripToProto(t), Created: created}, nil
}

// AssignDriver implements tripv1.TripServiceServer.
func (s *Server) AssignDriver(ctx context.Context, req *tripv1.AssignDriverRequest) (_ *tripv1.AssignDriverResponse, err error) {
	defer s.edge(ctx, "AssignDriver", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	id, err := parseID(req.GetTripId())
	if err != nil {
		return nil, err
	}
	assign := store.AssignDriver{TripID: id, DriverID: req.GetDriverId(), IdempotencyKey: req.GetIdempotencyKey()}
	if req.GetAfterTripId() != "" {
		if assign.AfterTrip, err = uuid.Parse(req.GetAfterTripId()); err != nil {
			return nil, tripapi.InvalidArgument("after_trip_id %q is not a UUID", req.GetAfterTripId())
		}
	}
	t, ev, err := s.store.AssignDriver(ctx, assign)
	if err != nil {
		return nil, err
	}
	s.metrics.transition(ctx, ev)
	return &tripv1.AssignDriverResponse{Trip: TripToProto(t)}, nil
}

// Transition implements tripv1.TripServiceServer.
func (s *Server) Transition(ctx context.Context, req *tripv1.TransitionRequest) (_ *tripv1.TransitionResponse, err error) {
	defer s.edge(ctx, "Transition", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	id, err := parseID(req.GetTripId())
	if err != nil {
		return nil, err
	}
	ev, ok := eventFromProto[req.GetEvent()]
	if !ok || ev == lifecycle.EventCreate || ev == lifecycle.EventAssign {
		return nil, tripapi.InvalidArgument("event %s cannot be fired through Transition", req.GetEvent())
	}
	actor, ok := actorFromProto[req.GetActor()]
	if !ok {
		return nil, tripapi.InvalidArgument("actor %s", req.GetActor())
	}
	t, e, err := s.store.Transition(ctx, store.Transition{
		TripID: id, Event: ev, Actor: actor, ActorID: req.GetActorId(), Reason: req.GetReason(),
		IdempotencyKey: req.GetIdempotencyKey(),
	})
	if err != nil {
		return nil, err
	}
	s.metrics.transition(ctx, e)
	return &tripv1.TransitionResponse{Trip: TripToProto(t), Event: EventToProto(e)}, nil
}

// RateTrip implements tripv1.TripServiceServer.
func (s *Server) RateTrip(ctx context.Context, req *tripv1.RateTripRequest) (_ *tripv1.RateTripResponse, err error) {
	defer s.edge(ctx, "RateTrip", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	id, err := parseID(req.GetTripId())
	if err != nil {
		return nil, err
	}
	t, err := s.store.Rate(ctx, store.Rate{TripID: id, RiderID: req.GetRiderId(), Stars: req.GetStars(), Comment: req.GetComment()})
	if err != nil {
		return nil, err
	}
	return &tripv1.RateTripResponse{Trip: TripToProto(t)}, nil
}

// GetTrip implements tripv1.TripServiceServer.
func (s *Server) GetTrip(ctx context.Context, req *tripv1.GetTripRequest) (_ *tripv1.GetTripResponse, err error) {
	defer s.edge(ctx, "GetTrip", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	id, err := parseID(req.GetTripId())
	if err != nil {
		return nil, err
	}
	t, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &tripv1.GetTripResponse{Trip: TripToProto(t)}, nil
}

// ListTrips implements tripv1.TripServiceServer.
func (s *Server) ListTrips(ctx context.Context, req *tripv1.ListTripsRequest) (_ *tripv1.ListTripsResponse, err error) {
	defer s.edge(ctx, "ListTrips", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	f := store.Filter{
		RiderID:    req.GetRiderId(),
		DriverID:   req.GetDriverId(),
		PageSize:   int(req.GetPageSize()),
		PageToken:  req.GetPageToken(),
		Regions:    req.GetRegions(),
		AllowStale: req.GetAllowStale(),
	}
	for _, st := range req.GetStates() {
		f.States = append(f.States, tripapi.StateOf(st))
	}
	if req.GetCreatedAfter() != nil {
		f.CreatedAfter = req.GetCreatedAfter().AsTime()
	}
	if req.GetCreatedBefore() != nil {
		f.CreatedBefore = req.GetCreatedBefore().AsTime()
	}
	page, err := s.store.List(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &tripv1.ListTripsResponse{NextPageToken: page.NextPageToken}
	for _, t := range page.Trips {
		resp.Trips = append(resp.Trips, TripToProto(t))
	}
	return resp, nil
}

// GetTripEvents implements tripv1.TripServiceServer.
func (s *Server) GetTripEvents(ctx context.Context, req *tripv1.GetTripEventsRequest) (_ *tripv1.GetTripEventsResponse, err error) {
	defer s.edge(ctx, "GetTripEvents", &err)
	if err := s.validate(req); err != nil {
		return nil, err
	}
	id, err := parseID(req.GetTripId())
	if err != nil {
		return nil, err
	}
	evs, err := s.store.History(ctx, id)
	if err != nil {
		return nil, err
	}
	resp := &tripv1.GetTripEventsResponse{}
	for _, ev := range evs {
		resp.Events = append(resp.Events, EventToProto(ev))
	}
	return resp, nil
}

// WatchTrips implements tripv1.TripServiceServer. It streams each matching
// change once, in commit order per trip, until the client cancels (the
// stream then ends cleanly), the server closes (Unavailable) or the watcher
// falls too far behind (ResourceExhausted: re-watch with send_initial).
func (s *Server) WatchTrips(req *tripv1.WatchTripsRequest, stream grpc.ServerStreamingServer[tripv1.WatchTripsResponse]) (err error) {
	defer s.edge(stream.Context(), "WatchTrips", &err)
	if err := s.validate(req); err != nil {
		return err
	}
	ctx := stream.Context()
	s.metrics.streams.Add(ctx, 1, streamAttrs)
	defer s.metrics.streams.Add(context.WithoutCancel(ctx), -1, streamAttrs)
	f := watchFilter{riderID: req.GetRiderId(), driverID: req.GetDriverId()}
	var ids []uuid.UUID
	if len(req.GetTripIds()) > 0 {
		f.tripIDs = map[uuid.UUID]bool{}
		for _, raw := range req.GetTripIds() {
			id, err := parseID(raw)
			if err != nil {
				return err
			}
			f.tripIDs[id] = true
			ids = append(ids, id)
		}
	}
	// Subscribe before reading the initial state, so nothing committed in
	// between is missed; versions drop what the initial state covers.
	sub, err := s.hub.subscribe(ctx, f.match)
	if err != nil {
		return err
	}
	defer s.hub.unsubscribe(sub)
	sent := map[uuid.UUID]int64{}
	if req.GetSendInitial() {
		for _, id := range ids {
			h, err := s.store.History(ctx, id)
			if err != nil {
				return err
			}
			last := h[len(h)-1]
			if err := stream.Send(&tripv1.WatchTripsResponse{Event: EventToProto(last)}); err != nil {
				return err
			}
			sent[id] = last.Version
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.gone:
			return sub.reason
		case ev := <-sub.ch:
			if v, ok := sent[ev.TripID]; ok {
				if ev.Version <= v {
					continue
				}
				sent[ev.TripID] = ev.Version
			}
			if err := stream.Send(&tripv1.WatchTripsResponse{Event: EventToProto(*ev)}); err != nil {
				return err
			}
		}
	}
}

type watchFilter struct {
	tripIDs  map[uuid.UUID]bool
	riderID  string
	driverID string
}

func (f watchFilter) match(ev store.Event) bool {
	if f.tripIDs != nil && !f.tripIDs[ev.TripID] {
		return false
	}
	if f.riderID != "" && ev.Trip.RiderID != f.riderID {
		return false
	}
	if f.driverID != "" && ev.DriverID != f.driverID && ev.Trip.DriverID != f.driverID {
		return false
	}
	return true
}

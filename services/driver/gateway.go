package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/grpcserver"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// Gateway is the driver-facing engine behind the gRPC handlers.
type Gateway struct {
	cfg       Config
	matching  *matchingclient.Client
	trips     *tripclient.Client
	logger    *slog.Logger
	validator protovalidate.Validator
	batcher   *batcher
	now       func() time.Time

	metrics    gatewayMetrics
	propagator propagation.TextMapPropagator

	mu       sync.Mutex
	sessions map[string]*session

	flagged flags
}

// session is one driver's Connect stream and what the gateway knows of the
// driver.
type session struct {
	driverID string
	// Pushes (offers, trip updates) wait in queue for the stream's
	// handler, woken through wake (one slot): a queue that grows only when
	// there is something to send, where a channel would hold SendQueue
	// slots for every connected driver.
	queueMu  sync.Mutex
	queue    []*driverv1.ConnectResponse
	wake     chan struct{}
	done     chan struct{} // closed when the stream handler returns
	kick     context.CancelFunc
	limiter  *rate.Limiter // location samples
	messages *rate.Limiter // every client message

	mu        sync.Mutex
	online    bool
	product   commonv1.Product
	holds     tripHold
	last      *driverv1.LocationSample
	partition matchingclient.Partition
	offers    map[string]heldOffer // offer id → offer awaiting a reply
	// nextLapse is the earliest lapse among offers (zero: none), so the
	// per-message check is one comparison.
	nextLapse time.Time
	// lapsed remembers the last few offers dropped from offers unanswered,
	// so a late reply is still told the offer expired (nil until one
	// lapses: 512 bytes every idle session would carry).
	lapsed     *[lapsedOffers]lapsedOffer
	lapsedNext int
	// watchers get each accepted position (latest wins: one slot each).
	watchers map[chan *commonv1.DriverPosition]struct{}
	// detached: the stream ended and its departure is queued; nothing of
	// this session is queued after it.
	detached bool
	// ackedSamples is when accepted samples were last acknowledged (zero:
	// never on this stream); pendingAck is the seq of the latest accepted
	// sample not acknowledged yet (0: none). See sampleAck.
	ackedSamples time.Time
	pendingAck   uint64
}

// NewGateway builds the engine. Run must be running for locations to reach
// matching and trip updates to reach drivers.
func NewGateway(cfg Config, matching *matchingclient.Client, trips *tripclient.Client, logger *slog.Logger, tel Telemetry) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	metrics, err := newGatewayMetrics(tel.Meter)
	if err != nil {
		return nil, err
	}
	if tel.Propagator == nil {
		tel.Propagator = propagation.TraceContext{}
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        cfg,
		matching:   matching,
		trips:      trips,
		logger:     logger,
		validator:  v,
		batcher:    newBatcher(cfg, matching, logger),
		now:        time.Now,
		sessions:   map[string]*session{},
		metrics:    metrics,
		propagator: tel.Propagator,
	}
	if err := g.observeUnowned(tel.Meter); err != nil {
		return nil, err
	}
	return g, nil
}

// unownedPartitions counts the partitions of this gateway's located
// drivers that have no matching owner in its view: their samples cannot be
// delivered and no request there can be dispatched. Matching workers
// cannot see this for long (a partition without an owner stops getting
// samples and its drivers expire), so the gateway reports it.
func (g *Gateway) unownedPartitions() int {
	parts := map[matchingclient.Partition]struct{}{}
	g.mu.Lock()
	for _, s := range g.sessions {
		s.mu.Lock()
		if s.last != nil {
			parts[s.partition] = struct{}{}
		}
		s.mu.Unlock()
	}
	g.mu.Unlock()
	n := 0
	for p := range parts {
		if _, err := g.matching.Owner(p); errors.Is(err, matchingclient.ErrNoOwner) {
			n++
		}
	}
	return n
}

// Run sends location batches and relays trip updates until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.batcher.run(ctx) }()
	go func() { defer wg.Done(); g.watchTrips(ctx) }()
	wg.Wait()
}

// ConnectedDrivers is the number of open driver streams.
func (g *Gateway) ConnectedDrivers() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// attach registers a new stream for the driver, ending any older one.
func (g *Gateway) attach(driverID string, kick context.CancelFunc) *session {
	s := &session{
		driverID: driverID,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		kick:     kick,
		limiter:  rate.NewLimiter(rate.Limit(g.cfg.SampleRate), g.cfg.SampleBurst),
		messages: rate.NewLimiter(rate.Limit(g.cfg.MessageRate), g.cfg.MessageBurst),
	}
	g.mu.Lock()
	old := g.sessions[driverID]
	g.sessions[driverID] = s
	g.mu.Unlock()
	if old != nil {
		old.kick()
		// The new stream inherits what the driver was doing.
		old.mu.Lock()
		s.online, s.product, s.holds, s.last, s.partition = old.online, old.product, old.holds, old.last, old.partition
		old.mu.Unlock()
	}
	return s
}

// detach removes the session if it is still the driver's current one and
// takes the driver out of the index.
func (g *Gateway) detach(s *session) {
	g.mu.Lock()
	current := g.sessions[s.driverID] == s
	if current {
		delete(g.sessions, s.driverID)
	}
	g.mu.Unlock()
	// Under s.mu, so a sample still being handled on this stream cannot
	// queue its location after the departure (and cancel it).
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detached = true
	if current && s.last != nil {
		g.batcher.addDeparture(pendingDeparture{
			dep:       &matchingv1.DriverDeparture{DriverId: s.driverID, Partition: s.partition.String()},
			partition: s.partition,
		})
	}
}

func (g *Gateway) session(driverID string) (*session, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.sessions[driverID]
	return s, ok
}

// push queues a message for the driver's stream. A stream with SendQueue
// messages waiting is cut: its app is not reading and will reconnect.
func (g *Gateway) push(driverID string, msg *driverv1.ConnectResponse) error {
	s, ok := g.session(driverID)
	if !ok {
		return errNoStream
	}
	if offer := msg.GetOffer(); offer != nil {
		now := g.now()
		s.mu.Lock()
		s.pruneOffers(now)
		switch {
		case !s.holds.offerable(offer):
			s.mu.Unlock()
			return errOnTrip
		case s.bound(offer.GetOfferId(), now):
			s.mu.Unlock()
			return errOfferOutstanding
		}
		s.holdOffer(offer, now)
		s.mu.Unlock()
	}
	if result := msg.GetOfferResult(); result != nil {
		s.mu.Lock()
		s.closeOffer(result.GetOfferId())
		s.mu.Unlock()
	}
	select {
	case <-s.done:
		return errNoStream
	default:
	}
	s.queueMu.Lock()
	if len(s.queue) >= g.cfg.SendQueue {
		s.queueMu.Unlock()
		s.kick()
		return errNotReading
	}
	s.queue = append(s.queue, msg)
	s.queueMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // already woken
	}
	return nil
}

// takeQueue empties the session's queue of pushes.
func (s *session) takeQueue() []*driverv1.ConnectResponse {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// ack builds the reply to client message seq.
func ack(seq uint64, err error) *driverv1.ConnectResponse {
	a := &driverv1.Ack{Seq: seq, Accepted: err == nil}
	if err != nil {
		a.Reason = err.Error()
	}
	return &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Ack{Ack: a}}
}

// Sample refusal reasons (sent in Ack.reason).
var (
	errRateLimited  = errors.New("rate_limited")
	errImplausible  = errors.New("implausible_motion")
	errStale        = errors.New("timestamp_out_of_range")
	errInaccurate   = errors.New("accuracy_too_low")
	errNotOnline    = errors.New("not_online")
	errInvalid      = errors.New("invalid")
	errUnknownOffer = errors.New("unknown_offer")
	errNoProduct    = errors.New("product_required")
)

// handle processes one client message and returns the reply to send.
func (g *Gateway) handle(ctx context.Context, s *session, req *driverv1.ConnectRequest) []*driverv1.ConnectResponse {
	now := g.now()
	if !s.messages.AllowN(now, 1) {
		return []*driverv1.ConnectResponse{ack(req.GetSeq(), errRateLimited)}
	}
	// Every message is a chance to drop lapsed offers: one comparison
	// unless one is due.
	s.mu.Lock()
	s.pruneOffers(now)
	s.mu.Unlock()
	if err := g.validator.Validate(req); err != nil {
		return []*driverv1.ConnectResponse{ack(req.GetSeq(), fmt.Errorf("%w: %v", errInvalid, err))}
	}
	switch m := req.GetMsg().(type) {
	case *driverv1.ConnectRequest_Location:
		err := g.location(s, m.Location)
		if err == nil {
			g.metrics.locations.Add(ctx, 1)
		} else if integrityRefusal(err) {
			s.mu.Lock()
			var last *commonv1.LatLng
			if s.last != nil {
				last = s.last.GetPosition()
			}
			s.mu.Unlock()
			g.flagged.record(s.driverID, err, g.now(), last)
		}
		if err == nil {
			if a := s.sampleAck(req.GetSeq(), now, g.cfg.SampleAckInterval); a != nil {
				return []*driverv1.ConnectResponse{a}
			}
			return nil
		}
		return []*driverv1.ConnectResponse{ack(req.GetSeq(), err)}
	case *driverv1.ConnectRequest_Availability:
		return []*driverv1.ConnectResponse{ack(req.GetSeq(), g.availability(s, m.Availability))}
	case *driverv1.ConnectRequest_OfferReply:
		result, err := g.reply(ctx, s, m.OfferReply)
		out := []*driverv1.ConnectResponse{ack(req.GetSeq(), err)}
		if result != nil {
			out = append(out, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_OfferResult{OfferResult: result}})
		}
		return out
	}
	return []*driverv1.ConnectResponse{ack(req.GetSeq(), errInvalid)}
}

// sampleAck returns the Ack for accepted location sample seq if one is
// due (the stream's first, or the last is SampleAckInterval old); otherwise
// the sample waits for a later cumulative Ack (pendingAck). Acknowledging
// every sample would make every sample a write on its connection, and a
// round of the client's flow-control probes after it.
func (s *session) sampleAck(seq uint64, now time.Time, every time.Duration) *driverv1.ConnectResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ackedSamples.IsZero() && now.Sub(s.ackedSamples) < every {
		s.pendingAck = seq
		return nil
	}
	s.ackedSamples, s.pendingAck = now, 0
	return ack(seq, nil)
}

// owedAck takes the cumulative Ack owed for accepted samples, if any: it
// goes out ahead of any other message on the stream. now is read only
// when one is owed.
func (s *session) owedAck(now func() time.Time) *driverv1.ConnectResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pendingAck == 0 {
		return nil
	}
	seq := s.pendingAck
	s.ackedSamples, s.pendingAck = now(), 0
	return ack(seq, nil)
}

func (g *Gateway) location(s *session, sample *driverv1.LocationSample) error {
	now := g.now()
	at := sample.GetRecordedAt().AsTime()
	switch {
	case at.Before(now.Add(-g.cfg.MaxSampleAge)) || at.After(now.Add(g.cfg.MaxSampleSkew)):
		return errStale
	case float64(sample.GetAccuracyM()) > g.cfg.MaxAccuracyM:
		return errInaccurate
	case !s.limiter.AllowN(now, 1):
		return errRateLimited
	}
	pos := latLngOf(sample.GetPosition())
	partition, err := g.matching.PartitionOf(pos)
	if err != nil {
		return fmt.Errorf("%w: position out of range", errInvalid)
	}
	// Everything below, queueing included, happens under s.mu: a dispatcher
	// taking the driver offline, or the stream ending, queues a departure
	// under the same lock, so a location can never be queued after it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached {
		return nil
	}
	if s.last != nil {
		prev := s.last.GetPosition()
		dt := at.Sub(s.last.GetRecordedAt().AsTime()).Seconds()
		dist := geo.Distance(latLngOf(prev), pos)
		if dt <= 0 && dist > 1 || dt > 0 && dist/dt*3.6 > g.cfg.MaxSpeedKPH {
			return errImplausible
		}
	}
	prevPartition, hadPrev := s.partition, s.last != nil
	s.last, s.partition = sample, partition
	online, product, holds := s.online, s.product, s.holds
	if len(s.watchers) > 0 {
		p := positionOf(s.driverID, sample)
		for ch := range s.watchers {
			offerLatest(ch, p)
		}
	}

	if hadPrev && prevPartition != partition {
		// The old owner must drop the driver so two workers never offer it.
		g.batcher.addDeparture(pendingDeparture{
			dep:       &matchingv1.DriverDeparture{DriverId: s.driverID, Partition: prevPartition.String()},
			partition: prevPartition,
		})
	}
	if !online {
		return nil // kept as the last position; indexed once the driver goes online
	}
	g.batcher.addLocation(pendingLocation{loc: g.indexEntry(s.driverID, sample, product, holds), partition: partition})
	return nil
}

func (g *Gateway) indexEntry(driverID string, sample *driverv1.LocationSample, product commonv1.Product, holds tripHold) *matchingv1.DriverLocation {
	st := holds.status()
	var dropoff *commonv1.LatLng
	var ride string
	if st == matchingv1.DriverStatus_DRIVER_STATUS_FINISHING {
		dropoff, ride = holds.dropoff, holds.ride
	}
	return &matchingv1.DriverLocation{
		Dropoff:        dropoff,
		RideTripId:     ride,
		DriverId:       driverID,
		Position:       sample.GetPosition(),
		HeadingDeg:     sample.GetHeadingDeg(),
		SpeedMps:       sample.GetSpeedMps(),
		Product:        product,
		Status:         st,
		GatewayAddress: g.cfg.AdvertiseAddr,
		RecordedAt:     sample.GetRecordedAt(),
	}
}

func (g *Gateway) availability(s *session, a *driverv1.AvailabilityChange) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch a.GetAvailability() {
	case driverv1.Availability_AVAILABILITY_ONLINE:
		if a.GetProduct() == commonv1.Product_PRODUCT_UNSPECIFIED {
			return errNoProduct
		}
		s.online, s.product = true, a.GetProduct()
		if s.last != nil && !s.detached {
			g.batcher.addLocation(pendingLocation{loc: g.indexEntry(s.driverID, s.last, s.product, s.holds), partition: s.partition})
		}
	case driverv1.Availability_AVAILABILITY_OFFLINE:
		s.online = false
		if s.last != nil && !s.detached {
			g.batcher.addDeparture(pendingDeparture{
				dep:       &matchingv1.DriverDeparture{DriverId: s.driverID, Partition: s.partition.String()},
				partition: s.partition,
			})
		}
	}
	return nil
}

// reply forwards an offer reply to the matching worker that made the offer.
func (g *Gateway) reply(ctx context.Context, s *session, r *driverv1.OfferReply) (*driverv1.OfferResult, error) {
	s.mu.Lock()
	s.pruneOffers(g.now())
	held, ok := s.offers[r.GetOfferId()]
	delete(s.offers, r.GetOfferId())
	lapsed := !ok && s.takeLapsed(r.GetOfferId(), r.GetTripId())
	s.mu.Unlock()
	if lapsed {
		// What the matching worker answers a reply to an offer it revoked.
		return &driverv1.OfferResult{OfferId: r.GetOfferId(), TripId: r.GetTripId(), Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED}, nil
	}
	offer := held.offer
	if !ok || offer.GetTripId() != r.GetTripId() {
		return nil, errUnknownOffer
	}
	ctx, cancel := context.WithTimeout(g.offerContext(ctx, offer.GetTraceContext()), g.cfg.CallTimeout)
	defer cancel()
	resp, err := g.matching.ReplyOffer(ctx, &matchingv1.ReplyOfferRequest{
		OfferId:  r.GetOfferId(),
		TripId:   r.GetTripId(),
		DriverId: s.driverID,
		Decision: r.GetDecision(),
		Pickup:   offer.GetPickup(),
	})
	if err != nil {
		// The worker may have committed the assignment before failing to
		// answer (it died, or the answer was lost): the trip store knows.
		g.logger.WarnContext(ctx, "offer reply failed; asking the trip store", "driver", s.driverID, "trip", r.GetTripId(), "err", err)
		outcome := driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN
		if trip, terr := g.trips.GetTrip(ctx, r.GetTripId()); terr == nil && trip.GetDriverId() == s.driverID && tripclient.HoldsDriver(trip.GetState()) {
			outcome = driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED
			g.holdTrip(s, trip.GetId(), trip.GetState(), true, trip.GetDropoff())
		}
		return &driverv1.OfferResult{OfferId: r.GetOfferId(), TripId: r.GetTripId(), Outcome: outcome, Detail: replyLostDetail}, nil
	}
	if resp.GetOutcome() == driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED {
		g.holdTrip(s, r.GetTripId(), commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, true, offer.GetDropoff())
	}
	return &driverv1.OfferResult{OfferId: r.GetOfferId(), TripId: r.GetTripId(), Outcome: resp.GetOutcome()}, nil
}

// holdTrip records a trip's state for the driver (mine: the trip is the
// driver's) and, if its dispatch status changes, re-indexes it at once so
// matching stops (or resumes) offering it trips.
func (g *Gateway) holdTrip(s *session, tripID string, state commonv1.TripState, mine bool, dropoff *commonv1.LatLng) {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.holds
	s.holds = s.holds.after(tripID, state, mine, dropoff)
	if s.holds == was {
		return
	}
	if s.online && s.last != nil && !s.detached {
		g.batcher.addLocation(pendingLocation{loc: g.indexEntry(s.driverID, s.last, s.product, s.holds), partition: s.partition})
	}
}

// tripHold is what of its trips occupies a driver, as the trip store's
// events and its accepted offers tell the gateway: at most one pickup
// (a trip it drives to or waits at) and one ride (a rider on board), the
// trip store's invariant. A driver with a pickup is busy; one with only a
// ride is finishing: matching may offer it its next trip (chained supply).
type tripHold struct {
	pickup  string
	ride    string
	dropoff *commonv1.LatLng // where ride ends
}

// status is the driver's dispatch status.
func (h tripHold) status() matchingv1.DriverStatus {
	switch {
	case h.pickup != "":
		return matchingv1.DriverStatus_DRIVER_STATUS_BUSY
	case h.ride != "":
		return matchingv1.DriverStatus_DRIVER_STATUS_FINISHING
	}
	return matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE
}

// offerable reports whether the driver may be offered o: a free driver
// any trip, a finishing one only a trip after its ride.
func (h tripHold) offerable(o *driverv1.Offer) bool {
	return h.pickup == "" && (h.ride == "" || o.GetAfterTripId() == h.ride)
}

// after is the hold once trip tripID is in state (mine: the trip is this
// driver's; a trip unassigned or given to another driver is not).
func (h tripHold) after(tripID string, state commonv1.TripState, mine bool, dropoff *commonv1.LatLng) tripHold {
	if h.pickup == tripID {
		h.pickup = ""
	}
	if h.ride == tripID {
		h.ride, h.dropoff = "", nil
	}
	switch {
	case !mine || !tripclient.HoldsDriver(state):
	case state == commonv1.TripState_TRIP_STATE_IN_PROGRESS:
		h.ride, h.dropoff = tripID, dropoff
	default:
		h.pickup = tripID
	}
	return h
}

// serve runs one Connect stream: a reader goroutine handles client
// messages and sends their replies; this goroutine sends what is pushed to
// the driver and ends the stream when the gateway must (a newer stream of
// the driver, a drain, an app not reading). Both are needed: gRPC offers
// no way to end a stream whose handler waits in Recv with a status of the
// handler's choosing.
func (g *Gateway) serve(ctx context.Context, driverID string, recv func() (*driverv1.ConnectRequest, error), send func(*driverv1.ConnectResponse) error, draining <-chan struct{}) error {
	g.metrics.streams.Add(ctx, 1, driverStreams)
	defer g.metrics.streams.Add(context.WithoutCancel(ctx), -1, driverStreams)
	defer g.metrics.disconnects.Add(context.WithoutCancel(ctx), 1, driverStreams)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := g.attach(driverID, cancel)
	defer close(s.done)
	defer g.detach(s)

	// Replies go out from the reader as it handles each message (no hop
	// through the queue: one goroutine hand-off less per sample); pushes
	// from matching and the trip feed go through s.queue. gRPC allows one
	// sender at a time, hence the lock.
	var (
		sendMu sync.Mutex
		closed bool // the handler returned: gRPC owns the stream again
	)
	sendOne := func(msg *driverv1.ConnectResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		if closed {
			return errReplaced
		}
		if owed := s.owedAck(g.now); owed != nil {
			if err := send(owed); err != nil {
				return err
			}
		}
		return send(msg)
	}
	defer func() {
		sendMu.Lock()
		closed = true
		sendMu.Unlock()
	}()
	cadence := &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Cadence{Cadence: &driverv1.Cadence{
		LocationInterval:  durationpb.New(g.cfg.LocationInterval),
		SampleAckInterval: durationpb.New(g.cfg.SampleAckInterval),
	}}}
	recvErr := make(chan error, 1)
	go func() {
		// Sent here rather than by the handler's goroutine, which then
		// only waits: its stack (kept for the stream's life) does not
		// grow with the send path.
		if err := sendOne(cadence); err != nil {
			recvErr <- err
			return
		}
		for {
			req, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			for _, reply := range g.handle(ctx, s, req) {
				if err := sendOne(reply); err != nil {
					recvErr <- err
					return
				}
			}
		}
	}()
	for {
		select {
		case <-s.wake:
			for _, msg := range s.takeQueue() {
				if err := sendOne(msg); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return ignoreEOF(err)
		case <-draining:
			return grpcserver.ErrDraining
		case <-ctx.Done():
			if s2, ok := g.session(driverID); ok && s2 != s {
				return errReplaced
			}
			return ctx.Err()
		}
	}
}

// watchTrips relays every trip change to the driver involved, if its stream
// is here, and keeps the driver's busy flag in step with its trips. It
// reconnects with backoff until ctx ends.
func (g *Gateway) watchTrips(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := g.trips.Watch(ctx, &tripv1.WatchTripsRequest{}, func(ev *commonv1.TripEvent) error {
			backoff = 100 * time.Millisecond
			g.relay(ev)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		g.logger.Debug("trip watch ended; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (g *Gateway) relay(ev *commonv1.TripEvent) {
	driverID := ev.GetDriverId()
	if driverID == "" {
		driverID = ev.GetTrip().GetDriverId()
	}
	if driverID == "" {
		return
	}
	s, ok := g.session(driverID)
	if !ok {
		return
	}
	g.holdTrip(s, ev.GetTrip().GetId(), ev.GetToState(), ev.GetTrip().GetDriverId() == driverID, ev.GetTrip().GetDropoff())
	_ = g.push(driverID, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_TripUpdate{TripUpdate: &driverv1.TripUpdate{Trip: ev.GetTrip(), Event: ev.GetType()}}})
}

// act fires a driver trip action through the trip service.
func (g *Gateway) act(ctx context.Context, driverID, tripID, key, reason string, event commonv1.TripEventType) (*commonv1.Trip, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
	defer cancel()
	trip, _, err := g.trips.Transition(ctx, &tripv1.TransitionRequest{
		TripId:         tripID,
		Event:          event,
		Actor:          commonv1.Actor_ACTOR_DRIVER,
		ActorId:        driverID,
		Reason:         reason,
		IdempotencyKey: "driver:" + driverID + ":" + key,
	})
	if err != nil {
		return nil, err
	}
	return trip, nil
}

func ignoreEOF(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// replyLostDetail tells the app why an offer result came from the trip
// store (what went wrong is in the gateway's log).
const replyLostDetail = "the reply did not reach dispatch; the outcome is the trip's current state"

// watchPosition calls fn with the driver's current position, then with each
// accepted one, until the driver's stream here ends (errNoStream), draining
// closes, ctx ends or fn fails. A slow watcher skips to the latest.
func (g *Gateway) watchPosition(ctx context.Context, driverID string, draining <-chan struct{}, fn func(*commonv1.DriverPosition) error) error {
	s, ok := g.session(driverID)
	if !ok {
		return errNoStream
	}
	ch := make(chan *commonv1.DriverPosition, 1)
	s.mu.Lock()
	if s.watchers == nil {
		s.watchers = map[chan *commonv1.DriverPosition]struct{}{}
	}
	s.watchers[ch] = struct{}{}
	if s.last != nil {
		ch <- positionOf(driverID, s.last)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()
	for {
		select {
		case p := <-ch:
			if err := fn(p); err != nil {
				return err
			}
		case <-s.done:
			return errNoStream
		case <-draining:
			return grpcserver.ErrDraining
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// offerLatest puts p in ch's one slot, replacing what the watcher has not
// read yet.
func offerLatest(ch chan *commonv1.DriverPosition, p *commonv1.DriverPosition) {
	for {
		select {
		case ch <- p:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func positionOf(driverID string, sample *driverv1.LocationSample) *commonv1.DriverPosition {
	return &commonv1.DriverPosition{
		DriverId:   driverID,
		Position:   sample.GetPosition(),
		HeadingDeg: sample.GetHeadingDeg(),
		SpeedMps:   sample.GetSpeedMps(),
		RecordedAt: sample.GetRecordedAt(),
	}
}

// takeOffline takes a connected driver out of dispatch and tells its app.
func (g *Gateway) takeOffline(driverID string) error {
	s, ok := g.session(driverID)
	if !ok {
		return errNoStream
	}
	if err := g.availability(s, &driverv1.AvailabilityChange{Availability: driverv1.Availability_AVAILABILITY_OFFLINE}); err != nil {
		return err
	}
	return g.push(driverID, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Availability{Availability: &driverv1.AvailabilityChange{
		Availability: driverv1.Availability_AVAILABILITY_OFFLINE,
	}}})
}

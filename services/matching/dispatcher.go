package matching

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// run is one trip's dispatch in flight on this worker.
type run struct {
	trip *commonv1.Trip
	// pickup and partition are the trip's pickup, converted once.
	pickup    geo.LatLng
	partition matchingapi.Partition
	parent    trace.SpanContext // the Dispatch call's span, if any
	deadline  time.Time
	cancel    context.CancelCauseFunc
	replies   chan offerReply
	done      chan struct{}
}

// offerReply is a driver's answer routed to the run that made the offer.
type offerReply struct {
	ctx      context.Context // the ReplyOffer call (its span parents the assignment)
	offerID  string
	driverID string
	accept   bool
	result   chan *matchingv1.ReplyOfferResponse
}

// errDispatchCancelled is the cause of a dispatch the rider cancelled.
var errDispatchCancelled = errors.New("dispatch cancelled")

func (e *Engine) initDispatch() error {
	rank := dispatch.DefaultRankConfig()
	rank.Roads = e.roads
	scorer, err := dispatch.NewETAScorer(rank)
	if err != nil {
		return err
	}
	surge, err := dispatch.NewSurge(e.cfg.Surge)
	if err != nil {
		return err
	}
	e.scorer, e.surge = scorer, surge
	return nil
}

// etas estimates how long each candidate needs to reach centre (one road
// query for all of them), in the order given.
func (e *Engine) etas(centre geo.LatLng, cs []dispatch.Candidate) []dispatch.Ranked {
	return e.scorer.Estimates(dispatch.RankRequest{Pickup: centre, At: e.clock.Now()}, cs)
}

// isOffered reports whether an offer to the driver is outstanding here.
func (e *Engine) isOffered(driverID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.offering[driverID]
	return ok
}

// Dispatch starts finding a driver for a REQUESTED trip whose pickup this
// worker owns; a trip already in flight here is left alone.
func (e *Engine) Dispatch(ctx context.Context, trip *commonv1.Trip, deadline time.Time) (*matchingv1.DispatchResponse, error) {
	if _, err := uuid.Parse(trip.GetId()); err != nil || trip.GetPickup() == nil {
		return nil, errTripIncomplete
	}
	pickup := latLng(trip.GetPickup())
	partition, err := e.checkOwner(pickup)
	if err != nil {
		return nil, err
	}
	if trip.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED {
		return nil, errTripNotRequested
	}
	if deadline.IsZero() {
		deadline = e.clock.Now().Add(e.cfg.Topology.DispatchDeadline)
	}
	started := e.start(trip, pickup, partition, deadline, spanParent(ctx))
	if started {
		e.stats.dispatches.Add(1)
		if pc, err := geo.CellAt(pickup, e.cfg.Topology.SurgeResolution); err == nil {
			_ = e.surge.RecordDemand(pc, e.clock.Now())
		}
	}
	return &matchingv1.DispatchResponse{Partition: partition.String(), Started: started}, nil
}

func (e *Engine) start(trip *commonv1.Trip, pickup geo.LatLng, partition matchingapi.Partition, deadline time.Time, parent trace.SpanContext) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.inflight[trip.GetId()]; ok {
		return false
	}
	ctx, cancel := context.WithCancelCause(e.baseCtx)
	r := &run{trip: trip, pickup: pickup, partition: partition, parent: parent, deadline: deadline, cancel: cancel, replies: make(chan offerReply), done: make(chan struct{})}
	e.inflight[trip.GetId()] = r
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(r.done)
		defer cancel(nil)
		e.dispatch(ctx, r)
		e.mu.Lock()
		delete(e.inflight, trip.GetId())
		e.mu.Unlock()
	}()
	return true
}

// CancelDispatch stops the trip's dispatch if it runs here.
func (e *Engine) CancelDispatch(tripID string) bool {
	e.mu.Lock()
	r, ok := e.inflight[tripID]
	e.mu.Unlock()
	if ok {
		r.cancel(errDispatchCancelled)
	}
	return ok
}

// ReplyOffer routes a driver's answer to the dispatch that made the offer.
func (e *Engine) ReplyOffer(ctx context.Context, req *matchingv1.ReplyOfferRequest) (*matchingv1.ReplyOfferResponse, error) {
	e.mu.Lock()
	r, ok := e.inflight[req.GetTripId()]
	e.mu.Unlock()
	if !ok {
		if _, err := e.checkOwner(latLng(req.GetPickup())); err != nil {
			return nil, err
		}
		return &matchingv1.ReplyOfferResponse{Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN}, nil
	}
	reply := offerReply{
		ctx:      ctx,
		offerID:  req.GetOfferId(),
		driverID: req.GetDriverId(),
		accept:   req.GetDecision() == driverv1.OfferDecision_OFFER_DECISION_ACCEPT,
		result:   make(chan *matchingv1.ReplyOfferResponse, 1),
	}
	select {
	case r.replies <- reply:
	case <-r.done:
		return &matchingv1.ReplyOfferResponse{Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case resp := <-reply.result:
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pendingOffer is the offer a cascade has out.
type pendingOffer struct {
	id        string
	candidate dispatch.Ranked
	span      trace.Span
	sent      time.Time
}

// end closes the offer's span with its outcome and counts it.
func (e *Engine) endOffer(ctx context.Context, o *pendingOffer, outcome string) {
	e.countOffer(ctx, outcome)
	o.span.SetAttributes(attribute.String("outcome", outcome), attribute.Float64("wait_s", e.clock.Now().Sub(o.sent).Seconds()))
	o.span.End()
}

// dispatch hosts the trip's offer cascade: the cascade decides (pure, in
// package dispatch), this loop does the I/O its actions ask for and feeds
// the outcomes back, until the trip is assigned or the cascade gives up.
func (e *Engine) dispatch(ctx context.Context, r *run) {
	ctx, span := e.tracer.Start(trace.ContextWithSpanContext(ctx, r.parent), "dispatch",
		trace.WithAttributes(attribute.String("trip.id", r.trip.GetId()), attribute.Bool("recovered", !r.parent.IsValid())))
	defer span.End()
	log := e.logger.With("trip", r.trip.GetId())
	now := e.clock.Now()
	cascade, err := dispatch.NewCascade(r.trip.GetId(), e.cascadeConfig(max(r.deadline.Sub(now), time.Millisecond)))
	if err != nil {
		log.ErrorContext(ctx, "bad cascade config", "err", err)
		return
	}
	var (
		offer   *pendingOffer
		waiting *offerReply // the accept whose assignment is being committed
	)
	defer func() {
		if offer != nil {
			e.endOffer(ctx, offer, "withdrawn")
			e.release(offer.candidate.ID, false)
		}
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	actions := cascade.Start(now)
	for {
		for len(actions) > 0 {
			act := actions[0]
			actions = actions[1:]
			switch a := act.(type) {
			case dispatch.Search:
				ranked := e.search(ctx, r, a.Radius, a.Exclude)
				actions = append(actions, cascade.CandidatesFound(e.clock.Now(), a.Seq, ranked)...)
			case dispatch.SendOffer:
				o, err := e.sendOffer(ctx, r.trip, a)
				if err != nil {
					e.countOffer(ctx, "unreachable")
					log.DebugContext(ctx, "offer not delivered", "driver", a.Candidate.ID, "err", err)
					actions = append(actions, cascade.Reply(e.clock.Now(), a.Candidate.ID, false)...)
					continue
				}
				offer = o
				e.stats.offersSent.Add(1)
			case dispatch.RevokeOffer:
				if offer != nil && offer.candidate.ID == a.DriverID {
					e.stats.expired.Add(1)
					e.endOffer(ctx, offer, "expired")
					e.notify(offer.candidate.Candidate, offer.id, r, driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED)
					e.release(a.DriverID, true)
					offer = nil
				}
			case dispatch.Assign:
				actx := ctx
				if waiting != nil {
					// The accept's trace: offer → driver's reply → assignment.
					actx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(waiting.ctx))
				}
				trip, err := e.assign(actx, r.trip.GetId(), a.DriverID)
				if err == nil {
					e.release(a.DriverID, false)
					_ = e.index.SetStatus(a.DriverID, dispatch.StatusBusy)
					e.endOffer(ctx, offer, "accepted")
					offer = nil
					waiting.answer(driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED, trip)
					e.stats.accepted.Add(1)
					e.metrics.timeToMatch.Record(ctx, e.clock.Now().Sub(r.trip.GetCreatedAt().AsTime()).Seconds())
					span.SetAttributes(attribute.String("outcome", "assigned"), attribute.String("driver.id", a.DriverID))
					log.InfoContext(ctx, "driver assigned", "driver", a.DriverID, "offers", len(cascade.Offered()))
					return
				}
				waiting.answer(driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN, nil)
				waiting = nil
				e.release(a.DriverID, true)
				e.endOffer(ctx, offer, "lost_race")
				offer = nil
				if errors.Is(err, tripclient.ErrTripNotRequested) && e.tripGone(ctx, r.trip.GetId()) {
					log.InfoContext(ctx, "dispatch ended: trip no longer requested")
					return
				}
				log.DebugContext(ctx, "assignment failed", "driver", a.DriverID, "err", err)
				actions = append(actions, cascade.AssignResult(e.clock.Now(), a.DriverID, err)...)
			case dispatch.GiveUp:
				span.SetAttributes(attribute.String("outcome", string(a.Reason)), attribute.Int("offers", a.Offered))
				e.giveUp(ctx, r, a.Reason)
				return
			}
		}
		if cascade.State().Done() {
			return
		}
		var wake <-chan time.Time
		if at := cascade.NextWake(); !at.IsZero() {
			timer.Reset(max(at.Sub(e.clock.Now()), 0))
			wake = timer.C
		}
		select {
		case <-wake:
			actions = cascade.Tick(e.clock.Now())
		case rep := <-r.replies:
			if offer == nil || rep.offerID != offer.id || rep.driverID != offer.candidate.ID {
				rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil)
				continue
			}
			actions = cascade.Reply(e.clock.Now(), rep.driverID, rep.accept)
			switch {
			case !rep.accept:
				rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_DECLINED, nil)
				e.stats.declined.Add(1)
				e.release(rep.driverID, true)
				e.endOffer(ctx, offer, "declined")
				offer = nil
			case len(actions) == 0:
				rep.answer(driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED, nil)
			default:
				waiting = &rep
			}
		case <-ctx.Done():
			// Cancelled by the rider (CancelDispatch), or this worker stops
			// (recovery on the partition's owner re-dispatches the trip).
			cascade.Cancel(e.clock.Now())
			span.SetAttributes(attribute.String("outcome", "cancelled"))
			if offer != nil {
				e.notify(offer.candidate.Candidate, offer.id, r, driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN)
				e.release(offer.candidate.ID, true)
				e.endOffer(ctx, offer, "withdrawn")
				offer = nil
			}
			return
		}
	}
}

// cascadeConfig is the engine's cascade tuning for a dispatch with the
// given time left.
func (e *Engine) cascadeConfig(left time.Duration) dispatch.CascadeConfig {
	return dispatch.CascadeConfig{
		OfferTimeout:  e.cfg.OfferTimeout,
		Deadline:      left,
		InitialRadius: e.cfg.SearchRadiusM,
		MaxRadius:     e.cfg.MaxSearchRadiusM,
		RadiusGrowth:  2,
		RetryInterval: e.cfg.RetrySearchEvery,
	}
}

// answer replies to a driver's offer reply (nil-safe).
func (rep *offerReply) answer(outcome driverv1.OfferOutcome, trip *commonv1.Trip) {
	if rep == nil {
		return
	}
	rep.result <- &matchingv1.ReplyOfferResponse{Outcome: outcome, Trip: trip}
}

// search finds and ranks candidates around the pickup, across partition
// borders.
func (e *Engine) search(ctx context.Context, r *run, radius float64, exclude map[string]struct{}) []dispatch.Ranked {
	ctx, span := e.tracer.Start(ctx, "dispatch.search", trace.WithAttributes(
		attribute.Float64("radius_m", radius), attribute.Int("excluded", len(exclude))))
	defer span.End()
	cands, err := e.nearby(ctx, nearbyQuery{
		centre:    r.pickup,
		partition: r.partition,
		radius:    radius,
		limit:     e.cfg.Candidates,
		product:   r.trip.GetProduct().Key(),
		exclude:   exclude,
	})
	if err != nil {
		span.RecordError(err)
		e.logger.WarnContext(ctx, "candidate search failed", "trip", r.trip.GetId(), "err", err)
		return nil
	}
	span.SetAttributes(attribute.Int("candidates", len(cands)))
	_, rankSpan := e.tracer.Start(ctx, "dispatch.rank")
	ranked := e.scorer.Rank(dispatch.RankRequest{Pickup: r.pickup, At: e.clock.Now()}, cands)
	rankSpan.SetAttributes(rankAttributes(ranked)...)
	rankSpan.End()
	return ranked
}

// sendOffer reserves the driver (no other dispatch on this worker offers it
// meanwhile, and its next location update keeps it out of searches) and
// pushes the offer to the gateway holding its stream.
func (e *Engine) sendOffer(ctx context.Context, trip *commonv1.Trip, a dispatch.SendOffer) (*pendingOffer, error) {
	c := a.Candidate
	e.mu.Lock()
	if other, busy := e.offering[c.ID]; busy && other != trip.GetId() {
		e.mu.Unlock()
		return nil, errDriverBusy
	}
	e.offering[c.ID] = trip.GetId()
	e.mu.Unlock()
	_ = e.index.SetStatus(c.ID, dispatch.StatusBusy)

	octx, span := e.tracer.Start(ctx, "dispatch.offer", trace.WithAttributes(
		attribute.String("driver.id", c.ID), attribute.Float64("eta_s", c.Parts.ETA.Seconds()), attribute.Float64("distance_m", c.Distance)))
	o := &pendingOffer{id: uuid.NewString(), candidate: c, span: span, sent: e.clock.Now()}
	carrier := propagation.MapCarrier{}
	e.propagator.Inject(octx, carrier)
	msg := &driverv1.Offer{
		TraceContext:         carrier,
		OfferId:              o.id,
		TripId:               trip.GetId(),
		Pickup:               trip.GetPickup(),
		Dropoff:              trip.GetDropoff(),
		Product:              trip.GetProduct(),
		Fare:                 trip.GetQuotedFare(),
		PickupEta:            durationpb.New(c.Parts.ETA),
		PickupDistanceMeters: c.Distance,
		ExpiresAt:            timestamppb.New(a.Expires),
	}
	if err := e.push(octx, c.Candidate, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Offer{Offer: msg}}); err != nil {
		e.release(c.ID, true)
		span.RecordError(err)
		span.SetAttributes(attribute.String("outcome", "unreachable"))
		span.End()
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	return o, nil
}

// release ends this worker's reservation of a driver; available puts it
// back into searches at once (otherwise its next location update does).
func (e *Engine) release(driverID string, available bool) {
	e.mu.Lock()
	delete(e.offering, driverID)
	e.mu.Unlock()
	if available {
		_ = e.index.SetStatus(driverID, dispatch.StatusAvailable)
	}
}

// giveUp records why a dispatch ended without a driver. A cancelled
// dispatch records nothing: the cancel already did.
func (e *Engine) giveUp(ctx context.Context, r *run, reason dispatch.Reason) {
	if reason == dispatch.ReasonCancelled {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CallTimeout)
	defer cancel()
	text, ok := giveUpText[reason]
	if !ok {
		text = string(reason)
	}
	_, _, err := e.trips.Transition(ctx, &tripv1.TransitionRequest{
		TripId:         r.trip.GetId(),
		Event:          commonv1.TripEventType_TRIP_EVENT_TYPE_NO_DRIVER_FOUND,
		Actor:          commonv1.Actor_ACTOR_SYSTEM,
		Reason:         text,
		IdempotencyKey: "no-driver:" + r.trip.GetId(),
	})
	if err != nil && !errors.Is(err, tripclient.ErrInvalidTransition) {
		e.logger.WarnContext(ctx, "could not record no driver found", "trip", r.trip.GetId(), "err", err)
		return
	}
	e.stats.noDriver.Add(1)
}

// giveUpText is the reason recorded on the trip for each give-up.
var giveUpText = map[dispatch.Reason]string{
	dispatch.ReasonNoCandidates:     "no eligible driver nearby before the dispatch deadline",
	dispatch.ReasonDeadlineExceeded: "no driver accepted before the dispatch deadline",
	dispatch.ReasonMaxOffers:        "every offer was declined",
}

// Reasons an offer could not be made.
var (
	errUnreachable = errors.New("driver unreachable")
	errDriverBusy  = errors.New("driver has another offer")
)

// assign commits the pairing; the trip store's compare-and-set and its
// one-active-trip-per-driver index decide races. Transient failures retry
// with the same idempotency key, so a commit whose answer was lost is not
// applied twice.
func (e *Engine) assign(ctx context.Context, tripID, driverID string) (_ *commonv1.Trip, err error) {
	ctx, span := e.tracer.Start(ctx, "dispatch.assign", trace.WithAttributes(attribute.String("driver.id", driverID)))
	retries := 0
	defer func() {
		span.SetAttributes(attribute.Int("retries", retries))
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}()
	for attempt := range 3 {
		retries = attempt
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return nil, err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		var trip *commonv1.Trip
		trip, err = e.trips.AssignDriver(cctx, tripID, driverID, "assign:"+tripID+":"+driverID)
		cancel()
		if err == nil {
			return trip, nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted,
			codes.ResourceExhausted: // the store shed the call before any work
			continue
		}
		return nil, err
	}
	return nil, err
}

// tripGone reports whether the trip left REQUESTED (cancelled, or assigned
// by another worker during a membership change).
func (e *Engine) tripGone(ctx context.Context, tripID string) bool {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	trip, err := e.trips.GetTrip(cctx, tripID)
	return err == nil && trip.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED
}

// push delivers a message to the gateway holding the driver's stream.
func (e *Engine) push(ctx context.Context, c dispatch.Candidate, msg *driverv1.ConnectResponse) error {
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	return e.drivers.Push(cctx, c.Gateway, c.ID, msg)
}

// notify tells the driver what became of an offer it did not get (best
// effort: the offer's expiry tells the app as much).
func (e *Engine) notify(c dispatch.Candidate, offerID string, r *run, outcome driverv1.OfferOutcome) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.CallTimeout)
	defer cancel()
	_ = e.push(ctx, c, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_OfferResult{OfferResult: &driverv1.OfferResult{
		OfferId: offerID, TripId: r.trip.GetId(), Outcome: outcome,
	}}})
}

// recoveryLoop re-dispatches REQUESTED trips in partitions this worker owns
// that no worker is dispatching: their worker died or left, their Dispatch
// call was lost, or their driver withdrew.
func (e *Engine) recoveryLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.RecoveryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := e.recover(ctx); err != nil && ctx.Err() == nil {
			e.logger.Warn("recovery sweep failed", "err", err)
		}
	}
}

func (e *Engine) recover(ctx context.Context) error {
	now := e.clock.Now()
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		resp, err := e.trips.ListTrips(cctx, &tripv1.ListTripsRequest{
			States:        []commonv1.TripState{commonv1.TripState_TRIP_STATE_REQUESTED},
			CreatedBefore: timestamppb.New(now.Add(-e.cfg.RecoveryAge)),
			PageSize:      500,
			PageToken:     token,
		})
		cancel()
		if err != nil {
			return err
		}
		for _, trip := range resp.GetTrips() {
			pickup := latLng(trip.GetPickup())
			partition, err := e.partitionOf(pickup)
			if err != nil {
				continue
			}
			if _, _, mine := e.owner(partition); !mine {
				continue
			}
			deadline := trip.GetCreatedAt().AsTime().Add(e.cfg.Topology.DispatchDeadline)
			if floor := now.Add(e.cfg.Topology.DispatchDeadline / 3); deadline.Before(floor) {
				// A trip back from a withdrawn driver, or one whose worker
				// died late: give it a fair search of its own.
				deadline = floor
			}
			if e.start(trip, pickup, partition, deadline, trace.SpanContext{}) {
				e.logger.Info("recovered dispatch", "trip", trip.GetId(), "partition", partition.String())
			}
		}
		token = resp.GetNextPageToken()
		if token == "" {
			return nil
		}
	}
}

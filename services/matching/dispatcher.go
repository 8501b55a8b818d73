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
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// offerReply is a driver's answer routed to the run that made the offer.
type offerReply struct {
	ctx      context.Context // the ReplyOffer call (its span parents the assignment)
	offerID  string
	driverID string
	accept   bool
	result   chan *matchingv1.ReplyOfferResponse
}

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

// start hands a trip to the dispatch host unless it runs there already.
func (e *Engine) start(trip *commonv1.Trip, pickup geo.LatLng, partition matchingapi.Partition, deadline time.Time, parent trace.SpanContext) bool {
	return e.host.submit(&run{trip: trip, pickup: pickup, partition: partition, parent: parent, deadline: deadline})
}

// running reports whether the trip's dispatch runs here.
func (e *Engine) running(tripID string) bool { return e.host.running(tripID) }

// CancelDispatch stops the trip's dispatch if it runs here; if none does
// and the pickup's partition is another worker's, the redirect.
func (e *Engine) CancelDispatch(req *matchingv1.CancelDispatchRequest) (*matchingv1.CancelDispatchResponse, error) {
	if e.host.cancel(req.GetTripId()) {
		return &matchingv1.CancelDispatchResponse{Cancelled: true}, nil
	}
	if _, err := e.checkOwner(latLng(req.GetPickup())); err != nil {
		return nil, err
	}
	return &matchingv1.CancelDispatchResponse{}, nil
}

// ReplyOffer routes a driver's answer to the dispatch that made the offer.
func (e *Engine) ReplyOffer(ctx context.Context, req *matchingv1.ReplyOfferRequest) (*matchingv1.ReplyOfferResponse, error) {
	reply := offerReply{
		ctx:      ctx,
		offerID:  req.GetOfferId(),
		driverID: req.GetDriverId(),
		accept:   req.GetDecision() == driverv1.OfferDecision_OFFER_DECISION_ACCEPT,
		result:   make(chan *matchingv1.ReplyOfferResponse, 1),
	}
	if !e.host.reply(req.GetTripId(), reply) {
		if _, err := e.checkOwner(latLng(req.GetPickup())); err != nil {
			return nil, err
		}
		return &matchingv1.ReplyOfferResponse{Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_WITHDRAWN}, nil
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

// begin opens the dispatch span of r (hostIO).
func (e *Engine) begin(r *run) context.Context {
	ctx, _ := e.tracer.Start(trace.ContextWithSpanContext(e.baseContext(), r.parent), "dispatch",
		trace.WithAttributes(attribute.String("trip.id", r.trip.GetId()), attribute.Bool("recovered", !r.parent.IsValid()),
			attribute.String("mode", string(e.cfg.Mode))))
	return ctx
}

// finished closes the dispatch span of r (hostIO).
func (e *Engine) finished(r *run, outcome string) {
	span := trace.SpanFromContext(r.ctx)
	span.SetAttributes(attribute.String("outcome", outcome), attribute.Int("offers", r.offers))
	if r.assigned != "" {
		span.SetAttributes(attribute.String("driver.id", r.assigned))
	}
	span.End()
	e.logger.DebugContext(r.ctx, "dispatch ended", "trip", r.trip.GetId(), "outcome", outcome, "offers", r.offers)
}

// closeOffer ends a delivered offer (hostIO): tells the driver first, so
// it never sees a second offer before this one ended, then releases it.
func (e *Engine) closeOffer(r *run, o *pendingOffer, end offerEnd) {
	if end.notify != driverv1.OfferOutcome_OFFER_OUTCOME_UNSPECIFIED {
		e.notify(o.candidate.Candidate, o.id, r, end.notify)
	}
	e.supply.release(o.candidate.ID, end.available)
	switch end.outcome {
	case endExpired.outcome:
		e.stats.expired.Add(1)
	case endDeclined.outcome:
		e.stats.declined.Add(1)
	case endAccepted.outcome:
		e.supply.assigned(o.candidate.ID)
		e.stats.accepted.Add(1)
		e.metrics.timeToMatch.Record(r.ctx, e.clock.Now().Sub(r.trip.GetCreatedAt().AsTime()).Seconds())
		e.logger.InfoContext(r.ctx, "driver assigned", "trip", r.trip.GetId(), "driver", o.candidate.ID, "offers", r.offers)
	}
	e.endOffer(r.ctx, o, end.outcome)
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

// sleep waits d on clock; an error if ctx ends first.
func sleep(ctx context.Context, clock dispatch.TimerClock, d time.Duration) error {
	fired := make(chan struct{})
	t := clock.AfterFunc(d, func() { close(fired) })
	defer t.Stop()
	select {
	case <-fired:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answer replies to a driver's offer reply (nil-safe).
func (rep *offerReply) answer(outcome driverv1.OfferOutcome, trip *commonv1.Trip) {
	if rep == nil {
		return
	}
	rep.result <- &matchingv1.ReplyOfferResponse{Outcome: outcome, Trip: trip}
}

// search finds and ranks the limit nearest candidates around the pickup
// (0: Candidates), across partition borders.
func (e *Engine) search(ctx context.Context, r *run, radius float64, limit int, exclude map[string]struct{}) []dispatch.Ranked {
	if limit <= 0 {
		limit = e.cfg.Candidates
	}
	ctx, span := e.tracer.Start(ctx, "dispatch.search", trace.WithAttributes(
		attribute.Float64("radius_m", radius), attribute.Int("excluded", len(exclude))))
	defer span.End()
	cands, err := e.nearby.find(ctx, nearbyQuery{
		centre:    r.pickup,
		partition: r.partition,
		radius:    radius,
		limit:     limit,
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
	req := dispatch.RankRequest{Pickup: r.pickup, At: e.clock.Now()}
	ranked := e.scorer.Rank(req, cands)
	if chained := e.chained(req, radius, limit, r.trip.GetProduct().Key(), exclude); len(chained) > 0 {
		rankSpan.SetAttributes(attribute.Int("chained", len(chained)))
		ranked = append(ranked, chained...)
		dispatch.SortRanked(ranked)
		ranked = ranked[:min(len(ranked), limit)]
	}
	rankSpan.SetAttributes(rankAttributes(ranked)...)
	rankSpan.End()
	return ranked
}

// chained ranks this worker's drivers finishing a ride near the pickup
// for their next trip (chained supply; none when it is off): the limit
// whose rides end nearest, of those within ChainWithin of their dropoff.
func (e *Engine) chained(req dispatch.RankRequest, radius float64, limit int, product string, exclude map[string]struct{}) []dispatch.Ranked {
	if e.cfg.ChainWithin <= 0 {
		return nil
	}
	fs, err := e.supply.finishingNear(dispatch.Query{
		Pos: req.Pickup, K: limit, MaxRadius: radius, Product: product, MaxAge: e.cfg.Index.TTL, Exclude: exclude,
	})
	if err != nil || len(fs) == 0 {
		return nil
	}
	return e.scorer.RankChained(req, fs, ChainDropoff, e.cfg.ChainWithin)
}

// sendOffer reserves the driver (no other dispatch on this worker offers it
// meanwhile, and its next location update keeps it out of searches) and
// pushes the offer to the gateway holding its stream.
func (e *Engine) sendOffer(ctx context.Context, trip *commonv1.Trip, a dispatch.SendOffer) (*pendingOffer, error) {
	c := a.Candidate
	if err := e.supply.reserve(c.ID, trip.GetId()); err != nil {
		return nil, err
	}

	octx, span := e.tracer.Start(ctx, "dispatch.offer", trace.WithAttributes(
		attribute.String("driver.id", c.ID), attribute.Float64("eta_s", c.Parts.ETA.Seconds()), attribute.Float64("distance_m", c.Distance),
		attribute.String("after_trip", c.After)))
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
		PickupDistanceMeters: c.Parts.RoadDistance,
		ExpiresAt:            timestamppb.New(a.Expires),
		AfterTripId:          c.After,
	}
	if err := e.push(octx, c.Candidate, &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Offer{Offer: msg}}); err != nil {
		e.supply.release(c.ID, true)
		if errors.Is(err, driverclient.ErrDriverBusy) {
			// The driver's gateway refused: the driver holds another
			// worker's offer (a driver near a partition border is offered
			// by its owner and by neighbours) or has just been assigned.
			// Busy, not gone: a later window may offer it again.
			span.SetAttributes(attribute.String("outcome", "busy"))
			span.End()
			e.countOffer(ctx, "busy")
			return nil, errDriverBusy
		}
		span.RecordError(err)
		span.SetAttributes(attribute.String("outcome", "unreachable"))
		span.End()
		e.countOffer(ctx, "unreachable")
		e.logger.DebugContext(ctx, "offer not delivered", "trip", trip.GetId(), "driver", c.ID, "err", err)
		return nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	e.stats.offersSent.Add(1)
	return o, nil
}

// held counts a request a window held for a better match.
func (e *Engine) held(r *run, _ string) {
	e.metrics.holds.Add(r.ctx, 1)
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
func (e *Engine) assign(ctx context.Context, tripID, driverID, after string) (_ *commonv1.Trip, err error) {
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
			if sleep(ctx, e.clock, time.Duration(attempt)*200*time.Millisecond) != nil {
				return nil, err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		var trip *commonv1.Trip
		trip, err = e.trips.AssignDriver(cctx, tripID, driverID, after, "assign:"+tripID+":"+driverID)
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

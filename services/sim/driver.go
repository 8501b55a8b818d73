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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/roads"
)

// driverAgent is one simulated driver app.
type driverAgent struct {
	id     string
	cfg    Config
	client driverv1.DriverServiceClient
	rec    *recorder
	rng    *rand.Rand

	pos     geo.LatLng
	heading float64
	target  *geo.LatLng // where the current trip leg goes
	onTrip  string
	// next is the trip the driver took while carrying onTrip's rider
	// (chained supply), started when that ride ends; nextPickup its
	// pickup, nextAssigned when it was assigned.
	next         string
	nextPickup   geo.LatLng
	nextAssigned time.Time
	seq          uint64
	lastSent     time.Time
	locSeqs      map[uint64]bool // location samples awaiting their ack
	rides        chan rideEvent  // outlives sessions: a ride goes on across reconnects
	retry        retryPolicy     // zero: newRetryPolicy(cfg, rec)

	// On streets (Config.Roads): the route being driven and what for.
	speed      float64 // m/s on the current segment
	route      roads.Path
	routeStart time.Time
	leg        leg
	legTrip    string
	legArrived bool
	legDone    chan struct{}         // the car reached the end of a trip leg
	offered    map[string]geo.LatLng // trip id → pickup, of offers accepted
}

const (
	cruiseMPS = 9.0  // ~32 km/h while waiting for offers
	driveMPS  = 14.0 // ~50 km/h on a trip
)

func (d *driverAgent) ctx(ctx context.Context) context.Context {
	return d.cfg.as(ctx, d.rec, auth.Principal{Role: auth.RoleDriver, Subject: d.id})
}

// run keeps the app connected until ctx ends, reconnecting like a phone
// would when a gateway drains or the network drops.
func (d *driverAgent) run(ctx context.Context) {
	d.rides = make(chan rideEvent, 4)
	d.legDone = make(chan struct{}, 1)
	d.offered = map[string]geo.LatLng{}
	d.locSeqs = map[uint64]bool{}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := d.session(ctx, ctx)
		if ctx.Err() != nil {
			return
		}
		d.rec.code(err)
		if status.Code(err) != codes.Unavailable {
			d.rec.error(fmt.Errorf("driver %s stream: %w", d.id, err))
		}
		select {
		case <-time.After(backoff + time.Duration(d.rng.Int64N(int64(backoff)))):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

type rideEvent struct {
	trip *commonv1.Trip
	err  error
}

func (d *driverAgent) session(root, ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clear(d.locSeqs)
	stream, err := d.client.Connect(d.ctx(ctx))
	if err != nil {
		return err
	}
	incoming := make(chan *driverv1.ConnectResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case incoming <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	send := func(m *driverv1.ConnectRequest) error {
		d.seq++
		m.Seq = d.seq
		err := stream.Send(m)
		if errors.Is(err, io.EOF) {
			// The stream broke; Send only says EOF, the status is Recv's.
			select {
			case rerr := <-recvErr:
				return rerr
			case <-time.After(2 * time.Second):
			case <-ctx.Done():
			}
		}
		return err
	}
	if err := send(&driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
		Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD,
	}}}); err != nil {
		return err
	}
	sendLocation := func(now time.Time) error {
		m := d.location(now)
		if err := send(m); err != nil {
			return err
		}
		d.locSeqs[m.Seq] = true
		return nil
	}
	if err := sendLocation(time.Now()); err != nil {
		return err
	}
	replies := make(chan *driverv1.OfferReply, 4)
	interval := d.cfg.LocationInterval
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return nil
		case err := <-recvErr:
			return err
		case now := <-ticker.C:
			if err := sendLocation(now); err != nil {
				return err
			}
		case r := <-replies:
			if err := send(&driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: r}}); err != nil {
				return err
			}
		case ev := <-d.rides:
			if ev.err != nil && status.Code(ev.err) != codes.FailedPrecondition {
				d.rec.error(fmt.Errorf("driver %s trip action: %w", d.id, ev.err))
			}
			if d.onTrip != "" && (ev.trip == nil || ev.trip.GetId() == d.onTrip) {
				d.rec.driverOff(d.id, d.onTrip)
				d.onTrip, d.target = "", nil
				if d.next != "" {
					d.startNext(root, time.Now())
				}
			}
		case m := <-incoming:
			switch msg := m.GetMsg().(type) {
			case *driverv1.ConnectResponse_Cadence:
				if iv := msg.Cadence.GetLocationInterval().AsDuration(); iv > 0 && iv < interval {
					interval = iv
					ticker.Reset(interval)
				}
			case *driverv1.ConnectResponse_Ack:
				d.ackLocations(msg.Ack)
			case *driverv1.ConnectResponse_Offer:
				d.answer(ctx, msg.Offer, replies)
			case *driverv1.ConnectResponse_OfferResult:
				id := msg.OfferResult.GetTripId()
				switch {
				case msg.OfferResult.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED:
				case d.onTrip == "":
					d.onTrip = id
					d.rec.driverOn(d.id, d.onTrip)
					if p, ok := d.offered[d.onTrip]; ok && d.cfg.Roads != nil {
						now := time.Now()
						d.startPickup(d.onTrip, p, now, now)
					}
					go d.ride(root, d.onTrip, d.rides)
				case id != d.onTrip && d.next == "":
					// Without the offer's pickup at hand the trip's update
					// queues it.
					if p, ok := d.offered[id]; ok {
						d.queueNext(id, p, time.Now())
					}
				}
				clear(d.offered)
			case *driverv1.ConnectResponse_TripUpdate:
				t := msg.TripUpdate.GetTrip()
				mine := t.GetDriverId() == d.id
				assigned := mine && t.GetState() == commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED
				switch {
				case assigned && d.onTrip == "":
					// The trip store is the truth: an assignment whose offer
					// answer was lost still reaches the app as an update.
					d.onTrip = t.GetId()
					d.rec.driverOn(d.id, d.onTrip)
					go d.ride(root, d.onTrip, d.rides)
				case assigned && t.GetId() != d.onTrip && d.next == "":
					d.queueNext(t.GetId(), geo.LatLng{Lat: t.GetPickup().GetLat(), Lng: t.GetPickup().GetLng()}, time.Now())
				case t.GetId() == d.next && !assigned && !(mine && t.GetState() == commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED):
					d.next = "" // the next trip was cancelled or taken back
				}
				if t.GetId() == d.onTrip && d.cfg.Roads != nil {
					d.streetsUpdate(t, time.Now())
				} else if t.GetId() == d.onTrip {
					switch t.GetState() {
					case commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED:
						p := geo.LatLng{Lat: t.GetPickup().GetLat(), Lng: t.GetPickup().GetLng()}
						d.target = &p
					case commonv1.TripState_TRIP_STATE_IN_PROGRESS:
						p := geo.LatLng{Lat: t.GetDropoff().GetLat(), Lng: t.GetDropoff().GetLng()}
						d.target = &p
					}
				}
			}
		}
	}
}

// ackLocations settles the location samples an Ack answers: a refusal
// its own seq; an accepted location Ack every sample up to its seq not
// refused on its own (accepted samples are acknowledged cumulatively).
func (d *driverAgent) ackLocations(a *driverv1.Ack) {
	if !d.locSeqs[a.GetSeq()] {
		return // not a location sample's
	}
	if !a.GetAccepted() {
		delete(d.locSeqs, a.GetSeq())
		return
	}
	n := 0
	for seq := range d.locSeqs {
		if seq <= a.GetSeq() {
			delete(d.locSeqs, seq)
			n++
		}
	}
	d.rec.do(func(s *Stats) { s.LocationUpdates += n })
}

// queueNext takes a trip assigned while the driver carries a rider: the
// trip after this ride (chained supply).
func (d *driverAgent) queueNext(tripID string, pickup geo.LatLng, now time.Time) {
	d.next, d.nextPickup, d.nextAssigned = tripID, pickup, now
	d.rec.do(func(s *Stats) { s.ChainedTrips++ })
}

// startNext starts the queued next trip once the ride before it ended.
func (d *driverAgent) startNext(root context.Context, now time.Time) {
	d.onTrip, d.next = d.next, ""
	d.rec.driverOn(d.id, d.onTrip)
	if d.cfg.Roads != nil {
		d.startPickup(d.onTrip, d.nextPickup, now, d.nextAssigned)
	} else {
		d.target = &d.nextPickup
	}
	go d.ride(root, d.onTrip, d.rides)
}

// free reports whether the driver would take o: any trip when free; when
// carrying a rider with no next trip yet, one offered to follow this ride.
func (d *driverAgent) free(o *driverv1.Offer) bool {
	return d.onTrip == "" || d.next == "" && o.GetAfterTripId() != "" && o.GetAfterTripId() == d.onTrip
}

// answer decides on an offer after the configured delay.
func (d *driverAgent) answer(ctx context.Context, o *driverv1.Offer, replies chan<- *driverv1.OfferReply) {
	d.rec.offerSeen(o.GetTripId(), time.Now())
	decision := driverv1.OfferDecision_OFFER_DECISION_DECLINE
	if d.free(o) && d.rng.Float64() < d.cfg.AcceptProbability {
		decision = driverv1.OfferDecision_OFFER_DECISION_ACCEPT
		if d.offered != nil {
			d.offered[o.GetTripId()] = geo.LatLng{Lat: o.GetPickup().GetLat(), Lng: o.GetPickup().GetLng()}
		}
		d.rec.do(func(s *Stats) { s.OffersAccepted++ })
	} else {
		d.rec.do(func(s *Stats) { s.OffersDeclined++ })
	}
	reply := &driverv1.OfferReply{OfferId: o.GetOfferId(), TripId: o.GetTripId(), Decision: decision}
	time.AfterFunc(d.cfg.ReplyDelay, func() {
		select {
		case replies <- reply:
		case <-ctx.Done():
		}
	})
}

// ride drives an assigned trip through arrive, start and complete. A trip
// cancelled under it ends the ride (FailedPrecondition from the next action).
func (d *driverAgent) ride(ctx context.Context, tripID string, done chan<- rideEvent) {
	actions := []func(context.Context, string) (*commonv1.Trip, error){
		func(ctx context.Context, key string) (*commonv1.Trip, error) {
			r, err := d.client.ArriveAtPickup(ctx, &driverv1.ArriveAtPickupRequest{TripId: tripID, IdempotencyKey: key})
			return r.GetTrip(), err
		},
		func(ctx context.Context, key string) (*commonv1.Trip, error) {
			r, err := d.client.StartTrip(ctx, &driverv1.StartTripRequest{TripId: tripID, IdempotencyKey: key})
			return r.GetTrip(), err
		},
		func(ctx context.Context, key string) (*commonv1.Trip, error) {
			r, err := d.client.CompleteTrip(ctx, &driverv1.CompleteTripRequest{TripId: tripID, IdempotencyKey: key})
			return r.GetTrip(), err
		},
	}
	var trip *commonv1.Trip
	for i, act := range actions {
		if !d.before(ctx, i) {
			return
		}
		key := fmt.Sprintf("%s-%d", tripID, i)
		// Retry what a draining or restarting instance returns, or a
		// platform whose database is down; the idempotency key makes a
		// retry of a committed action harmless.
		var err error
		trip, err = retry(d.ctx(ctx), d.policy().inProgress(), func(ctx context.Context) (*commonv1.Trip, error) { return act(ctx, key) })
		if err != nil {
			if ctx.Err() != nil {
				return // the run stopped mid-action: not the platform's error
			}
			select {
			case done <- rideEvent{err: err}:
			case <-ctx.Done():
			}
			return
		}
	}
	select {
	case done <- rideEvent{trip: trip}:
	case <-ctx.Done():
	}
}

// policy is how this driver's app retries its unary calls.
func (d *driverAgent) policy() retryPolicy {
	if d.retry.now == nil {
		return newRetryPolicy(d.cfg, d.rec)
	}
	return d.retry
}

// before waits until the trip's next action is due: on the streets in real
// time, arriving (actions 0 and 2) or boarding (1); otherwise DriveTime.
// It reports false if ctx ended first.
func (d *driverAgent) before(ctx context.Context, action int) bool {
	var due <-chan time.Time
	var arrived <-chan struct{}
	switch {
	case !d.cfg.realTime():
		due = time.After(d.driveTime())
	case action == 1:
		due = time.After(boardingTime)
	default:
		arrived = d.legDone
	}
	select {
	case <-due:
	case <-arrived:
	case <-ctx.Done():
		return false
	}
	return true
}

func (d *driverAgent) driveTime() time.Duration {
	if d.cfg.DriveTime > 0 {
		return d.cfg.DriveTime
	}
	return 20 * time.Second
}

// location moves the car since the last sample and reports where it is.
func (d *driverAgent) location(now time.Time) *driverv1.ConnectRequest {
	dt := now.Sub(d.lastSent).Seconds()
	if d.lastSent.IsZero() || dt > 10 {
		dt = 0
	}
	d.lastSent = now
	if d.cfg.Roads != nil {
		d.locationOnStreets(now)
		return d.sample(now, d.speed)
	}
	speed := cruiseMPS
	if d.target != nil {
		speed = driveMPS
		d.heading = geo.Bearing(d.pos, *d.target)
		if geo.Distance(d.pos, *d.target) < speed*dt {
			d.pos, dt = *d.target, 0
		}
	} else {
		d.heading += d.rng.NormFloat64() * 20
	}
	next := geo.Destination(d.pos, d.heading, speed*dt)
	if !d.cfg.City.Contains(next) {
		d.heading += 180 // turn back into the city
		next = d.pos
	}
	d.pos = next
	for d.heading < 0 {
		d.heading += 360
	}
	for d.heading >= 360 {
		d.heading -= 360
	}
	return d.sample(now, speed)
}

// sample is the location message for where the car is now.
func (d *driverAgent) sample(now time.Time, speed float64) *driverv1.ConnectRequest {
	return &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
		Position:   &commonv1.LatLng{Lat: d.pos.Lat, Lng: d.pos.Lng},
		HeadingDeg: float32(d.heading),
		SpeedMps:   float32(speed),
		AccuracyM:  5,
		RecordedAt: timestamppb.New(now),
	}}}
}

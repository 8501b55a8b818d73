package matching

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/dispatch/fakeclock"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
)

// serialRunner runs the host's I/O jobs one at a time, in the order they
// were asked for, in the goroutine that asked (the test's): together with a
// fake clock this makes a dispatch timeline repeatable.
type serialRunner struct {
	queue   []func()
	running bool
}

func (s *serialRunner) run(job func()) {
	s.queue = append(s.queue, job)
	if s.running {
		return
	}
	s.running = true
	for len(s.queue) > 0 {
		j := s.queue[0]
		s.queue = s.queue[1:]
		j()
	}
	s.running = false
}

// simDriver is a driver of the simulated city.
type simDriver struct {
	id  string
	pos geo.LatLng
}

// simIO is a hostIO over a simulated city: drivers that answer offers
// after a seeded delay (accept, decline or stay silent), a trip store that
// refuses a second active trip per driver, and a recorded timeline.
type simIO struct {
	t        *testing.T
	clock    *fakeclock.Clock
	h        *host
	rng      *rand.Rand
	start    time.Time
	drivers  []simDriver
	scorer   *dispatch.ETAScorer
	reserved map[string]string // driver → trip of the offer out
	busy     map[string]string // driver → its assigned trip
	assigned map[string]string // trip → driver
	offerSeq int
	timeline []string
}

var _ hostIO = (*simIO)(nil)

func (s *simIO) record(kind, trip, driver string) {
	s.timeline = append(s.timeline, fmt.Sprintf("%7.2fs %-24s %s %s", s.clock.Now().Sub(s.start).Seconds(), kind, trip, driver))
}

func (s *simIO) begin(r *run) context.Context {
	s.record("dispatch", r.trip.GetId(), "")
	return context.Background()
}

func (s *simIO) finished(r *run, outcome string) { s.record("end:"+outcome, r.trip.GetId(), "") }

func (s *simIO) rank(r *run, radius float64, exclude map[string]struct{}) []dispatch.Ranked {
	var cands []dispatch.Candidate
	for _, d := range s.drivers {
		_, ex := exclude[d.id]
		_, res := s.reserved[d.id]
		_, bz := s.busy[d.id]
		dist := geo.Distance(r.pickup, d.pos)
		if ex || res || bz || dist > radius {
			continue
		}
		cands = append(cands, dispatch.Candidate{Driver: dispatch.Driver{ID: d.id, Pos: d.pos, Heading: -1, Status: dispatch.StatusAvailable}, Distance: dist})
	}
	ranked := s.scorer.Rank(dispatch.RankRequest{Pickup: r.pickup, At: s.clock.Now()}, cands)
	return ranked[:min(len(ranked), 5)]
}

func (s *simIO) search(_ context.Context, r *run, radius float64, exclude map[string]struct{}) []dispatch.Ranked {
	return s.rank(r, radius, exclude)
}

func (s *simIO) localCandidates(_ context.Context, r *run, radius float64, exclude map[string]struct{}) []dispatch.Ranked {
	return s.rank(r, radius, exclude)
}

func (s *simIO) sendOffer(_ context.Context, trip *commonv1.Trip, a dispatch.SendOffer) (*pendingOffer, error) {
	id := a.Candidate.ID
	if other, ok := s.reserved[id]; ok {
		s.record("offer-refused:busy", trip.GetId(), id)
		if other == trip.GetId() {
			s.t.Errorf("%s offered %s twice", trip.GetId(), id)
		}
		return nil, errDriverBusy
	}
	if _, ok := s.busy[id]; ok {
		return nil, errUnreachable
	}
	s.reserved[id] = trip.GetId()
	s.offerSeq++
	o := &pendingOffer{id: fmt.Sprintf("o%d", s.offerSeq), candidate: a.Candidate, span: trace.SpanFromContext(context.Background()), sent: s.clock.Now()}
	s.record("offer", trip.GetId(), id)
	// The driver's answer: accept, decline, or none (the offer lapses).
	delay := time.Duration(500+s.rng.IntN(12_000)) * time.Millisecond
	switch p := s.rng.Float64(); {
	case p < 0.5:
		s.clock.AfterFunc(delay, func() { s.reply(trip.GetId(), o, true) })
	case p < 0.8:
		s.clock.AfterFunc(delay, func() { s.reply(trip.GetId(), o, false) })
	}
	return o, nil
}

func (s *simIO) reply(tripID string, o *pendingOffer, accept bool) {
	rep := offerReply{ctx: context.Background(), offerID: o.id, driverID: o.candidate.ID, accept: accept, result: make(chan *matchingv1.ReplyOfferResponse, 1)}
	kind := "decline"
	if accept {
		kind = "accept"
	}
	if !s.h.reply(tripID, rep) {
		s.record(kind+"→gone", tripID, o.candidate.ID)
		return
	}
	// Serial runner: the host has answered by now.
	select {
	case resp := <-rep.result:
		s.record(kind+"→"+resp.GetOutcome().String(), tripID, o.candidate.ID)
	default:
		s.t.Errorf("reply of %s to %s not answered", o.candidate.ID, tripID)
	}
}

func (s *simIO) closeOffer(r *run, o *pendingOffer, end offerEnd) {
	id := o.candidate.ID
	if s.reserved[id] != r.trip.GetId() {
		s.t.Errorf("%s closes an offer to %s it does not hold", r.trip.GetId(), id)
	}
	delete(s.reserved, id)
	s.record("close:"+end.outcome, r.trip.GetId(), id)
}

var errSimDriverBusy = errors.New("driver already on a trip")

func (s *simIO) assign(_ context.Context, tripID, driverID string) (*commonv1.Trip, error) {
	if d, ok := s.assigned[tripID]; ok {
		s.t.Errorf("%s assigned twice (%s, %s)", tripID, d, driverID)
	}
	if _, ok := s.busy[driverID]; ok {
		s.record("assign-refused", tripID, driverID)
		return nil, errSimDriverBusy
	}
	s.busy[driverID], s.assigned[tripID] = tripID, driverID
	s.record("assigned", tripID, driverID)
	return &commonv1.Trip{Id: tripID, DriverId: driverID}, nil
}

func (s *simIO) tripGone(context.Context, string) bool { return false }

func (s *simIO) giveUp(_ context.Context, r *run, reason dispatch.Reason) {
	s.record("give-up:"+string(reason), r.trip.GetId(), "")
}

// simulate runs one seeded hour-long scenario (trips arriving over a
// minute, drivers answering at random) through a dispatch host on a fake
// clock and returns its timeline and the assignments.
func simulate(t *testing.T, mode DispatchMode, seed uint64, drivers, trips int) ([]string, map[string]string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 15))
	start := time.Unix(1_800_000_000, 0)
	clk := fakeclock.New(start)
	scorer, err := dispatch.NewETAScorer(dispatch.DefaultRankConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &simIO{
		t: t, clock: clk, rng: rng, start: start, scorer: scorer,
		reserved: map[string]string{}, busy: map[string]string{}, assigned: map[string]string{},
	}
	// Wilmington, DE: the dev city.
	at := func() geo.LatLng {
		return geo.LatLng{Lat: 39.72 + rng.Float64()*0.06, Lng: -75.58 + rng.Float64()*0.06}
	}
	for i := range drivers {
		s.drivers = append(s.drivers, simDriver{id: fmt.Sprintf("d%02d", i), pos: at()})
	}
	runner := &serialRunner{}
	cascade := func(left time.Duration) dispatch.CascadeConfig {
		return dispatch.CascadeConfig{OfferTimeout: 10 * time.Second, Deadline: left, InitialRadius: 3000, MaxRadius: 10000, RadiusGrowth: 2, RetryInterval: time.Second}
	}
	s.h = newHost(s, clk, runner.run, hostConfig{mode: mode, window: 2 * time.Second, offerTimeout: 10 * time.Second, maxRadius: 10000, candidates: 5, cascade: cascade})
	for i := range trips {
		id := fmt.Sprintf("t%02d", i)
		pickup := at()
		clk.AfterFunc(time.Duration(rng.IntN(60_000))*time.Millisecond, func() {
			if !s.h.submit(&run{trip: &commonv1.Trip{Id: id}, pickup: pickup, deadline: clk.Now().Add(2 * time.Minute)}) {
				t.Errorf("%s not started", id)
			}
		})
	}
	clk.Advance(time.Hour)
	if n := s.h.inFlight(); n != 0 {
		t.Fatalf("%d dispatches still in flight after an hour", n)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	if len(s.reserved) != 0 {
		t.Fatalf("reservations left: %v", s.reserved)
	}
	s.h.stop()
	return s.timeline, s.assigned
}

// TestHostDeterministic: a dispatch host on a fake clock, with a serial
// runner, gives the same assignments and the same offer timeline for the
// same seed, twice, in both modes; another seed gives another timeline (so
// the comparison can fail).
func TestHostDeterministic(t *testing.T) {
	for _, mode := range DispatchModes {
		t.Run(string(mode), func(t *testing.T) {
			const seed = 20261129
			t1, a1 := simulate(t, mode, seed, 30, 40)
			t2, a2 := simulate(t, mode, seed, 30, 40)
			if !slices.Equal(t1, t2) {
				for i := range min(len(t1), len(t2)) {
					if t1[i] != t2[i] {
						t.Fatalf("seed %d: timelines differ at event %d:\n%s\n%s", seed, i, t1[i], t2[i])
					}
				}
				t.Fatalf("seed %d: timelines differ in length: %d, %d", seed, len(t1), len(t2))
			}
			if fmt.Sprint(a1) != fmt.Sprint(a2) {
				t.Fatalf("seed %d: assignments differ:\n%v\n%v", seed, a1, a2)
			}
			if len(a1) == 0 {
				t.Fatal("nothing assigned")
			}
			t3, _ := simulate(t, mode, seed+1, 30, 40)
			if slices.Equal(t1, t3) {
				t.Fatal("another seed gave the same timeline")
			}
			offers := 0
			for _, ev := range t1 {
				if ev[9:14] == "offer" {
					offers++
				}
			}
			t.Logf("%s: %d events, %d offers, %d of 40 trips assigned", mode, len(t1), offers, len(a1))
		})
	}
}

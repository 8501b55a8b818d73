package matching

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	// script, if set, answers offers instead of the random drivers:
	// "accept" or "decline" after delay; "accept-now" before the push
	// returns (the reply overtakes the push's outcome); "slow-push" never,
	// and the push takes 11 s; anything else never.
	script func(trip, driver string) (answer string, delay time.Duration)
	// unanswered are replies the host has not answered yet (they must be
	// by the end).
	unanswered []pendingReply
}

type pendingReply struct {
	kind, trip, driver string
	rep                offerReply
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

func (s *simIO) rank(r *run, radius float64, limit int, exclude map[string]struct{}) []dispatch.Ranked {
	if limit <= 0 {
		limit = 5 // the engine's K
	}
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
	return ranked[:min(len(ranked), limit)]
}

func (s *simIO) search(_ context.Context, r *run, radius float64, limit int, exclude map[string]struct{}) []dispatch.Ranked {
	return s.rank(r, radius, limit, exclude)
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
	if s.script != nil {
		switch answer, delay := s.script(trip.GetId(), id); answer {
		case "accept", "decline":
			s.clock.AfterFunc(delay, func() { s.reply(trip.GetId(), o, answer == "accept") })
		case "accept-now":
			s.reply(trip.GetId(), o, true)
		case "slow-push":
			s.clock.Advance(11 * time.Second)
		}
		return o, nil
	}
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
	// Serial runner: the host has answered by now, unless the reply
	// overtook its offer's push or waits for an assignment in flight.
	select {
	case resp := <-rep.result:
		s.record(kind+"→"+resp.GetOutcome().String(), tripID, o.candidate.ID)
	default:
		s.unanswered = append(s.unanswered, pendingReply{kind: kind, trip: tripID, driver: o.candidate.ID, rep: rep})
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

func (s *simIO) assign(_ context.Context, tripID, driverID, _ string) (*commonv1.Trip, error) {
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

func (s *simIO) held(r *run, driverID string) { s.record("held", r.trip.GetId(), driverID) }

func (s *simIO) giveUp(_ context.Context, r *run, reason dispatch.Reason) {
	s.record("give-up:"+string(reason), r.trip.GetId(), "")
}

// newSim builds a host over a simulated city with the given drivers, on a
// fake clock and a serial runner.
func newSim(t *testing.T, mode DispatchMode, rng *rand.Rand, drivers []simDriver, tune func(*hostConfig)) (*simIO, *fakeclock.Clock) {
	t.Helper()
	start := time.Unix(1_800_000_000, 0)
	clk := fakeclock.New(start)
	scorer, err := dispatch.NewETAScorer(dispatch.DefaultRankConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &simIO{
		t: t, clock: clk, rng: rng, start: start, scorer: scorer, drivers: drivers,
		reserved: map[string]string{}, busy: map[string]string{}, assigned: map[string]string{},
	}
	runner := &serialRunner{}
	cascade := func(left time.Duration) dispatch.CascadeConfig {
		return dispatch.CascadeConfig{OfferTimeout: 10 * time.Second, Deadline: left, InitialRadius: 3000, MaxRadius: 10000, RadiusGrowth: 2, RetryInterval: time.Second}
	}
	hc := hostConfig{mode: mode, window: 2 * time.Second, offerTimeout: 10 * time.Second, maxRadius: 10000, candidates: 5, cascade: cascade}
	if tune != nil {
		tune(&hc)
	}
	s.h = newHost(s, clk, runner.run, hc)
	return s, clk
}

// submitAt dispatches a trip at pickup after delay, with deadline after
// that.
func (s *simIO) submitAt(delay time.Duration, id string, pickup geo.LatLng, deadline time.Duration) {
	s.clock.AfterFunc(delay, func() {
		if !s.h.submit(&run{trip: &commonv1.Trip{Id: id}, pickup: pickup, deadline: s.clock.Now().Add(deadline)}) {
			s.t.Errorf("%s not started", id)
		}
	})
}

// finish runs the clock until every dispatch ended and checks nothing is
// left behind.
func (s *simIO) finish(t *testing.T) {
	t.Helper()
	s.clock.Advance(time.Hour)
	if n := s.h.inFlight(); n != 0 {
		t.Fatalf("%d dispatches still in flight after an hour", n)
	}
	if n := s.clock.Pending(); n != 0 {
		t.Fatalf("%d timers left", n)
	}
	if len(s.reserved) != 0 {
		t.Fatalf("reservations left: %v", s.reserved)
	}
	for _, p := range s.unanswered {
		select {
		case resp := <-p.rep.result:
			s.record(p.kind+"→"+resp.GetOutcome().String()+" (late)", p.trip, p.driver)
		default:
			t.Errorf("reply of %s to %s never answered", p.driver, p.trip)
		}
	}
	s.h.stop()
}

// simulate runs one seeded scenario (trips arriving over a minute, drivers
// answering at random) through a dispatch host on a fake clock and returns
// its timeline and the assignments.
func simulate(t *testing.T, mode DispatchMode, seed uint64, drivers, trips int) ([]string, map[string]string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 15))
	// Wilmington, DE: the dev city.
	at := func() geo.LatLng {
		return geo.LatLng{Lat: 39.72 + rng.Float64()*0.06, Lng: -75.58 + rng.Float64()*0.06}
	}
	var ds []simDriver
	for i := range drivers {
		ds = append(ds, simDriver{id: fmt.Sprintf("d%02d", i), pos: at()})
	}
	s, _ := newSim(t, mode, rng, ds, func(c *hostConfig) { c.followUp = DefaultBatchFollowUp })
	for i := range trips {
		s.submitAt(time.Duration(rng.IntN(60_000))*time.Millisecond, fmt.Sprintf("t%02d", i), at(), 2*time.Minute)
	}
	s.finish(t)
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
				if strings.Fields(ev)[1] == "offer" {
					offers++
				}
			}
			t.Logf("%s: %d events, %d offers, %d of 40 trips assigned", mode, len(t1), offers, len(a1))
		})
	}
}

// TestBatchedWindows walks the batched host through scripted cases on a
// fake clock (window 2 s, offers lapse after 10 s) and compares the offer
// timelines exactly; greedy runs the first case too, as the contrast.
func TestBatchedWindows(t *testing.T) {
	origin := geo.LatLng{Lat: 39.745, Lng: -75.55}
	// at is x metres east (negative: west) of origin.
	at := func(x float64) geo.LatLng {
		if x < 0 {
			return geo.Destination(origin, 270, -x)
		}
		return geo.Destination(origin, 90, x)
	}
	// atNorth is x metres east and y north of origin.
	atNorth := func(x, y float64) geo.LatLng {
		p := at(x)
		if y < 0 {
			return geo.Destination(p, 180, -y)
		}
		return geo.Destination(p, 0, y)
	}
	type trip struct {
		id       string
		x        float64
		after    time.Duration
		deadline time.Duration
	}
	tests := []struct {
		name    string
		mode    DispatchMode
		drivers []simDriver
		late    []simDriver // join the city 5 s in
		trips   []trip
		answers map[string]string // driver → "accept" or "decline" (1 s later); missing: silent
		cancel  string            // trip the rider cancels 3 s in
		// tripsAt places trips off the east–west line (atNorth).
		tripsAt map[string]geo.LatLng
		// followUp: how soon a returned request is solved again (0: at
		// the next full window).
		followUp time.Duration
		// windowMax: adaptive windows from 1 s (a lone request) to
		// windowMax (4 requests open).
		windowMax time.Duration
		// holdMax: planned pickups of 5 minutes or more wait for the next
		// window, up to holdMax from arrival.
		holdMax time.Duration
		// longPickup: a pickup this long costs a window twice.
		longPickup time.Duration
		want       []string
	}{
		{
			// Nearest first gives A the driver B needs: 1000 m + 4200 m of
			// pickups. The window swaps them: 1200 m + 2000 m.
			name:    "window takes the cheaper total",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(1000)}, {"Y", at(-1200)}},
			trips:   []trip{{"A", 0, 0, time.Minute}, {"B", 3000, 500 * time.Millisecond, time.Minute}},
			answers: map[string]string{"X": "accept", "Y": "accept"},
			want:    []string{"2.00s offer A Y", "2.00s offer B X", "3.00s assigned A Y", "3.00s assigned B X"},
		},
		{
			// One window, two requests: A with X 17 s away and Y 271 s,
			// B with X 202 s away and Y 394 s. The least total (411 s)
			// gives B a 394 s pickup.
			name:    "a window takes the least total",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(100)}, {"Y", atNorth(-1500, -600)}},
			trips:   []trip{{"A", 0, 0, time.Minute}, {"B", 0, 500 * time.Millisecond, time.Minute}},
			tripsAt: map[string]geo.LatLng{"B": atNorth(0, 1200)},
			answers: map[string]string{"X": "accept", "Y": "accept"},
			want:    []string{"2.00s offer A X", "2.00s offer B Y", "3.00s assigned A X", "3.00s assigned B Y"},
		},
		{
			// Counting a 2-minute pickup twice, it takes 271 s and 202 s
			// (62 s more in all) over 17 s and 394 s.
			name:       "with a long pickup set, a window avoids the longest pickup",
			mode:       ModeBatched,
			drivers:    []simDriver{{"X", at(100)}, {"Y", atNorth(-1500, -600)}},
			trips:      []trip{{"A", 0, 0, time.Minute}, {"B", 0, 500 * time.Millisecond, time.Minute}},
			tripsAt:    map[string]geo.LatLng{"B": atNorth(0, 1200)},
			answers:    map[string]string{"X": "accept", "Y": "accept"},
			longPickup: 2 * time.Minute,
			want:       []string{"2.00s offer A Y", "2.00s offer B X", "3.00s assigned A Y", "3.00s assigned B X"},
		},
		{
			name:    "greedy takes the nearest on arrival",
			mode:    ModeGreedy,
			drivers: []simDriver{{"X", at(1000)}, {"Y", at(-1200)}},
			trips:   []trip{{"A", 0, 0, time.Minute}, {"B", 3000, 500 * time.Millisecond, time.Minute}},
			answers: map[string]string{"X": "accept", "Y": "accept"},
			want:    []string{"0.00s offer A X", "0.50s offer B Y", "1.00s assigned A X", "1.50s assigned B Y"},
		},
		{
			name:    "a decline goes back to the next window without that driver",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "decline", "Y": "accept"},
			want:    []string{"2.00s offer A X", "3.00s close:declined A X", "5.00s offer A Y", "6.00s assigned A Y"},
		},
		{
			name:    "a lapsed offer goes back to the next window without that driver",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"Y": "accept"},
			want:    []string{"2.00s offer A X", "12.00s close:expired A X", "14.00s offer A Y", "15.00s assigned A Y"},
		},
		{
			name:     "with a follow-up, a decline is solved again 250 ms later without that driver",
			mode:     ModeBatched,
			drivers:  []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:    []trip{{"A", 0, 0, time.Minute}},
			answers:  map[string]string{"X": "decline", "Y": "accept"},
			followUp: 250 * time.Millisecond,
			want:     []string{"2.00s offer A X", "3.00s close:declined A X", "3.25s offer A Y", "4.25s assigned A Y"},
		},
		{
			name:     "with a follow-up, a lapsed offer is solved again 250 ms later without that driver",
			mode:     ModeBatched,
			drivers:  []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:    []trip{{"A", 0, 0, time.Minute}},
			answers:  map[string]string{"Y": "accept"},
			followUp: 250 * time.Millisecond,
			want:     []string{"2.00s offer A X", "12.00s close:expired A X", "12.25s offer A Y", "13.25s assigned A Y"},
		},
		{
			// B arrives after the first window: the follow-up solves A
			// alone; B waits for its own window (2 s after it opened).
			name:     "a follow-up leaves requests waiting for their first window alone",
			mode:     ModeBatched,
			drivers:  []simDriver{{"X", at(500)}, {"Y", at(1500)}, {"Z", at(-2500)}},
			trips:    []trip{{"A", 0, 0, time.Minute}, {"B", -3000, 2500 * time.Millisecond, time.Minute}},
			answers:  map[string]string{"X": "decline", "Y": "accept", "Z": "accept"},
			followUp: 250 * time.Millisecond,
			want:     []string{"2.00s offer A X", "3.00s close:declined A X", "3.25s offer A Y", "4.25s assigned A Y", "4.50s offer B Z", "5.50s assigned B Z"},
		},
		{
			// The follow-up finds nobody; the request goes on with full
			// windows (5.25 s), where the driver who joined at 5 s is.
			name:     "a follow-up without a driver hands the request to the full windows",
			mode:     ModeBatched,
			drivers:  []simDriver{{"X", at(500)}},
			late:     []simDriver{{"Y", at(800)}},
			trips:    []trip{{"A", 0, 0, time.Minute}},
			answers:  map[string]string{"X": "decline", "Y": "accept"},
			followUp: 250 * time.Millisecond,
			want:     []string{"2.00s offer A X", "3.00s close:declined A X", "5.25s offer A Y", "6.25s assigned A Y"},
		},
		{
			name:      "adaptive: a lone request is solved after the shortest window",
			mode:      ModeBatched,
			drivers:   []simDriver{{"X", at(500)}},
			trips:     []trip{{"A", 0, 0, time.Minute}},
			answers:   map[string]string{"X": "accept"},
			windowMax: 3 * time.Second,
			want:      []string{"1.00s offer A X", "2.00s assigned A X"},
		},
		{
			// Two open at 1 s: 1 s + 2 s × 1/3.
			name:      "adaptive: two requests open lengthen the window a third of the way",
			mode:      ModeBatched,
			drivers:   []simDriver{{"X", at(500)}, {"Y", at(-500)}},
			trips:     []trip{{"A", 600, 0, time.Minute}, {"B", -600, 100 * time.Millisecond, time.Minute}},
			answers:   map[string]string{"X": "accept", "Y": "accept"},
			windowMax: 3 * time.Second,
			want:      []string{"1.67s offer A X", "1.67s offer B Y", "2.67s assigned A X", "2.67s assigned B Y"},
		},
		{
			name:    "adaptive: under load the window runs its longest",
			mode:    ModeBatched,
			drivers: []simDriver{{"W", at(-1500)}, {"X", at(-500)}, {"Y", at(500)}, {"Z", at(1500)}},
			trips: []trip{{"A", -1500, 0, time.Minute}, {"B", -500, 100 * time.Millisecond, time.Minute},
				{"C", 500, 200 * time.Millisecond, time.Minute}, {"D", 1500, 300 * time.Millisecond, time.Minute}},
			answers:   map[string]string{"W": "accept", "X": "accept", "Y": "accept", "Z": "accept"},
			windowMax: 3 * time.Second,
			want: []string{"3.00s offer A W", "3.00s offer B X", "3.00s offer C Y", "3.00s offer D Z",
				"4.00s assigned A W", "4.00s assigned B X", "4.00s assigned C Y", "4.00s assigned D Z"},
		},
		{
			// X is ~6.5 km off (a pickup of more than 5 minutes): the
			// windows at 2 s and 4 s hold A; Y, 800 m off, joins at 5 s
			// and the 6 s window offers A to it.
			name:    "hold: a far planned pickup waits and a nearer driver comes",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(6500)}},
			late:    []simDriver{{"Y", at(800)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "accept", "Y": "accept"},
			holdMax: 6 * time.Second,
			want:    []string{"2.00s held A X", "4.00s held A X", "6.00s offer A Y", "7.00s assigned A Y"},
		},
		{
			// Nobody nearer comes: held at 2 s and 4 s, A takes X at 6 s,
			// when another window would end past its 6 s hold.
			name:    "hold: the far driver after the longest hold",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(6500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "accept"},
			holdMax: 6 * time.Second,
			want:    []string{"2.00s held A X", "4.00s held A X", "6.00s offer A X", "7.00s assigned A X"},
		},
		{
			// The window plans A to Y (1000 m) and B to X (5300 m, more
			// than 5 minutes): A's offer goes out, B waits.
			name:    "hold: only the long pickups wait",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(6500)}, {"Y", at(1000)}},
			trips:   []trip{{"A", 0, 0, time.Minute}, {"B", 1200, 0, time.Minute}},
			answers: map[string]string{"X": "accept", "Y": "accept"},
			holdMax: 4 * time.Second,
			want:    []string{"2.00s held B X", "2.00s offer A Y", "3.00s assigned A Y", "4.00s offer B X", "5.00s assigned B X"},
		},
		{
			// Held only while the next window ends before the deadline.
			name:    "hold: never past the deadline",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(6500)}},
			trips:   []trip{{"A", 0, 0, 3 * time.Second}},
			answers: map[string]string{"X": "accept"},
			holdMax: 10 * time.Second,
			want:    []string{"2.00s offer A X", "3.00s close:expired A X", "3.00s give-up:deadline_exceeded A"},
		},
		{
			// Holding at 2 s would leave the offer 9 of its 10 s before
			// the 13 s deadline: it goes out at once.
			name:    "hold: never into the offer's time before the deadline",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(6500)}},
			trips:   []trip{{"A", 0, 0, 13 * time.Second}},
			answers: map[string]string{"X": "accept"},
			holdMax: 10 * time.Second,
			want:    []string{"2.00s offer A X", "3.00s assigned A X"},
		},
		{
			// Adaptive windows (1 s alone, up to 3 s): a hold counts the
			// next window at its longest, so A is held at 1, 2 and 3 s
			// (each next window ends by 6 s at the latest) and offered at
			// 4 s.
			name:      "hold: adaptive windows count at their longest",
			mode:      ModeBatched,
			drivers:   []simDriver{{"X", at(6500)}},
			trips:     []trip{{"A", 0, 0, time.Minute}},
			answers:   map[string]string{"X": "accept"},
			windowMax: 3 * time.Second,
			holdMax:   6 * time.Second,
			want:      []string{"1.00s held A X", "2.00s held A X", "3.00s held A X", "4.00s offer A X", "5.00s assigned A X"},
		},
		{
			name:    "an unmatched request waits for drivers to come",
			mode:    ModeBatched,
			late:    []simDriver{{"X", at(800)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "accept"},
			want:    []string{"6.00s offer A X", "7.00s assigned A X"},
		},
		{
			name:    "one driver, two requests: the other waits until its deadline",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, 10 * time.Second}, {"B", 1200, 0, 10 * time.Second}},
			answers: map[string]string{"X": "accept"},
			want:    []string{"2.00s offer A X", "3.00s assigned A X", "10.00s give-up:deadline_exceeded B"},
		},
		{
			name:    "a rider's cancel withdraws the offer out (batched)",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			cancel:  "A",
			want:    []string{"2.00s offer A X", "3.00s close:withdrawn A X"},
		},
		{
			name:    "a rider's cancel withdraws the offer out (greedy)",
			mode:    ModeGreedy,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			cancel:  "A",
			want:    []string{"0.00s offer A X", "3.00s close:withdrawn A X"},
		},
		{
			name:    "a reply overtakes its push's outcome (greedy)",
			mode:    ModeGreedy,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "accept-now"},
			want:    []string{"0.00s offer A X", "0.00s assigned A X"},
		},
		{
			name:    "a reply overtakes its push's outcome (batched)",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "accept-now"},
			want:    []string{"2.00s offer A X", "2.00s assigned A X"},
		},
		{
			name:    "an offer lapses while it is pushed (greedy)",
			mode:    ModeGreedy,
			drivers: []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "slow-push", "Y": "accept"},
			want:    []string{"0.00s offer A X", "11.00s offer A Y", "11.00s close:expired A X", "12.00s assigned A Y"},
		},
		{
			name:    "an offer lapses while it is pushed (batched)",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}, {"Y", at(1500)}},
			trips:   []trip{{"A", 0, 0, time.Minute}},
			answers: map[string]string{"X": "slow-push", "Y": "accept"},
			want:    []string{"2.00s offer A X", "13.00s close:expired A X", "14.00s offer A Y", "15.00s assigned A Y"},
		},
		{
			name:  "nobody near: no candidates at the deadline",
			mode:  ModeBatched,
			trips: []trip{{"A", 0, 0, 10 * time.Second}},
			want:  []string{"10.00s give-up:no_candidates A"},
		},
		{
			name:    "the deadline withdraws an offer out",
			mode:    ModeBatched,
			drivers: []simDriver{{"X", at(500)}},
			trips:   []trip{{"A", 0, 0, 7 * time.Second}},
			want:    []string{"2.00s offer A X", "7.00s close:expired A X", "7.00s give-up:deadline_exceeded A"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newSim(t, tt.mode, rand.New(rand.NewPCG(1, 1)), slices.Clone(tt.drivers), func(c *hostConfig) {
				c.followUp = tt.followUp
				if tt.windowMax > 0 {
					c.window, c.windowMax, c.windowLoad = time.Second, tt.windowMax, 4
				}
				if tt.holdMax > 0 {
					c.holdPickup, c.holdMax = 5*time.Minute, tt.holdMax
				}
				c.longPickup = tt.longPickup
			})
			s.script = func(_, driver string) (string, time.Duration) { return tt.answers[driver], time.Second }
			if len(tt.late) > 0 {
				clk.AfterFunc(5*time.Second, func() { s.drivers = append(s.drivers, tt.late...) })
			}
			for _, tr := range tt.trips {
				pickup, ok := tt.tripsAt[tr.id]
				if !ok {
					pickup = at(tr.x)
				}
				s.submitAt(tr.after, tr.id, pickup, tr.deadline)
			}
			if tt.cancel != "" {
				clk.AfterFunc(3*time.Second, func() {
					if !s.h.cancel(tt.cancel) {
						t.Errorf("%s not in flight", tt.cancel)
					}
				})
			}
			s.finish(t)
			var got []string
			for _, ev := range s.timeline {
				f := strings.Fields(ev)
				if f[1] == "offer" || f[1] == "assigned" || f[1] == "held" || strings.HasPrefix(f[1], "give-up") || strings.HasPrefix(f[1], "close:") && f[1] != "close:accepted" {
					got = append(got, strings.Join(f, " "))
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("timeline\n got %q\nwant %q\nfull:\n%s", got, tt.want, strings.Join(s.timeline, "\n"))
			}
		})
	}
}

// TestHoldCountsFromTripCreation: a trip that reaches the host after the
// rider has waited (recovered from another worker) has used up that much
// of its hold. Held from the host's own start it would wait for the 4 s
// window; counted from its creation 4 s earlier it cannot, and its offer
// goes out at the first window.
func TestHoldCountsFromTripCreation(t *testing.T) {
	origin := geo.LatLng{Lat: 39.745, Lng: -75.55}
	for _, tt := range []struct {
		name    string
		waited  time.Duration
		wantOff string
	}{
		{"new trip", 0, "6.00s offer A X"},
		{"recovered trip, 4 s old", 4 * time.Second, "2.00s offer A X"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, clk := newSim(t, ModeBatched, rand.New(rand.NewPCG(1, 1)), []simDriver{{"X", geo.Destination(origin, 90, 6500)}}, func(c *hostConfig) {
				c.holdPickup, c.holdMax = 5*time.Minute, 6*time.Second
			})
			s.script = func(string, string) (string, time.Duration) { return "accept", time.Second }
			trip := &commonv1.Trip{Id: "A", CreatedAt: timestamppb.New(clk.Now().Add(-tt.waited))}
			if !s.h.submit(&run{trip: trip, pickup: origin, deadline: clk.Now().Add(time.Minute)}) {
				t.Fatal("not started")
			}
			s.finish(t)
			var offers []string
			for _, ev := range s.timeline {
				if f := strings.Fields(ev); f[1] == "offer" {
					offers = append(offers, strings.Join(f, " "))
				}
			}
			if len(offers) != 1 || offers[0] != tt.wantOff {
				t.Fatalf("offers %q, want [%q]", offers, tt.wantOff)
			}
		})
	}
}

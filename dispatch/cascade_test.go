package dispatch

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

func ranked(ids ...string) []Ranked {
	out := make([]Ranked, len(ids))
	for i, id := range ids {
		out[i] = Ranked{Candidate: Candidate{Driver: Driver{ID: id}}, Score: float64(i)}
	}
	return out
}

func testCascade(t *testing.T, mod func(*CascadeConfig)) *Cascade {
	t.Helper()
	cfg := DefaultCascadeConfig()
	cfg.OfferTimeout = 10 * time.Second
	cfg.Deadline = time.Minute
	cfg.InitialRadius, cfg.MaxRadius, cfg.RadiusGrowth = 1000, 4000, 2
	cfg.RetryInterval = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewCascade("trip-1", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func one[T Action](t *testing.T, acts []Action) T {
	t.Helper()
	if len(acts) != 1 {
		t.Fatalf("want one %T, got %#v", *new(T), acts)
	}
	a, ok := acts[0].(T)
	if !ok {
		t.Fatalf("want %T, got %#v", *new(T), acts[0])
	}
	return a
}

func TestCascadeHappyPath(t *testing.T) {
	clk := newFakeClock()
	c := testCascade(t, nil)
	s := one[Search](t, c.Start(clk.Now()))
	if s.Radius != 1000 || len(s.Exclude) != 0 || s.Seq != 1 {
		t.Fatalf("search %+v", s)
	}
	o := one[SendOffer](t, c.CandidatesFound(clk.Now(), s.Seq, ranked("a", "b")))
	if o.Candidate.ID != "a" || !o.Expires.Equal(clk.Now().Add(10*time.Second)) {
		t.Fatalf("offer %+v", o)
	}
	if got := c.NextWake(); !got.Equal(o.Expires) {
		t.Fatalf("next wake %v", got)
	}
	clk.Advance(3 * time.Second)
	a := one[Assign](t, c.Reply(clk.Now(), "a", true))
	if a.DriverID != "a" || c.State() != StateAssigning {
		t.Fatalf("assign %+v state %v", a, c.State())
	}
	if acts := c.Tick(clk.Advance(time.Hour)); acts != nil {
		t.Fatalf("tick while assigning: %v", acts)
	}
	if acts := c.AssignResult(clk.Now(), "a", nil); acts != nil || c.State() != StateAssigned || c.Driver() != "a" {
		t.Fatalf("assigned: %v %v", acts, c.State())
	}
}

func TestCascadeDeclineTimeoutLostRaceWiden(t *testing.T) {
	clk := newFakeClock()
	c := testCascade(t, nil)
	s := one[Search](t, c.Start(clk.Now()))
	one[SendOffer](t, c.CandidatesFound(clk.Now(), s.Seq, ranked("a", "b", "c")))
	// a declines → b.
	if o := one[SendOffer](t, c.Reply(clk.Advance(time.Second), "a", false)); o.Candidate.ID != "b" {
		t.Fatalf("after decline: %+v", o)
	}
	// A late or foreign reply is ignored.
	if acts := c.Reply(clk.Now(), "a", true); acts != nil {
		t.Fatalf("stale reply: %v", acts)
	}
	// b times out → revoke b, offer c.
	acts := c.Tick(clk.Advance(10 * time.Second))
	if len(acts) != 2 || acts[0] != (RevokeOffer{TripID: "trip-1", DriverID: "b"}) || acts[1].(SendOffer).Candidate.ID != "c" {
		t.Fatalf("timeout: %#v", acts)
	}
	// c accepts but lost the race → queue empty → widen with exclusions.
	one[Assign](t, c.Reply(clk.Advance(time.Second), "c", true))
	s = one[Search](t, c.AssignResult(clk.Now(), "c", errors.New("driver busy")))
	if s.Radius != 2000 || !reflect.DeepEqual(s.Exclude, map[string]struct{}{"a": {}, "b": {}, "c": {}}) {
		t.Fatalf("widen: %+v", s)
	}
	// The answer to an older search is ignored.
	if acts := c.CandidatesFound(clk.Now(), s.Seq-1, ranked("z")); acts != nil {
		t.Fatalf("stale search answer: %v", acts)
	}
	// Already offered drivers are filtered out even if the host returns them.
	s = one[Search](t, c.CandidatesFound(clk.Now(), s.Seq, ranked("a")))
	if s.Radius != 4000 {
		t.Fatalf("second widen %+v", s)
	}
	// Nothing at max radius: wait, retry after RetryInterval.
	if acts := c.CandidatesFound(clk.Now(), s.Seq, nil); acts != nil || c.State() != StateWaiting {
		t.Fatalf("max radius: %v %v", acts, c.State())
	}
	if acts := c.Tick(clk.Advance(4 * time.Second)); acts != nil {
		t.Fatalf("early retry %v", acts)
	}
	s = one[Search](t, c.Tick(clk.Advance(time.Second)))
	if s.Radius != 4000 {
		t.Fatalf("retry %+v", s)
	}
	if o := one[SendOffer](t, c.CandidatesFound(clk.Now(), s.Seq, ranked("d"))); o.Candidate.ID != "d" {
		t.Fatalf("retry offer %+v", o)
	}
	if got := c.Offered(); !reflect.DeepEqual(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("offered %v", got)
	}
	// Deadline while offering: revoke + give up (drivers were found).
	acts = c.Tick(c.Deadline())
	if len(acts) != 2 || acts[0] != (RevokeOffer{TripID: "trip-1", DriverID: "d"}) ||
		acts[1] != (GiveUp{TripID: "trip-1", Reason: ReasonDeadlineExceeded, Offered: 4}) {
		t.Fatalf("deadline: %#v", acts)
	}
	if c.Tick(clk.Advance(time.Hour)) != nil || c.Reply(clk.Now(), "d", true) != nil {
		t.Fatal("events after give-up must be ignored")
	}
}

func TestCascadeGiveUpReasons(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(c *Cascade, clk *fakeClock) []Action
		want Reason
	}{
		{"no candidates", func(c *Cascade, clk *fakeClock) []Action {
			s := c.Start(clk.Now())[0].(Search)
			for s.Radius < 4000 {
				s = c.CandidatesFound(clk.Now(), s.Seq, nil)[0].(Search)
			}
			c.CandidatesFound(clk.Now(), s.Seq, nil)
			return c.Tick(clk.Advance(time.Minute))
		}, ReasonNoCandidates},
		{"cancelled", func(c *Cascade, clk *fakeClock) []Action {
			s := c.Start(clk.Now())[0].(Search)
			c.CandidatesFound(clk.Now(), s.Seq, ranked("a"))
			return c.Cancel(clk.Now())[1:]
		}, ReasonCancelled},
		{"max offers", func(c *Cascade, clk *fakeClock) []Action {
			c.cfg.MaxOffers = 1
			s := c.Start(clk.Now())[0].(Search)
			c.CandidatesFound(clk.Now(), s.Seq, ranked("a", "b"))
			return c.Reply(clk.Now(), "a", false)
		}, ReasonMaxOffers},
		{"deadline during lost race", func(c *Cascade, clk *fakeClock) []Action {
			s := c.Start(clk.Now())[0].(Search)
			c.CandidatesFound(clk.Now(), s.Seq, ranked("a", "b"))
			c.Reply(clk.Now(), "a", true)
			return c.AssignResult(clk.Advance(2*time.Minute), "a", errors.New("lost"))
		}, ReasonDeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			c := testCascade(t, nil)
			g := one[GiveUp](t, tc.run(c, clk))
			if g.Reason != tc.want || c.Reason() != tc.want || c.State() != StateGaveUp {
				t.Fatalf("give up %+v state %v", g, c.State())
			}
		})
	}
}

func TestCascadeConfigValidate(t *testing.T) {
	if err := DefaultCascadeConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mod := range []func(*CascadeConfig){
		func(c *CascadeConfig) { c.OfferTimeout = 0 },
		func(c *CascadeConfig) { c.Deadline = -1 },
		func(c *CascadeConfig) { c.MaxRadius = c.InitialRadius - 1 },
		func(c *CascadeConfig) { c.RadiusGrowth = 1 },
		func(c *CascadeConfig) { c.RetryInterval = 0 },
		func(c *CascadeConfig) { c.MaxOffers = -1 },
	} {
		cfg := DefaultCascadeConfig()
		mod(&cfg)
		if _, err := NewCascade("t", cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("config %+v: %v", cfg, err)
		}
	}
}

func TestETAScorer(t *testing.T) {
	sc, err := NewETAScorer(DefaultRankConfig())
	if err != nil {
		t.Fatal(err)
	}
	pickup := geo.LatLng{Lat: 37.77, Lng: -122.42}
	south := geo.Destination(pickup, 180, 500) // driver 500 m south of the pickup
	mk := func(id string, pos geo.LatLng, heading, speed float64) Candidate {
		return Candidate{Driver: Driver{ID: id, Pos: pos, Heading: heading, Speed: speed}, Distance: geo.Distance(pos, pickup)}
	}
	cands := []Candidate{
		mk("away", south, 180, 10),  // heading south, away: full U-turn
		mk("toward", south, 0, 10),  // heading north, toward the pickup
		mk("parked", south, 180, 0), // heading ignored when stopped
		mk("b-unknown", south, math.NaN(), 10),
		mk("a-unknown", south, math.NaN(), 10), // same score as b-unknown: id breaks the tie
		mk("side", south, 80, 10),              // less than 90° off: no penalty
	}
	got := sc.Rank(RankRequest{Pickup: pickup, At: time.Unix(0, 0)}, cands)
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if want := []string{"a-unknown", "b-unknown", "parked", "side", "toward", "away"}; !reflect.DeepEqual(ids, want) {
		// "side"/"toward"/"parked" tie at zero penalty and sort by id.
		t.Fatalf("order %v want %v", ids, want)
	}
	away := got[len(got)-1]
	wantDrive := 500 * 1.4 / (30 / 3.6)
	if math.Abs(away.Parts.Drive.Seconds()-wantDrive) > 0.01 || math.Abs(away.Parts.TurnPenalty.Seconds()-60) > 0.01 ||
		math.Abs(away.Score-wantDrive-60) > 0.01 || away.Parts.ETA != away.Parts.Drive+away.Parts.TurnPenalty {
		t.Fatalf("parts %+v score %v", away.Parts, away.Score)
	}
	// Speed table: cell beats hour beats default.
	cell, _ := geo.CellAt(pickup, 9)
	tab := &SpeedTable{ByCell: map[geo.Cell]float64{cell: 5}, Default: 10}
	tab.ByHour[8] = 4
	if tab.Speed(cell, time.Unix(0, 0)) != 5 || tab.Speed(0, time.Date(2026, 1, 1, 8, 30, 0, 0, time.UTC)) != 4 || tab.Speed(0, time.Unix(0, 0)) != 10 {
		t.Fatal("speed table lookup")
	}
	bad := DefaultRankConfig()
	bad.RoadFactor = 0.5
	if _, err := NewETAScorer(bad); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("road factor 0.5: %v", err)
	}
}

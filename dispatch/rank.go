package dispatch

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/hexride/hexride/geo"
)

// SpeedModel gives the expected driving speed, in metres per second, for a
// drive starting in cell at time at.
type SpeedModel interface {
	Speed(cell geo.Cell, at time.Time) float64
}

// ConstantSpeed is the same speed everywhere, always (m/s).
type ConstantSpeed float64

// Speed implements SpeedModel.
func (s ConstantSpeed) Speed(geo.Cell, time.Time) float64 { return float64(s) }

// SpeedTable looks speeds up by cell, then by local hour, then falls back to
// Default. Zero entries mean "not set". It is read-only once in use.
type SpeedTable struct {
	ByCell  map[geo.Cell]float64
	ByHour  [24]float64
	Default float64
	// Location is the time zone of ByHour; nil means UTC.
	Location *time.Location
}

// Speed implements SpeedModel.
func (t *SpeedTable) Speed(cell geo.Cell, at time.Time) float64 {
	if v := t.ByCell[cell]; v > 0 {
		return v
	}
	loc := t.Location
	if loc == nil {
		loc = time.UTC
	}
	if v := t.ByHour[at.In(loc).Hour()]; v > 0 {
		return v
	}
	return t.Default
}

var (
	_ SpeedModel = ConstantSpeed(0)
	_ SpeedModel = (*SpeedTable)(nil)
)

// RoadETA is the road network as ranking needs it: the fastest driving
// time, and that path's length in metres, from each of several points
// (drivers) to one (the pickup), in one call. headings[i] is where driver
// i is heading (degrees; NaN: unknown or standing): a moving car is on the
// road it drives along and leaves it only ahead, so a car on a highway
// beside the pickup drives on to the next exit and back. A negative time
// means that origin is off the network (too far from any road to snap);
// its metres are then meaningless. An error means the whole answer is
// unusable (e.g. the pickup itself is off the network).
//
// roads.Graph answers this through a small adapter in the services layer
// (roads does not import geo's cgo; dispatch does not import roads).
type RoadETA interface {
	DriveTimesTo(from []geo.LatLng, headings []float64, to geo.LatLng) ([]time.Duration, []float64, error)
}

// Sources of a pickup estimate, as ScoreParts.Source reports them.
const (
	// SourceRoad: the drive time and distance are the road network's
	// fastest path.
	SourceRoad = "road"
	// SourceStraightLine: straight-line distance × RoadFactor at the speed
	// model's speed; used when no road network is configured, when the
	// driver is off it, or when the network could not answer.
	SourceStraightLine = "straight-line"
)

// RankConfig configures the [ETAScorer].
type RankConfig struct {
	// Roads, when set, gives pickup drive times from the road network;
	// candidates it cannot place fall back to the straight-line estimate
	// (RoadFactor and Speeds). Nil: straight-line estimates only.
	Roads RoadETA
	// RoadFactor converts straight-line to road distance (≥ 1; default 1.4).
	RoadFactor float64
	// Speeds gives driving speed; default ConstantSpeed(8.33) (30 km/h).
	Speeds SpeedModel
	// TurnPenalty is the extra time for a driver heading directly away
	// from the pickup (a U-turn); it ramps linearly from 0 at 90° off the
	// bearing to the pickup to the full value at 180°. Default 60s. A
	// road estimate keeps it: its path leaves ahead, but the graph lets a
	// car turn round at the next node, which on a two-way street may be
	// a few metres on; on a one-way road the path's loop comes on top.
	TurnPenalty time.Duration
	// MinMovingSpeed: below it (m/s) heading is noise and ignored (default 1).
	MinMovingSpeed float64
	// DeadReckoning bounds how far a moving driver's last position is
	// carried forward in time, along its heading at its speed, to the
	// ranking's time for the road estimate (default 5s; 0: off). A car
	// reported just short of the pickup on a fast one-way road has passed
	// it by the time the offer goes out.
	DeadReckoning time.Duration
}

// DefaultRankConfig returns the defaults.
func DefaultRankConfig() RankConfig {
	return RankConfig{RoadFactor: 1.4, Speeds: ConstantSpeed(30 / 3.6), TurnPenalty: time.Minute, MinMovingSpeed: 1, DeadReckoning: 5 * time.Second}
}

// Validate checks the config.
func (c RankConfig) Validate() error {
	switch {
	case !(c.RoadFactor >= 1) || math.IsInf(c.RoadFactor, 0):
		return fmt.Errorf("%w: road factor %v must be ≥ 1", ErrInvalidConfig, c.RoadFactor)
	case c.Speeds == nil:
		return fmt.Errorf("%w: nil speed model", ErrInvalidConfig)
	case c.TurnPenalty < 0:
		return fmt.Errorf("%w: negative turn penalty", ErrInvalidConfig)
	case c.MinMovingSpeed < 0:
		return fmt.Errorf("%w: negative min moving speed", ErrInvalidConfig)
	case c.DeadReckoning < 0:
		return fmt.Errorf("%w: negative dead reckoning", ErrInvalidConfig)
	}
	return nil
}

// RankRequest is what a scorer knows about the trip.
type RankRequest struct {
	Pickup geo.LatLng
	At     time.Time
}

// ScoreParts explains a score ("why this driver").
type ScoreParts struct {
	// Source says where Drive and RoadDistance come from: SourceRoad or
	// SourceStraightLine.
	Source       string
	Distance     float64       // straight line, metres
	RoadDistance float64       // road path length (SourceRoad) or Distance × road factor
	Speed        float64       // m/s: the speed model's, or the road path's average
	Drive        time.Duration // road time, or RoadDistance / Speed
	HeadingOff   float64       // degrees between heading and bearing to pickup; NaN if unknown/ignored
	TurnPenalty  time.Duration
	// Chained, for a driver finishing a ride (chained supply), is the rest
	// of that ride plus the dropoff allowance. Drive, RoadDistance and
	// TurnPenalty then cover both drives (the rest of the ride and the
	// drive from its dropoff), the other parts the second only.
	Chained time.Duration
	ETA     time.Duration // Drive + TurnPenalty (+ the dropoff allowance when Chained)
}

// Ranked is a candidate with its score: lower is better.
type Ranked struct {
	Candidate
	Score float64 // seconds of estimated pickup time
	Parts ScoreParts
}

// Scorer orders candidates for a trip, best first, keeping the score parts.
// Implementations must be deterministic (ties broken by driver id).
type Scorer interface {
	Rank(req RankRequest, cands []Candidate) []Ranked
}

// ETAScorer ranks by estimated pickup time.
type ETAScorer struct {
	cfg RankConfig
}

var _ Scorer = (*ETAScorer)(nil)

// NewETAScorer builds the default scorer.
func NewETAScorer(cfg RankConfig) (*ETAScorer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &ETAScorer{cfg: cfg}, nil
}

// Estimate scores one candidate (one road query for it alone; to score
// several, use Estimates or Rank, which share one).
func (s *ETAScorer) Estimate(req RankRequest, c Candidate) Ranked {
	return s.Estimates(req, []Candidate{c})[0]
}

// Estimates scores candidates, in the order given: with a road network,
// one DriveTimesTo call for all of them; candidates off the network (or
// all of them, if the call fails) get the straight-line estimate, and
// their ScoreParts.Source says so.
func (s *ETAScorer) Estimates(req RankRequest, cands []Candidate) []Ranked {
	out := make([]Ranked, len(cands))
	var times []time.Duration
	var meters []float64
	if s.cfg.Roads != nil && len(cands) > 0 {
		from := make([]geo.LatLng, len(cands))
		headings := make([]float64, len(cands))
		for i, c := range cands {
			from[i], headings[i] = c.Pos, math.NaN()
			if s.moving(c) {
				from[i], headings[i] = s.reckon(c, req.At), c.Heading
			}
		}
		t, m, err := s.cfg.Roads.DriveTimesTo(from, headings, req.Pickup)
		if err == nil && len(t) == len(cands) && len(m) == len(cands) {
			times, meters = t, m
		}
	}
	for i, c := range cands {
		if times != nil && times[i] >= 0 && !math.IsNaN(meters[i]) {
			out[i] = s.byRoad(req, c, times[i], meters[i])
		} else {
			out[i] = s.straightLine(req, c)
		}
	}
	return out
}

// straightLine is the estimate without a road network.
func (s *ETAScorer) straightLine(req RankRequest, c Candidate) Ranked {
	p := ScoreParts{Source: SourceStraightLine, Distance: c.Distance}
	p.RoadDistance = c.Distance * s.cfg.RoadFactor
	p.Speed = s.cfg.Speeds.Speed(c.Cell, req.At)
	if !(p.Speed > 0) {
		p.Speed = 0.1 // a broken table must not divide by zero; makes the driver last
	}
	p.Drive = time.Duration(p.RoadDistance / p.Speed * float64(time.Second))
	return s.finish(req, c, p)
}

// byRoad is the estimate from the road network's fastest path.
func (s *ETAScorer) byRoad(req RankRequest, c Candidate, drive time.Duration, meters float64) Ranked {
	p := ScoreParts{Source: SourceRoad, Distance: c.Distance, RoadDistance: meters, Drive: drive}
	if drive > 0 {
		p.Speed = meters / drive.Seconds()
	}
	return s.finish(req, c, p)
}

// A sighting is kept to the whole second, rounded down (Driver.Seen), so
// half a second less is its unbiased age; one older than staleSighting
// (or none, read from the wire as 1970) says nothing of where the car is.
const (
	seenRounding  = 500 * time.Millisecond
	staleSighting = time.Minute
)

// reckon carries a moving driver's last position forward along its
// heading to at, by at most DeadReckoning.
func (s *ETAScorer) reckon(c Candidate, at time.Time) geo.LatLng {
	age := at.Sub(c.Seen) - seenRounding
	if c.Seen.IsZero() || age <= 0 || age > staleSighting || s.cfg.DeadReckoning <= 0 {
		return c.Pos
	}
	return geo.Destination(c.Pos, c.Heading, c.Speed*min(age, s.cfg.DeadReckoning).Seconds())
}

// moving reports whether c's heading is known and worth heeding.
func (s *ETAScorer) moving(c Candidate) bool {
	return !math.IsNaN(c.Heading) && c.Speed >= s.cfg.MinMovingSpeed
}

// finish adds the turn penalty and the score.
func (s *ETAScorer) finish(req RankRequest, c Candidate, p ScoreParts) Ranked {
	p.HeadingOff = math.NaN()
	pen := 0.0
	if s.moving(c) && c.Distance > 1 {
		p.HeadingOff = geo.AngleDiff(c.Heading, geo.Bearing(c.Pos, req.Pickup))
		if p.HeadingOff > 90 {
			pen = s.cfg.TurnPenalty.Seconds() * (p.HeadingOff - 90) / 90
		}
	}
	p.TurnPenalty = time.Duration(pen * float64(time.Second))
	p.ETA = p.Drive + p.TurnPenalty
	return Ranked{Candidate: c, Score: p.Drive.Seconds() + pen, Parts: p}
}

// Rank implements Scorer: Estimates, best first.
func (s *ETAScorer) Rank(req RankRequest, cands []Candidate) []Ranked {
	out := s.Estimates(req, cands)
	SortRanked(out)
	return out
}

// Finishing is a driver carrying a rider, as chained supply sees it: where
// it is now (Candidate, whose Distance is to Dropoff), where its ride ends
// and which ride that is.
type Finishing struct {
	Candidate
	Dropoff geo.LatLng
	Ride    string
}

// RankChained scores drivers finishing a ride for a trip after it: the
// rest of the ride (from where the car is, as it drives, to the ride's
// dropoff), then dropoff for the rider getting out, then the drive from
// the dropoff to req.Pickup. A driver whose rest of ride is longer than
// within is left out. The answer is best first, like Rank, each with
// After set to its ride. With a road network: one road query per driver
// for the rest of its ride, one for every drive from the dropoffs.
func (s *ETAScorer) RankChained(req RankRequest, fs []Finishing, dropoff, within time.Duration) []Ranked {
	type kept struct {
		f    Finishing
		rest Ranked
	}
	var ks []kept
	fromDropoffs := make([]Candidate, 0, len(fs))
	for _, f := range fs {
		rest := s.Estimate(RankRequest{Pickup: f.Dropoff, At: req.At}, f.Candidate)
		if rest.Parts.ETA > within {
			continue
		}
		ks = append(ks, kept{f, rest})
		// At the dropoff the car stands: no heading, nothing to reckon.
		at := f.Candidate
		at.Pos, at.Heading, at.Speed, at.Seen = f.Dropoff, math.NaN(), 0, req.At
		at.Distance = geo.Distance(f.Dropoff, req.Pickup)
		fromDropoffs = append(fromDropoffs, at)
	}
	legs := s.Estimates(req, fromDropoffs)
	out := make([]Ranked, len(ks))
	for i, k := range ks {
		p := legs[i].Parts
		p.Chained = k.rest.Parts.ETA + dropoff
		p.Drive += k.rest.Parts.Drive
		p.TurnPenalty += k.rest.Parts.TurnPenalty
		p.RoadDistance += k.rest.Parts.RoadDistance
		p.ETA = p.Drive + p.TurnPenalty + dropoff
		c := k.f.Candidate
		c.Distance = geo.Distance(c.Pos, req.Pickup)
		c.After = k.f.Ride
		out[i] = Ranked{Candidate: c, Score: p.ETA.Seconds(), Parts: p}
	}
	SortRanked(out)
	return out
}

// SortRanked orders ranked candidates best first: by score, ties by
// driver id (Rank's order).
func SortRanked(rs []Ranked) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Score != rs[j].Score {
			return rs[i].Score < rs[j].Score
		}
		return rs[i].ID < rs[j].ID
	})
}

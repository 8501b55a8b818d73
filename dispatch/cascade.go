package dispatch

import (
	"fmt"
	"time"
)

// Reason says why a cascade gave up.
type Reason string

// Give-up reasons.
const (
	// ReasonNoCandidates: the deadline passed and no eligible driver was
	// ever found.
	ReasonNoCandidates Reason = "no_candidates"
	// ReasonDeadlineExceeded: drivers were offered the trip but none
	// accepted (or every accept lost its race) before the deadline.
	ReasonDeadlineExceeded Reason = "deadline_exceeded"
	// ReasonCancelled: the rider or an operator cancelled.
	ReasonCancelled Reason = "cancelled"
	// ReasonMaxOffers: the configured number of offers was used up.
	ReasonMaxOffers Reason = "max_offers"
)

// Action is an instruction from a Cascade to its host. The host performs it
// and reports the outcome as an event.
type Action interface{ isAction() }

// SendOffer: push an offer to the driver (through its gateway); it lapses
// at Expires.
type SendOffer struct {
	TripID    string
	Candidate Ranked
	Expires   time.Time
}

// RevokeOffer: tell the driver the offer lapsed (timeout or give-up).
type RevokeOffer struct {
	TripID, DriverID string
}

// Search: find candidates within Radius metres, excluding drivers already
// offered this trip, rank them, and report with CandidatesFound(Seq, …).
type Search struct {
	TripID  string
	Seq     int
	Radius  float64
	Exclude map[string]struct{} // a copy the host may keep
}

// Assign: commit the trip to the driver (trip.Assign). Report the outcome
// with AssignResult; a failure (the driver took another trip, a lost race)
// moves the cascade to the next candidate.
type Assign struct {
	TripID, DriverID string
}

// GiveUp: dispatch failed; the host fails the trip with Reason.
type GiveUp struct {
	TripID  string
	Reason  Reason
	Offered int
}

func (SendOffer) isAction()   {}
func (RevokeOffer) isAction() {}
func (Search) isAction()      {}
func (Assign) isAction()      {}
func (GiveUp) isAction()      {}

// CascadeState is where a cascade is.
type CascadeState int

// Cascade states.
const (
	StateIdle      CascadeState = iota // not started
	StateSearching                     // waiting for CandidatesFound
	StateOffering                      // an offer is out
	StateAssigning                     // an accept is being committed
	StateWaiting                       // nothing found at the max radius; retrying later
	StateAssigned                      // done: driver assigned
	StateGaveUp                        // done: failed
)

var stateNames = [...]string{"idle", "searching", "offering", "assigning", "waiting", "assigned", "gave_up"}

func (s CascadeState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Done reports whether the state is terminal.
func (s CascadeState) Done() bool { return s == StateAssigned || s == StateGaveUp }

// CascadeConfig configures offer cascades.
type CascadeConfig struct {
	OfferTimeout  time.Duration // how long a driver has to answer (default 15s)
	Deadline      time.Duration // from Start to giving up (default 2m)
	InitialRadius float64       // metres (default 2000)
	MaxRadius     float64       // metres (default 8000)
	RadiusGrowth  float64       // factor per widening (> 1; default 2)
	// RetryInterval: with nothing found at MaxRadius, search again after
	// this long (supply may be refilling after a partition move). Default 5s.
	RetryInterval time.Duration
	// MaxOffers caps offers per trip; 0 means no cap.
	MaxOffers int
}

// DefaultCascadeConfig returns the defaults.
func DefaultCascadeConfig() CascadeConfig {
	return CascadeConfig{
		OfferTimeout: 15 * time.Second, Deadline: 2 * time.Minute,
		InitialRadius: 2000, MaxRadius: 8000, RadiusGrowth: 2, RetryInterval: 5 * time.Second,
	}
}

// Validate checks the config.
func (c CascadeConfig) Validate() error {
	switch {
	case c.OfferTimeout <= 0:
		return fmt.Errorf("%w: offer timeout %v", ErrInvalidConfig, c.OfferTimeout)
	case c.Deadline <= 0:
		return fmt.Errorf("%w: deadline %v", ErrInvalidConfig, c.Deadline)
	case !(c.InitialRadius > 0) || !(c.MaxRadius >= c.InitialRadius):
		return fmt.Errorf("%w: radii %v..%v", ErrInvalidConfig, c.InitialRadius, c.MaxRadius)
	case !(c.RadiusGrowth > 1):
		return fmt.Errorf("%w: radius growth %v must be > 1", ErrInvalidConfig, c.RadiusGrowth)
	case c.RetryInterval <= 0:
		return fmt.Errorf("%w: retry interval %v", ErrInvalidConfig, c.RetryInterval)
	case c.MaxOffers < 0:
		return fmt.Errorf("%w: max offers %d", ErrInvalidConfig, c.MaxOffers)
	}
	return nil
}

// Cascade is the offer state machine of one trip: offer to the best
// candidate, on decline or timeout to the next, widen the search when
// candidates run out, give up at the deadline. It is pure: events in
// (Start, CandidatesFound, Reply, AssignResult, Tick, Cancel), actions out,
// time passed explicitly. Not safe for concurrent use: the host serialises
// events per trip.
type Cascade struct {
	trip     string
	cfg      CascadeConfig
	state    CascadeState
	deadline time.Time
	radius   float64
	seq      int
	queue    []Ranked
	offered  map[string]struct{}
	order    []string
	current  Ranked
	expires  time.Time
	retryAt  time.Time
	found    bool
	reason   Reason
}

// NewCascade creates an idle cascade for a trip.
func NewCascade(tripID string, cfg CascadeConfig) (*Cascade, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cascade{trip: tripID, cfg: cfg, offered: map[string]struct{}{}}, nil
}

// State is the current state.
func (c *Cascade) State() CascadeState { return c.state }

// Driver is the driver currently offered, being assigned, or assigned.
func (c *Cascade) Driver() string {
	if c.state == StateOffering || c.state == StateAssigning || c.state == StateAssigned {
		return c.current.ID
	}
	return ""
}

// Reason is why the cascade gave up ("" otherwise).
func (c *Cascade) Reason() Reason { return c.reason }

// Offered lists the drivers offered so far, in order.
func (c *Cascade) Offered() []string { return append([]string(nil), c.order...) }

// Deadline is when the cascade gives up.
func (c *Cascade) Deadline() time.Time { return c.deadline }

// NextWake is when the host should call Tick next (zero: no timer needed).
func (c *Cascade) NextWake() time.Time {
	switch c.state {
	case StateOffering:
		return earliest(c.expires, c.deadline)
	case StateWaiting:
		return earliest(c.retryAt, c.deadline)
	case StateSearching:
		return c.deadline
	}
	return time.Time{}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Start begins dispatch at now: the first search.
func (c *Cascade) Start(now time.Time) []Action {
	if c.state != StateIdle {
		return nil
	}
	c.deadline = now.Add(c.cfg.Deadline)
	c.radius = c.cfg.InitialRadius
	return c.search()
}

func (c *Cascade) search() []Action {
	c.state = StateSearching
	c.seq++
	ex := make(map[string]struct{}, len(c.offered))
	for id := range c.offered {
		ex[id] = struct{}{}
	}
	return []Action{Search{TripID: c.trip, Seq: c.seq, Radius: c.radius, Exclude: ex}}
}

// CandidatesFound delivers the ranked answer to Search seq. Stale answers
// (an older seq, or after the cascade moved on) are ignored.
func (c *Cascade) CandidatesFound(now time.Time, seq int, ranked []Ranked) []Action {
	if c.state != StateSearching || seq != c.seq {
		return nil
	}
	if !now.Before(c.deadline) {
		return c.giveUp(ReasonDeadlineExceeded)
	}
	c.queue = c.queue[:0]
	for _, r := range ranked {
		if _, done := c.offered[r.ID]; !done {
			c.queue = append(c.queue, r)
		}
	}
	if len(c.queue) > 0 {
		c.found = true
		return c.offerNext(now)
	}
	return c.widen(now)
}

// widen searches farther, or waits and retries at the maximum radius.
func (c *Cascade) widen(now time.Time) []Action {
	if c.radius < c.cfg.MaxRadius {
		c.radius = min(c.radius*c.cfg.RadiusGrowth, c.cfg.MaxRadius)
		return c.search()
	}
	c.state = StateWaiting
	c.retryAt = now.Add(c.cfg.RetryInterval)
	return nil
}

func (c *Cascade) offerNext(now time.Time) []Action {
	c.state = StateSearching // no offer out any more (callers revoked or it was answered)
	if c.cfg.MaxOffers > 0 && len(c.order) >= c.cfg.MaxOffers {
		return c.giveUp(ReasonMaxOffers)
	}
	if len(c.queue) == 0 {
		return c.widen(now)
	}
	c.current = c.queue[0]
	c.queue = c.queue[1:]
	c.offered[c.current.ID] = struct{}{}
	c.order = append(c.order, c.current.ID)
	c.state = StateOffering
	c.expires = earliest(now.Add(c.cfg.OfferTimeout), c.deadline)
	return []Action{SendOffer{TripID: c.trip, Candidate: c.current, Expires: c.expires}}
}

// Reply delivers a driver's answer. Replies from anyone but the driver
// currently offered, or after the offer lapsed, are ignored (the lapse
// already produced a RevokeOffer).
func (c *Cascade) Reply(now time.Time, driverID string, accepted bool) []Action {
	if c.state != StateOffering || driverID != c.current.ID {
		return nil
	}
	if !now.Before(c.expires) {
		return c.Tick(now)
	}
	if accepted {
		c.state = StateAssigning
		return []Action{Assign{TripID: c.trip, DriverID: driverID}}
	}
	return c.offerNext(now)
}

// AssignResult reports the outcome of Assign: err == nil means the trip is
// committed to the driver. Any error (typically: the driver is already on
// another trip) moves on to the next candidate, or gives up if the
// deadline has passed.
func (c *Cascade) AssignResult(now time.Time, driverID string, err error) []Action {
	if c.state != StateAssigning || driverID != c.current.ID {
		return nil
	}
	if err == nil {
		c.state = StateAssigned
		return nil
	}
	if !now.Before(c.deadline) {
		return c.giveUp(ReasonDeadlineExceeded)
	}
	return c.offerNext(now)
}

// Tick advances time: offer timeouts, retries and the deadline. While an
// assignment is being committed nothing times out: the commit decides.
func (c *Cascade) Tick(now time.Time) []Action {
	switch c.state {
	case StateIdle, StateAssigned, StateGaveUp, StateAssigning:
		return nil
	}
	if !now.Before(c.deadline) {
		return c.giveUp(ReasonDeadlineExceeded)
	}
	switch c.state {
	case StateOffering:
		if !now.Before(c.expires) {
			acts := []Action{RevokeOffer{TripID: c.trip, DriverID: c.current.ID}}
			return append(acts, c.offerNext(now)...)
		}
	case StateWaiting:
		if !now.Before(c.retryAt) {
			return c.search()
		}
	}
	return nil
}

// Cancel stops the cascade (rider cancelled). An assignment in flight is
// left to the trip store, whose state machine orders it against the cancel.
func (c *Cascade) Cancel(time.Time) []Action {
	if c.state.Done() || c.state == StateIdle {
		if c.state == StateIdle {
			c.state, c.reason = StateGaveUp, ReasonCancelled
		}
		return nil
	}
	return c.giveUp(ReasonCancelled)
}

func (c *Cascade) giveUp(reason Reason) []Action {
	var acts []Action
	if c.state == StateOffering {
		acts = append(acts, RevokeOffer{TripID: c.trip, DriverID: c.current.ID})
	}
	if reason == ReasonDeadlineExceeded && !c.found {
		reason = ReasonNoCandidates
	}
	c.state, c.reason = StateGaveUp, reason
	return append(acts, GiveUp{TripID: c.trip, Reason: reason, Offered: len(c.order)})
}

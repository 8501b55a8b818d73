// Package matching hosts the dispatch engine for the H3 partitions this
// worker owns: the live supply index, candidate search across partition
// borders, the offer cascade that pushes offers to driver gateways and
// assigns through the trip service, surge per cell, and the recovery sweep
// that picks up REQUESTED trips whose dispatch was lost with a worker.
package matching

import (
	"errors"
	"fmt"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/services/matching/ring"
)

// Config configures an Engine.
type Config struct {
	// Self is this worker as the membership lists it.
	Self ring.Member
	// Topology is the process's one topology (partition, index and surge
	// resolutions, dispatch deadline); Index.Resolution and
	// Surge.Resolution are taken from it.
	Topology dispatch.Topology
	// Index configures the supply index (driver TTL, shards).
	Index dispatch.IndexConfig
	// Surge configures demand/supply tracking and multipliers per cell.
	Surge dispatch.SurgeConfig
	// OfferTimeout is how long a driver has to answer an offer.
	OfferTimeout time.Duration
	// SearchRadiusM is the first search radius; the cascade widens it up to
	// MaxSearchRadiusM when candidates run out.
	SearchRadiusM    float64
	MaxSearchRadiusM float64
	// Candidates is how many drivers a search collects (K).
	Candidates int
	// RetrySearchEvery is how long a dispatch with no candidates waits before
	// searching again (supply may still be refilling after a partition move).
	RetrySearchEvery time.Duration
	// RecoveryInterval is how often the worker looks for REQUESTED trips in
	// its partitions that no worker is dispatching; RecoveryAge is how old
	// such a trip must be (younger ones are still being handed over).
	RecoveryInterval time.Duration
	RecoveryAge      time.Duration
	// ExpireInterval is how often silent drivers are dropped from the index.
	ExpireInterval time.Duration
	// CallTimeout bounds every outgoing unary call.
	CallTimeout time.Duration
	// Mode is how requests meet drivers: greedy (offer cascade per trip)
	// or batched (windows solved together).
	Mode DispatchMode
	// BatchWindow is how long a batched window gathers requests and
	// drivers before it is solved (MinBatchWindow..MaxBatchWindow).
	BatchWindow time.Duration
	// BatchFollowUp is how long a request that a window's offer returned
	// (declined, lapsed, refused, lost its assignment) waits before a
	// short follow-up window solves it again, with that driver excluded,
	// instead of waiting for the next full window; 0 sends it to the next
	// full window. At most BatchWindow.
	BatchFollowUp time.Duration
	// BatchCandidates is how many nearest drivers a batched window ranks
	// per request (one one-to-many road query per request); more options
	// let the exact solve trade drivers between requests.
	BatchCandidates int
	// BatchWindowMax, if above BatchWindow, makes windows adaptive: a
	// window runs BatchWindow, then, if more requests are open than one,
	// gathers on, up to BatchWindowMax when BatchWindowLoad or more are
	// open (linear in between). 0: every window is BatchWindow.
	BatchWindowMax  time.Duration
	BatchWindowLoad int
	// BatchHoldPickup, if positive, lets a batched request whose planned
	// pickup is at least this long (supply near it is thin) wait for the
	// next window instead of taking that driver, as long as it will then
	// have waited at most BatchHoldMax since it arrived: a nearer driver
	// may come free meanwhile, or a newer request may need that driver
	// more. 0: a request takes what its window plans.
	BatchHoldPickup time.Duration
	BatchHoldMax    time.Duration
	// BatchLongPickup, if positive, makes a window weigh long pickups
	// more: a pickup this long costs twice its seconds (T·(1 + T/L) for a
	// pickup T), so of two plans with about the same total the window
	// takes the one without the longest pickups. 0: a pickup costs its
	// seconds.
	BatchLongPickup time.Duration
	// ChainWithin, if positive, turns on chained supply: a driver carrying
	// a rider whose ride ends within ChainWithin (by road, as it drives)
	// is a candidate for a trip near where the ride ends, its pickup ETA
	// the rest of the ride plus ChainDropoff plus the drive from the
	// dropoff. A driver holds one next trip at most. Searched on this
	// worker's own supply (a finishing driver's partition is where it
	// drives, not where its ride ends). 0: only free drivers are offered.
	ChainWithin time.Duration
	// Regions is the deployment's region map (nil: one region). The
	// recovery sweep reads only trips homed in the regions whose
	// partitions this worker can own: its own, and any region whose
	// workers are all gone and that falls back to it.
	Regions *dispatch.RegionMap
}

// Batch window bounds: shorter windows see too few requests to beat
// greedy; longer ones add more to every pickup than they save.
const (
	MinBatchWindow     = time.Second
	MaxBatchWindow     = 3 * time.Second
	DefaultBatchWindow = 2 * time.Second
	// DefaultBatchFollowUp gathers the declines of one window's offers
	// (sent together, answered within a few hundred ms of each other)
	// into one follow-up solve.
	DefaultBatchFollowUp = 250 * time.Millisecond
	// DefaultBatchLongPickup: counting a 2-minute pickup twice cut the
	// slowest pickups (p99) by up to 28 % in hexride sim --compare, the
	// mean within a run's noise (dispatch/PERFORMANCE.md).
	DefaultBatchLongPickup = 2 * time.Minute
	DefaultBatchCandidates = 20
	// DefaultBatchWindowLoad is the open requests at which an adaptive
	// window runs its longest.
	DefaultBatchWindowLoad = 20
)

// ValidateBatchFollowUp checks a follow-up window: 0 (none) up to the
// batch window.
func ValidateBatchFollowUp(d, window time.Duration) error {
	if d < 0 || d > window {
		return fmt.Errorf("%w: follow-up %v (want 0 to the window, %v)", ErrBadWindow, d, window)
	}
	return nil
}

// Bounds of BatchLongPickup: shorter, a window would send far drivers to
// spare a few seconds on near pickups; longer, it changes nothing.
const (
	MinBatchLongPickup = 10 * time.Second
	MaxBatchLongPickup = time.Hour
)

// ErrBadLongPickup: BatchLongPickup is out of range.
var ErrBadLongPickup = errors.New("matching: bad long pickup")

// Bounds of ChainWithin: a ride ending further off than MaxChainWithin
// is a guess, not a plan, and a next trip waiting that long before its
// drive even starts would near the trip watchdog's silent-driver timeout
// (10 minutes by default), which takes back a pickup that does not move.
const (
	MaxChainWithin = 5 * time.Minute
	// ChainDropoff is what a chained pickup ETA allows for the rider
	// getting out at the end of the ride before.
	ChainDropoff = 30 * time.Second
)

// ErrBadChainWithin: ChainWithin is out of range.
var ErrBadChainWithin = errors.New("matching: bad chained supply horizon")

// ValidateChainWithin checks the chained supply horizon: 0 (off) up to
// MaxChainWithin.
func ValidateChainWithin(d time.Duration) error {
	if d < 0 || d > MaxChainWithin {
		return fmt.Errorf("%w: %v (want 0, off, up to %v)", ErrBadChainWithin, d, MaxChainWithin)
	}
	return nil
}

// ValidateBatchLongPickup checks the long pickup: 0 (off), or
// MinBatchLongPickup to MaxBatchLongPickup.
func ValidateBatchLongPickup(d time.Duration) error {
	if d != 0 && (d < MinBatchLongPickup || d > MaxBatchLongPickup) {
		return fmt.Errorf("%w: %v (want 0, off, or %v to %v)", ErrBadLongPickup, d, MinBatchLongPickup, MaxBatchLongPickup)
	}
	return nil
}

// MaxBatchHold bounds how long a request may be held for a better match:
// past it, a rider waits longer for a match than a far driver saves.
const MaxBatchHold = 10 * time.Second

// Errors of ValidateBatchHold, by the setting at fault.
var (
	ErrBadHoldPickup = errors.New("matching: bad hold pickup")
	ErrBadHoldMax    = errors.New("matching: bad longest hold")
)

// ValidateBatchHold checks the hold for a better match: both 0 (off), or a
// positive pickup threshold with a longest hold of two windows (the
// shortest that can hold a request through one more window, whenever in
// its first window it arrived) up to MaxBatchHold. The error wraps
// ErrBadWindow and ErrBadHoldPickup or ErrBadHoldMax.
func ValidateBatchHold(pickup, hold, window time.Duration) error {
	switch {
	case pickup == 0 && hold == 0:
		return nil
	case pickup < 0:
		return fmt.Errorf("%w: %w: %v (want 0, off, or a positive pickup time)", ErrBadWindow, ErrBadHoldPickup, pickup)
	case pickup == 0:
		return fmt.Errorf("%w: %w: %v set, but no pickup time to hold for", ErrBadWindow, ErrBadHoldPickup, hold)
	case hold == 0:
		return fmt.Errorf("%w: %w: needed with a hold pickup time (%v)", ErrBadWindow, ErrBadHoldMax, pickup)
	case hold < 2*window || hold > MaxBatchHold:
		return fmt.Errorf("%w: %w: %v (want two windows, %v, to %v)", ErrBadWindow, ErrBadHoldMax, hold, 2*window, MaxBatchHold)
	}
	return nil
}

// ValidateBatchWindowMax checks an adaptive window's longest: 0 (fixed
// windows), or from the window up to MaxBatchWindow.
func ValidateBatchWindowMax(d, window time.Duration) error {
	if d != 0 && (d < window || d > MaxBatchWindow) {
		return fmt.Errorf("%w: longest window %v (want 0, or %v to %v)", ErrBadWindow, d, window, MaxBatchWindow)
	}
	return nil
}

// Config errors.
var (
	ErrNoSelf      = errors.New("matching: self id and address are required")
	ErrBadDuration = errors.New("matching: durations must be positive")
	ErrBadSearch   = errors.New("matching: search radius and candidate count must be positive, radius ≤ max radius")
	ErrBadMode     = errors.New("matching: unknown dispatch mode")
	ErrBadWindow   = errors.New("matching: batch window out of range")
)

// ValidateBatchWindow checks a batch window against its bounds.
func ValidateBatchWindow(d time.Duration) error {
	if d < MinBatchWindow || d > MaxBatchWindow {
		return fmt.Errorf("%w: %v (want %v to %v)", ErrBadWindow, d, MinBatchWindow, MaxBatchWindow)
	}
	return nil
}

// ParseMode returns the dispatch mode named s.
func ParseMode(s string) (DispatchMode, error) {
	m := DispatchMode(s)
	return m, validMode(m)
}

// DefaultConfig returns production defaults for the worker self in
// topology.
func DefaultConfig(self ring.Member, topology dispatch.Topology) Config {
	return Config{
		Self:             self,
		Topology:         topology,
		Index:            dispatch.DefaultIndexConfig(),
		Surge:            dispatch.DefaultSurgeConfig(),
		OfferTimeout:     10 * time.Second,
		SearchRadiusM:    3000,
		MaxSearchRadiusM: 10000,
		Candidates:       5,
		RetrySearchEvery: time.Second,
		RecoveryInterval: 3 * time.Second,
		RecoveryAge:      5 * time.Second,
		ExpireInterval:   5 * time.Second,
		CallTimeout:      5 * time.Second,
		Mode:             ModeGreedy,
		BatchWindow:      DefaultBatchWindow,
		BatchFollowUp:    DefaultBatchFollowUp,
		BatchCandidates:  DefaultBatchCandidates,
		BatchLongPickup:  DefaultBatchLongPickup,
		BatchWindowLoad:  DefaultBatchWindowLoad,
	}
}

// withTopology returns c with the index and surge resolutions of its
// topology.
func (c Config) withTopology() Config {
	c.Index.Resolution = c.Topology.IndexResolution
	c.Surge.Resolution = c.Topology.SurgeResolution
	return c
}

// Validate reports the first problem.
func (c Config) Validate() error {
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	c = c.withTopology()
	switch {
	case c.Self.ID == "" || c.Self.Address == "":
		return ErrNoSelf
	case c.OfferTimeout <= 0 || c.RetrySearchEvery <= 0 || c.RecoveryInterval <= 0 ||
		c.RecoveryAge <= 0 || c.ExpireInterval <= 0 || c.CallTimeout <= 0:
		return ErrBadDuration
	case c.SearchRadiusM <= 0 || c.MaxSearchRadiusM < c.SearchRadiusM || c.Candidates <= 0:
		return ErrBadSearch
	}
	if err := validMode(c.Mode); err != nil {
		return err
	}
	if err := ValidateBatchWindow(c.BatchWindow); err != nil {
		return err
	}
	if err := ValidateBatchFollowUp(c.BatchFollowUp, c.BatchWindow); err != nil {
		return err
	}
	if c.BatchCandidates <= 0 {
		return ErrBadSearch
	}
	if err := ValidateBatchWindowMax(c.BatchWindowMax, c.BatchWindow); err != nil {
		return err
	}
	if err := ValidateBatchHold(c.BatchHoldPickup, c.BatchHoldMax, c.BatchWindow); err != nil {
		return err
	}
	if c.BatchWindowLoad <= 0 {
		return fmt.Errorf("%w: window load %d (want at least 1)", ErrBadWindow, c.BatchWindowLoad)
	}
	if err := ValidateBatchLongPickup(c.BatchLongPickup); err != nil {
		return err
	}
	if err := ValidateChainWithin(c.ChainWithin); err != nil {
		return err
	}
	if err := c.Index.Validate(); err != nil {
		return err
	}
	return c.Surge.Validate()
}

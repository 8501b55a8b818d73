package console

import (
	"errors"
	"fmt"
	"time"
)

// Config configures the console.
type Config struct {
	// DispatcherID is the dispatcher identity used when a request names
	// none (X-Hexride-Dispatcher) and for the console's own background
	// calls (the trip watch, snapshots).
	DispatcherID string
	// SnapshotInterval is how often live clients get a snapshot of drivers,
	// cells, partitions and KPIs.
	SnapshotInterval time.Duration
	// KPIWindow is how far back the KPIs look (requests/min uses the last
	// minute of it).
	KPIWindow time.Duration
	// MaxWindowTrips bounds the trips the KPI window remembers.
	MaxWindowTrips int
	// MaxDrivers bounds the drivers a snapshot asks each worker for.
	MaxDrivers int
	// CallTimeout bounds each gRPC call the console makes for a request.
	CallTimeout time.Duration
	// WatchRetry is the pause before re-opening a failed trip watch.
	WatchRetry time.Duration
	// ClientBuffer is how many live messages a slow browser may lag behind
	// before it is disconnected (it reconnects and gets a fresh snapshot).
	ClientBuffer int
	// RequireToken makes every request present a dispatcher's bearer token
	// (Authorization header, or access_token for the event stream), which
	// the console verifies with Deps.Verify and forwards on its calls, so
	// the services see the real dispatcher. Without it the console acts as
	// DispatcherID (development on loopback).
	RequireToken bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DispatcherID:     "console",
		SnapshotInterval: 2 * time.Second,
		KPIWindow:        5 * time.Minute,
		MaxWindowTrips:   20000,
		MaxDrivers:       20000,
		CallTimeout:      5 * time.Second,
		WatchRetry:       time.Second,
		ClientBuffer:     256,
	}
}

// Config errors.
var (
	ErrNoDispatcherID = errors.New("console: dispatcher id is required")
	ErrBadDuration    = errors.New("console: durations must be positive")
	ErrBadLimit       = errors.New("console: limits must be positive")
	ErrMissingDep     = errors.New("console: missing dependency")
)

// maxIDLen matches the trip API's bound on actor ids.
const maxIDLen = 128

// Validate reports the first problem.
func (c Config) Validate() error {
	if c.DispatcherID == "" {
		return ErrNoDispatcherID
	}
	if len(c.DispatcherID) > maxIDLen {
		return fmt.Errorf("%w: at most %d bytes", ErrNoDispatcherID, maxIDLen)
	}
	if c.SnapshotInterval <= 0 || c.KPIWindow < time.Minute || c.CallTimeout <= 0 || c.WatchRetry <= 0 {
		return fmt.Errorf("%w (kpi window at least 1m)", ErrBadDuration)
	}
	if c.MaxWindowTrips <= 0 || c.MaxDrivers <= 0 || c.MaxDrivers > 20000 || c.ClientBuffer <= 0 {
		return fmt.Errorf("%w (max drivers 1..20000)", ErrBadLimit)
	}
	return nil
}

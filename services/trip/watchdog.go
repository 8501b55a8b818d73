package trip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// ReasonDriverUnresponsive is the reason the watchdog records when it
// takes a trip from a driver whose app went silent.
const ReasonDriverUnresponsive = "driver_unresponsive"

// WatchdogConfig says when a trip's driver counts as gone. Every trip in
// progress waits on its driver's app (arrive, start, complete); an app that
// crashed, lost its network for good or was uninstalled would leave the
// trip, and its rider, waiting for ever.
type WatchdogConfig struct {
	// SilentDriver: a trip in DRIVER_ASSIGNED or DRIVER_ARRIVED with no
	// change for this long is unassigned by the system (back to REQUESTED,
	// so matching finds another driver; both apps see the change on their
	// trip watches). --driver-silent-timeout.
	SilentDriver time.Duration
	// MaxTripDuration: an IN_PROGRESS trip with no change for this long is
	// cancelled by the system. --max-trip-duration.
	MaxTripDuration time.Duration
	// Interval is how often the watchdog looks. --watchdog-interval.
	Interval time.Duration
}

// DefaultWatchdogConfig: 10 minutes without a move before pickup, 4 hours
// in a ride, checked every 30 s.
func DefaultWatchdogConfig() WatchdogConfig {
	return WatchdogConfig{SilentDriver: 10 * time.Minute, MaxTripDuration: 4 * time.Hour, Interval: 30 * time.Second}
}

// Validate reports the first problem, naming the flag.
func (c WatchdogConfig) Validate() error {
	switch {
	case c.SilentDriver <= 0:
		return fmt.Errorf("--driver-silent-timeout must be positive, got %v", c.SilentDriver)
	case c.MaxTripDuration <= 0:
		return fmt.Errorf("--max-trip-duration must be positive, got %v", c.MaxTripDuration)
	case c.Interval <= 0:
		return fmt.Errorf("--watchdog-interval must be positive, got %v", c.Interval)
	}
	return nil
}

// Watchdog resolves trips whose driver app went silent. Several trip
// instances may each run one: every resolution is a compare-and-set
// transition with an idempotency key derived from the trip's version, so
// two watchdogs acting on one trip record one event.
type Watchdog struct {
	cfg   WatchdogConfig
	store store.Store
	log   *slog.Logger
}

// NewWatchdog validates cfg.
func NewWatchdog(cfg WatchdogConfig, st store.Store, log *slog.Logger) (*Watchdog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Watchdog{cfg: cfg, store: st, log: log}, nil
}

// Run sweeps every Interval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := w.Sweep(ctx); err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "trip watchdog: sweep failed; next one retries", "err", err)
		}
	}
}

// Sweep resolves every trip silent past its bound, on the store's clock,
// and returns how many it resolved.
func (w *Watchdog) Sweep(ctx context.Context) (int, error) {
	now, err := w.store.Now(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	passes := []struct {
		states []lifecycle.State
		silent time.Duration
		event  lifecycle.Event
	}{
		{[]lifecycle.State{lifecycle.StateDriverAssigned, lifecycle.StateDriverArrived}, w.cfg.SilentDriver, lifecycle.EventUnassign},
		{[]lifecycle.State{lifecycle.StateInProgress}, w.cfg.MaxTripDuration, lifecycle.EventCancel},
	}
	var errs []error
	for _, p := range passes {
		f := store.Filter{States: p.states, UpdatedBefore: now.Add(-p.silent), PageSize: store.MaxPageSize}
		for {
			page, err := w.store.List(ctx, f)
			if err != nil {
				return n, err
			}
			for _, t := range page.Trips {
				ok, err := w.resolve(ctx, t, p.event)
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					n++
				}
			}
			if page.NextPageToken == "" {
				break
			}
			f.PageToken = page.NextPageToken
		}
	}
	return n, errors.Join(errs...)
}

// resolve fires event on t as the system; a trip that moved on since it
// was listed (its driver acted after all) is left alone.
func (w *Watchdog) resolve(ctx context.Context, t store.Trip, event lifecycle.Event) (bool, error) {
	_, _, err := w.store.Transition(ctx, store.Transition{
		TripID:         t.ID,
		Event:          event,
		Actor:          lifecycle.ActorSystem,
		Reason:         ReasonDriverUnresponsive,
		ExpectVersion:  t.Version,
		IdempotencyKey: watchdogKey(t.ID, t.Version),
	})
	switch {
	case err == nil:
		w.log.InfoContext(ctx, "trip watchdog: driver silent; trip resolved", "trip", t.ID, "driver", t.DriverID, "state", t.State, "event", event)
		return true, nil
	case errors.Is(err, tripapi.ErrTripChanged), errors.Is(err, lifecycle.ErrInvalidTransition):
		return false, nil
	default:
		return false, fmt.Errorf("trip %s: %w", t.ID, err)
	}
}

func watchdogKey(id uuid.UUID, version int64) string {
	return fmt.Sprintf("watchdog:%s:%d", id, version)
}

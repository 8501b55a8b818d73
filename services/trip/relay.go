package trip

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hexride/hexride/services/trip/store"
)

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Holder names this instance in the relay lease (unique per process).
	Holder string
	// Interval is how often an idle relay looks for pending events when
	// nothing wakes it: trip instances nudge the relay after each commit
	// (RelayNudgeSubject), so this is the backstop for a lost nudge or a
	// writer that sends none.
	Interval time.Duration
	// Batch bounds the events read and published per round.
	Batch int
	// LeaseTTL is how long the lease lasts unrenewed; the holder renews
	// it every third of it. Another instance takes over after it expires.
	LeaseTTL time.Duration
	// PublishTimeout bounds the wait for JetStream's acknowledgements.
	PublishTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential wait after a
	// failed round (NATS or the database down).
	MinBackoff, MaxBackoff time.Duration
	// After is the clock the relay waits on (default time.After); tests
	// inject their own.
	After func(time.Duration) <-chan time.Time
	// Now is the clock of published_at and the lease's renewal (default
	// time.Now).
	Now func() time.Time
}

// DefaultRelayConfig returns the production defaults.
func DefaultRelayConfig(holder string) RelayConfig {
	return RelayConfig{
		Holder: holder, Interval: 500 * time.Millisecond, Batch: 500, LeaseTTL: 10 * time.Second,
		PublishTimeout: 5 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second,
	}
}

// Validate checks the config.
func (c RelayConfig) Validate() error {
	switch {
	case c.Holder == "":
		return errors.New("trip relay: holder required")
	case c.Interval <= 0 || c.LeaseTTL <= 0 || c.PublishTimeout <= 0 || c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return errors.New("trip relay: durations must be positive (and MaxBackoff >= MinBackoff)")
	case c.Batch < 1:
		return errors.New("trip relay: batch must be at least 1")
	}
	return nil
}

// Relay publishes the store's outbox to the trip event stream: in order
// per trip, at least once, with the event id as JetStream's message id.
//
// One relay runs at a time across instances: each round it holds the
// store's relay lease (a row, renewed every LeaseTTL/3; CockroachDB has no
// advisory locks). The lease is for efficiency, not correctness: when two
// relays overlap (a paused holder whose lease expired), both publish the
// same events with the same message ids and JetStream keeps one, and each
// publishes a trip's next event only after the previous one was
// acknowledged, so order per trip holds either way.
type Relay struct {
	outbox store.Outbox
	js     jetstream.JetStream
	cfg    RelayConfig
	log    *slog.Logger

	published, duplicates, failures atomic.Int64
}

// RelayStats counts what a Relay did.
type RelayStats struct {
	Published  int64 // acknowledged as new by JetStream
	Duplicates int64 // acknowledged as duplicates (published before)
	Failures   int64 // failed rounds
}

// NewRelay returns a relay of outbox to js. Run runs it.
func NewRelay(outbox store.Outbox, js jetstream.JetStream, cfg RelayConfig, log *slog.Logger) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Relay{outbox: outbox, js: js, cfg: cfg, log: log}, nil
}

// Stats returns the counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Published: r.published.Load(), Duplicates: r.duplicates.Load(), Failures: r.failures.Load()}
}

// RelayNudgeSubject is the core NATS subject (outside the stream's
// subjects) a trip instance publishes an empty message to after it commits
// events (NudgeRelay): the relay holding the lease reads the outbox at once
// instead of at its next poll.
const RelayNudgeSubject = "hexride.relay.v1.nudge"

// NudgeRelay returns the hook a store calls after committing events
// (sqlstore.WithOutboxNotify, memstore.WithOutboxNotify): it tells the
// relays over nc. It never blocks (NATS buffers the publish); a nudge
// lost costs one RelayConfig.Interval of latency.
func NudgeRelay(nc *nats.Conn) func() {
	return func() { _ = nc.Publish(RelayNudgeSubject, nil) }
}

// Run relays until ctx ends. It creates the stream if it is missing.
func (r *Relay) Run(ctx context.Context) {
	var (
		backoff  time.Duration
		renewAt  time.Time
		held     bool
		streamOK bool
	)
	// Nudges coalesce: one pending wake-up covers any number of commits.
	wake := make(chan struct{}, 1)
	if sub, err := r.js.Conn().Subscribe(RelayNudgeSubject, func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default:
		}
	}); err != nil {
		r.log.Warn("trip relay: cannot hear nudges; polling only", "err", err, "interval", r.cfg.Interval)
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	for {
		nudgeable := false
		wait := r.cfg.Interval
		err := func() error {
			if !streamOK {
				if _, err := EnsureStream(ctx, r.js, StreamConfig(jetstream.FileStorage)); err != nil {
					return err
				}
				streamOK = true
			}
			if now := r.cfg.Now(); !held || !now.Before(renewAt) {
				ok, err := r.outbox.AcquireRelayLease(ctx, r.cfg.Holder, r.cfg.LeaseTTL)
				if err != nil {
					held = false
					return err
				}
				if ok != held {
					r.log.Info("trip relay: lease", "held", ok, "holder", r.cfg.Holder)
				}
				held, renewAt = ok, now.Add(r.cfg.LeaseTTL/3)
			}
			if !held {
				wait = r.cfg.LeaseTTL / 3
				return nil
			}
			nudgeable = true
			n, err := r.RelayOnce(ctx)
			if err == nil && n == r.cfg.Batch {
				wait = 0 // more are pending
			}
			return err
		}()
		if err != nil && ctx.Err() == nil {
			r.failures.Add(1)
			backoff = min(max(2*backoff, r.cfg.MinBackoff), r.cfg.MaxBackoff)
			wait = backoff
			r.log.Warn("trip relay: round failed", "err", err, "retry_in", backoff)
		} else if err == nil {
			backoff = 0
		}
		if wait == 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if !nudgeable || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-r.cfg.After(wait):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.After(wait):
		case <-wake:
		}
	}
}

// RelayOnce publishes one batch of pending events and marks those JetStream
// acknowledged; it returns how many it read. A trip's events are published
// in waves: its next event only after the previous one was acknowledged,
// and none after one failed (it is retried, in order, next round).
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	evs, err := r.outbox.PendingEvents(ctx, r.cfg.Batch)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	byTrip := map[uuid.UUID][]store.Event{}
	var trips []uuid.UUID
	for _, ev := range evs {
		if _, ok := byTrip[ev.TripID]; !ok {
			trips = append(trips, ev.TripID)
		}
		byTrip[ev.TripID] = append(byTrip[ev.TripID], ev)
	}
	for _, id := range trips {
		slices.SortFunc(byTrip[id], func(a, b store.Event) int { return cmp.Compare(a.Version, b.Version) })
	}
	type inflight struct {
		ev store.Event
		f  jetstream.PubAckFuture
	}
	var (
		done     []store.Event
		failed   = map[uuid.UUID]bool{}
		firstErr error
	)
	fail := func(trip uuid.UUID, err error) {
		failed[trip] = true
		if firstErr == nil {
			firstErr = err
		}
	}
	now := r.cfg.Now()
	for wave := 0; ; wave++ {
		var batch []inflight
		for _, id := range trips {
			evs := byTrip[id]
			if wave >= len(evs) || failed[id] {
				continue
			}
			msg, err := streamMsg(evs[wave], now)
			if err != nil {
				fail(id, err)
				continue
			}
			f, err := r.js.PublishMsgAsync(msg)
			if err != nil {
				fail(id, fmt.Errorf("publish: %w", err))
				continue
			}
			batch = append(batch, inflight{evs[wave], f})
		}
		if len(batch) == 0 {
			break
		}
		timeout := time.NewTimer(r.cfg.PublishTimeout)
		for _, p := range batch {
			select {
			case ack := <-p.f.Ok():
				done = append(done, p.ev)
				if ack.Duplicate {
					r.duplicates.Add(1)
				} else {
					r.published.Add(1)
				}
			case err := <-p.f.Err():
				fail(p.ev.TripID, fmt.Errorf("publish %s: %w", p.ev.ID, err))
			case <-timeout.C:
				fail(p.ev.TripID, fmt.Errorf("publish %s: no acknowledgement in %v", p.ev.ID, r.cfg.PublishTimeout))
				timeout.Reset(0) // the rest of this wave is as late
			case <-ctx.Done():
				timeout.Stop()
				return len(evs), ctx.Err()
			}
		}
		timeout.Stop()
	}
	if err := r.outbox.MarkRelayed(ctx, done); err != nil {
		// Published but still pending: they go out again next round and
		// JetStream drops them as duplicates (within DuplicateWindow).
		return len(evs), err
	}
	return len(evs), firstErr
}

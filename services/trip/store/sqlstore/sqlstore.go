// Package sqlstore is the production trip store: CockroachDB in production,
// PostgreSQL 15 in tests, one portable SQL dialect for both (pgx v5 pool).
//
// Every change runs in one serializable transaction retried as a whole on
// SQLSTATE 40001 (infra/postgres.DB.InTx): the idempotency lookup, the trip
// row read FOR UPDATE, the state machine, the conditional UPDATE, the
// trip_events row and the idempotency record commit together. The
// invariants do not depend on this code being right: the database enforces
// one pickup and one ride in progress per driver (two partial unique
// indexes), one event per trip version and one result per idempotency key
// (unique constraints).
package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

var (
	_ store.Store  = (*Store)(nil)
	_ store.Outbox = (*Store)(nil)
)

const (
	// idxDriverPickup and idxDriverRide (base migration 6) hold a driver to
	// one trip in a pickup state and one IN_PROGRESS; a violation of either
	// is tripapi.ErrDriverBusy.
	idxDriverPickup = "trips_one_pickup_per_driver"
	idxDriverRide   = "trips_one_ride_per_driver"
	idxIdemKey      = "trip_idempotency_keys_pkey"
	idxTripVersion  = "trip_events_trip_version"
	// idxRegionTripVersion replaces idxTripVersion on CockroachDB
	// (migration 3): the same constraint, led by the region.
	idxRegionTripVersion = "trip_events_region_trip_version"
)

// Option configures a Store.
type Option func(*config)

type config struct {
	txOpts      []postgres.Option
	rules       lifecycle.Rules
	autoMigrate bool
	migrateOpts []MigrateOption
	outbox      bool
	notify      func()
}

// WithOutboxNotify calls notify after each committed change that wrote to
// the outbox: the relay's wake-up, so it need not poll often (it must not
// block).
func WithOutboxNotify(notify func()) Option { return func(c *config) { c.notify = notify } }

// WithOutbox makes every change also write its event to the outbox
// (trip_event_outbox) in the same transaction, for the relay to publish
// (store.Outbox). Turn it on only where a relay runs (hexride serve
// --nats), on every instance sharing the database, or the outbox grows.
func WithOutbox() Option { return func(c *config) { c.outbox = true } }

// WithTxOptions passes options to the transaction runner (retry hooks,
// retry limits, fault injection for tests).
func WithTxOptions(opts ...postgres.Option) Option {
	return func(c *config) { c.txOpts = append(c.txOpts, opts...) }
}

// WithRules sets the fare rules of the state machine.
func WithRules(r lifecycle.Rules) Option { return func(c *config) { c.rules = r } }

// WithAutoMigrate makes Open and New run Migrate first (for `hexride dev`
// against a local database; production runs `hexride migrate`).
func WithAutoMigrate(opts ...MigrateOption) Option {
	return func(c *config) { c.autoMigrate = true; c.migrateOpts = opts }
}

// Store is the SQL trip store.
type Store struct {
	db       *postgres.DB
	pool     *pgxpool.Pool
	ownsPool bool
	rules    lifecycle.Rules
	outbox   bool
	notify   func()
}

// Open connects to dsn and returns a Store that owns its pool (Close closes
// it).
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open: %w", err)
	}
	s, err := New(ctx, pool, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// New returns a Store over pool, which the caller keeps owning.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	cfg := config{rules: lifecycle.DefaultRules}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.autoMigrate {
		if _, err := Migrate(ctx, pool, cfg.migrateOpts...); err != nil {
			return nil, err
		}
	}
	db, err := postgres.New(ctx, pool, cfg.txOpts...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	return &Store{db: db, pool: pool, rules: cfg.rules, outbox: cfg.outbox, notify: cfg.notify}, nil
}

// Close closes the pool if Open made it.
func (s *Store) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Pool returns the pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// TxStats returns the transaction counters (attempts, retries, commits).
func (s *Store) TxStats() postgres.Stats { return s.db.Stats() }

// Dialect returns the server's dialect.
func (s *Store) Dialect() postgres.Dialect { return s.db.Dialect() }

const tripCols = `id, region, rider_id, driver_id, state, product, pickup_lat, pickup_lng,
	dropoff_lat, dropoff_lng, quote_id, fare_currency, quoted_fare_minor, final_fare_minor,
	cancelled_by, end_reason, version, created_at, updated_at, assigned_at, arrived_at,
	started_at, completed_at, ended_at, rating`

const eventCols = `id, trip_id, event, from_state, to_state, actor, actor_id, reason, driver_id,
	version, at, trip_after`

func scanTrip(row pgx.Row) (store.Trip, error) {
	var (
		t                                       store.Trip
		driverID, cancelledBy                   *string
		finalFare                               *int64
		assigned, arrived, started, done, ended *time.Time
		state                                   string
	)
	err := row.Scan(&t.ID, &t.Region, &t.RiderID, &driverID, &state, &t.Product,
		&t.Pickup.Lat, &t.Pickup.Lng, &t.Dropoff.Lat, &t.Dropoff.Lng, &t.QuoteID,
		&t.QuotedFare.Currency, &t.QuotedFare.Minor, &finalFare, &cancelledBy, &t.EndReason,
		&t.Version, &t.CreatedAt, &t.UpdatedAt, &assigned, &arrived, &started, &done, &ended, &t.Rating)
	if err != nil {
		return store.Trip{}, err
	}
	t.State = lifecycle.State(state)
	t.DriverID = deref(driverID)
	t.CancelledBy = lifecycle.Actor(deref(cancelledBy))
	if finalFare != nil {
		t.FinalFare = lifecycle.Money{Minor: *finalFare, Currency: t.QuotedFare.Currency}
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.UpdatedAt = t.UpdatedAt.UTC()
	t.AssignedAt, t.ArrivedAt, t.StartedAt, t.CompletedAt, t.EndedAt = utc(assigned), utc(arrived), utc(started), utc(done), utc(ended)
	return t, nil
}

func scanEvent(row pgx.Row) (store.Event, error) {
	var (
		ev             store.Event
		from, driverID *string
		typ, to, actor string
		snapshot       []byte
	)
	err := row.Scan(&ev.ID, &ev.TripID, &typ, &from, &to, &actor, &ev.ActorID, &ev.Reason, &driverID,
		&ev.Version, &ev.At, &snapshot)
	if err != nil {
		return store.Event{}, err
	}
	ev.Type, ev.From, ev.To, ev.Actor = lifecycle.Event(typ), lifecycle.State(deref(from)), lifecycle.State(to), lifecycle.Actor(actor)
	ev.DriverID = deref(driverID)
	ev.At = ev.At.UTC()
	if err := json.Unmarshal(snapshot, &ev.Trip); err != nil {
		return store.Event{}, fmt.Errorf("decode trip_after of event %s: %w", ev.ID, err)
	}
	return ev, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func utc(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Idempotency keys are homed with their trip: the key's region is the
// trip's (for a create, the region its pickup is homed in; for a change,
// the changed trip's, read in the same statement). On CockroachDB the
// region is the row's home, so recording a key is a local write with no
// cross-region uniqueness check. The same key sent for trips in two
// regions is two keys.
const (
	// idemOfCreate finds a create key in the new trip's region ($3).
	idemOfCreate = `k.region = $3 AND k.scope = $1 AND k.key = $2`
	// idemOfChange finds a change key in the region of trip $3.
	idemOfChange = `k.region = (SELECT region FROM trips WHERE id = $3) AND k.scope = $1 AND k.key = $2`
)

// idemLookup reads the transaction's time and the idempotency record, if
// any, in one round trip; match is idemOfCreate or idemOfChange, with
// regionOrTrip its $3.
func idemLookup(ctx context.Context, tx pgx.Tx, match, scope, key string, regionOrTrip any) (now time.Time, hash string, tripID, eventID uuid.UUID, found bool, err error) {
	var h *string
	var tid, eid *uuid.UUID
	err = tx.QueryRow(ctx, `
		SELECT now(), k.request_hash, k.trip_id, k.event_id
		FROM (SELECT 1) AS one
		LEFT JOIN trip_idempotency_keys AS k ON `+match, scope, key, regionOrTrip).Scan(&now, &h, &tid, &eid)
	if err != nil {
		return time.Time{}, "", uuid.Nil, uuid.Nil, false, fmt.Errorf("idempotency lookup: %w", err)
	}
	if h == nil {
		return now.UTC(), "", uuid.Nil, uuid.Nil, false, nil
	}
	return now.UTC(), *h, *tid, *eid, true, nil
}

func insertIdem(ctx context.Context, tx pgx.Tx, region, scope, key, hash string, tripID, eventID uuid.UUID, now time.Time) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO trip_idempotency_keys (region, scope, key, request_hash, trip_id, event_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, region, scope, key, hash, tripID, eventID, now)
	if postgres.IsUniqueViolation(err, idxIdemKey) {
		// A concurrent transaction recorded the key first: run again, the
		// lookup will find it and return its result.
		return postgres.Retryable(fmt.Errorf("idempotency key %s/%q taken concurrently: %w", scope, key, err))
	}
	if err != nil {
		return fmt.Errorf("record idempotency key: %w", err)
	}
	return nil
}

// insertEvent appends ev and sets its ID, which the database generates
// (gen_random_uuid(): CockroachDB needs no cross-region uniqueness check
// for it).
func (s *Store) insertEvent(ctx context.Context, tx pgx.Tx, ev *store.Event) error {
	snapshot, err := json.Marshal(ev.Trip)
	if err != nil {
		return fmt.Errorf("encode trip snapshot: %w", err)
	}
	err = tx.QueryRow(ctx, `
		INSERT INTO trip_events (trip_id, region, version, event, from_state, to_state, actor,
			actor_id, reason, driver_id, at, trip_after)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		RETURNING id`,
		ev.TripID, ev.Trip.Region, ev.Version, string(ev.Type), nullString(string(ev.From)), string(ev.To),
		string(ev.Actor), ev.ActorID, ev.Reason, nullString(ev.DriverID), ev.At, snapshot).Scan(&ev.ID)
	if postgres.IsUniqueViolation(err, idxTripVersion) || postgres.IsUniqueViolation(err, idxRegionTripVersion) {
		return postgres.Retryable(fmt.Errorf("trip %s version %d written concurrently: %w", ev.TripID, ev.Version, err))
	}
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	if s.outbox {
		_, err = tx.Exec(ctx, `
			INSERT INTO trip_event_outbox (event_id, trip_id, region, version, at) VALUES ($1, $2, $3, $4, $5)`,
			ev.ID, ev.TripID, ev.Trip.Region, ev.Version, ev.At)
		if err != nil {
			return fmt.Errorf("append event to the outbox: %w", err)
		}
	}
	return nil
}

// Now implements store.Store: the database's clock.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("now: %w", err)
	}
	return now.UTC(), nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, req store.CreateTrip) (store.Trip, bool, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, false, err
	}
	hash := req.Hash()
	var (
		out     store.Trip
		created bool
	)
	err := s.db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		now, gotHash, tripID, _, found, err := idemLookup(ctx, tx, idemOfCreate, store.ScopeCreate, req.IdempotencyKey, req.Region)
		if err != nil {
			return err
		}
		if found {
			if gotHash != hash {
				return fmt.Errorf("%w: create key %q", tripapi.ErrIdempotencyKeyReused, req.IdempotencyKey)
			}
			out, err = getTrip(ctx, tx, tripID, false)
			created = false
			return err
		}
		t := store.Trip{
			Product: req.Product, Pickup: req.Pickup, Dropoff: req.Dropoff,
			QuoteID: req.QuoteID, Region: req.Region, CreatedAt: now, UpdatedAt: now,
			Trip: lifecycle.Trip{State: lifecycle.StateRequested, RiderID: req.RiderID, QuotedFare: req.QuotedFare, Version: 1},
		}
		// The id is the database's (gen_random_uuid()): on CockroachDB a
		// generated UUID needs no cross-region uniqueness check.
		err = tx.QueryRow(ctx, `
			INSERT INTO trips (region, rider_id, state, product, pickup_lat, pickup_lng,
				dropoff_lat, dropoff_lng, quote_id, fare_currency, quoted_fare_minor, version,
				created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
			RETURNING id`,
			t.Region, t.RiderID, string(t.State), t.Product, t.Pickup.Lat, t.Pickup.Lng,
			t.Dropoff.Lat, t.Dropoff.Lng, t.QuoteID, t.QuotedFare.Currency, t.QuotedFare.Minor, t.Version, now).Scan(&t.ID)
		if err != nil {
			return fmt.Errorf("insert trip: %w", err)
		}
		ev := store.Event{
			TripID: t.ID, Type: lifecycle.EventCreate, To: t.State,
			Actor: lifecycle.ActorRider, ActorID: t.RiderID, Version: 1, At: now, Trip: t,
		}
		if err := s.insertEvent(ctx, tx, &ev); err != nil {
			return err
		}
		if err := insertIdem(ctx, tx, t.Region, store.ScopeCreate, req.IdempotencyKey, hash, t.ID, ev.ID, now); err != nil {
			return err
		}
		out, created = t, true
		return nil
	})
	if err != nil {
		if t, ok := s.readBackCreate(ctx, req.Region, req.IdempotencyKey, hash, err); ok {
			s.committed(true)
			return t, true, nil
		}
		return store.Trip{}, false, fmt.Errorf("sqlstore: create: %w", err)
	}
	s.committed(created)
	return out, created, nil
}

// committed is called after a transaction committed; wrote says whether
// it appended an event (so, with the outbox on, gave the relay work).
func (s *Store) committed(wrote bool) {
	if wrote && s.outbox && s.notify != nil {
		s.notify()
	}
}

// readBack resolves a commit whose outcome is unknown (the connection was
// lost during COMMIT) by looking for the idempotency record the
// transaction wrote. Found with the same request hash, the transaction
// committed and its result is the answer. Not found proves nothing (the
// server may still be finishing the COMMIT), so the original error stands
// and the caller retries with the same key.
func (s *Store) readBack(ctx context.Context, match, scope, key string, regionOrTrip any, hash string, err error) (tripID, eventID uuid.UUID, ok bool) {
	if !errors.Is(err, postgres.ErrCommitUnknown) || ctx.Err() != nil {
		return uuid.Nil, uuid.Nil, false
	}
	var gotHash string
	qerr := s.pool.QueryRow(ctx, `SELECT k.request_hash, k.trip_id, k.event_id FROM trip_idempotency_keys AS k WHERE `+match,
		scope, key, regionOrTrip).Scan(&gotHash, &tripID, &eventID)
	if qerr != nil || gotHash != hash {
		return uuid.Nil, uuid.Nil, false
	}
	return tripID, eventID, true
}

func (s *Store) readBackCreate(ctx context.Context, region, key, hash string, err error) (store.Trip, bool) {
	tripID, _, ok := s.readBack(ctx, idemOfCreate, store.ScopeCreate, key, region, hash, err)
	if !ok {
		return store.Trip{}, false
	}
	t, gerr := getTrip(ctx, s.pool, tripID, false)
	return t, gerr == nil
}

func (s *Store) readBackChange(ctx context.Context, scope, key string, tripID uuid.UUID, hash string, err error) (store.Trip, store.Event, bool) {
	_, eventID, ok := s.readBack(ctx, idemOfChange, scope, key, tripID, hash, err)
	if !ok {
		return store.Trip{}, store.Event{}, false
	}
	ev, qerr := scanEvent(s.pool.QueryRow(ctx, `SELECT `+eventCols+` FROM trip_events WHERE id = $1`, eventID))
	if qerr != nil {
		return store.Trip{}, store.Event{}, false
	}
	return ev.Trip, ev, true
}

// AssignDriver implements store.Store.
func (s *Store) AssignDriver(ctx context.Context, req store.AssignDriver) (store.Trip, store.Event, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, store.Event{}, err
	}
	trip, ev, err := s.change(ctx, store.ScopeAssign, req.IdempotencyKey, req.Hash(), req.TripID,
		lifecycle.ActorSystem, "", "",
		func(ctx context.Context, tx pgx.Tx, t store.Trip, now time.Time) (lifecycle.Trip, lifecycle.Event, error) {
			if t.State != lifecycle.StateRequested {
				return t.Trip, "", store.NotRequested(t.ID, t.State, nil)
			}
			// A riding driver gets a pickup only as that ride's next trip.
			// Serializable: a ride starting concurrently conflicts with
			// this read, and one transaction retries.
			var ride uuid.UUID
			err := tx.QueryRow(ctx, `SELECT id FROM trips WHERE driver_id = $1 AND state = 'IN_PROGRESS'`, req.DriverID).Scan(&ride)
			switch {
			case err == nil && ride != req.AfterTrip:
				return t.Trip, "", req.RidingElsewhere(ride)
			case err != nil && !errors.Is(err, pgx.ErrNoRows):
				return t.Trip, "", fmt.Errorf("read the driver's ride: %w", err)
			}
			next, ev, err := s.rules.Apply(t.Trip, req.Command(now))
			if err != nil {
				return t.Trip, "", store.NotRequested(t.ID, t.State, err)
			}
			return next, ev, nil
		})
	if err != nil {
		return store.Trip{}, store.Event{}, fmt.Errorf("sqlstore: assign driver: %w", err)
	}
	return trip, ev, nil
}

// Transition implements store.Store.
func (s *Store) Transition(ctx context.Context, req store.Transition) (store.Trip, store.Event, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, store.Event{}, err
	}
	trip, ev, err := s.change(ctx, store.ScopeTransition, req.IdempotencyKey, req.Hash(), req.TripID,
		req.Actor, req.ActorID, req.Reason,
		func(_ context.Context, _ pgx.Tx, t store.Trip, now time.Time) (lifecycle.Trip, lifecycle.Event, error) {
			return req.Apply(s.rules, t, now)
		})
	if err != nil {
		return store.Trip{}, store.Event{}, fmt.Errorf("sqlstore: transition: %w", err)
	}
	return trip, ev, nil
}

func (s *Store) change(ctx context.Context, scope, key, hash string, id uuid.UUID,
	actor lifecycle.Actor, actorID, reason string,
	apply func(context.Context, pgx.Tx, store.Trip, time.Time) (lifecycle.Trip, lifecycle.Event, error),
) (store.Trip, store.Event, error) {
	var (
		outTrip store.Trip
		outEv   store.Event
		wrote   bool
	)
	err := s.db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		wrote = false
		now, gotHash, _, eventID, found, err := idemLookup(ctx, tx, idemOfChange, scope, key, id)
		if err != nil {
			return err
		}
		if found {
			if gotHash != hash {
				return fmt.Errorf("%w: %s key %q", tripapi.ErrIdempotencyKeyReused, scope, key)
			}
			outEv, err = scanEvent(tx.QueryRow(ctx, `SELECT `+eventCols+` FROM trip_events WHERE id = $1`, eventID))
			if err != nil {
				return fmt.Errorf("load original event: %w", err)
			}
			outTrip = outEv.Trip
			return nil
		}
		cur, err := getTrip(ctx, tx, id, true)
		if err != nil {
			return err
		}
		next, evType, err := apply(ctx, tx, cur, now)
		if err != nil {
			return err
		}
		t := cur
		t.Trip = next
		t.UpdatedAt = now
		if err := updateTrip(ctx, tx, cur, t); err != nil {
			return err
		}
		driver := t.DriverID
		if driver == "" {
			driver = cur.DriverID
		}
		ev := store.Event{
			TripID: id, Type: evType, From: cur.State, To: t.State,
			Actor: actor, ActorID: actorID, Reason: reason, DriverID: driver,
			Version: t.Version, At: now, Trip: t,
		}
		if err := s.insertEvent(ctx, tx, &ev); err != nil {
			return err
		}
		if err := insertIdem(ctx, tx, t.Region, scope, key, hash, id, ev.ID, now); err != nil {
			return err
		}
		outTrip, outEv, wrote = t, ev, true
		return nil
	})
	if err != nil {
		if t, ev, ok := s.readBackChange(ctx, scope, key, id, hash, err); ok {
			s.committed(true)
			return t, ev, nil
		}
		return outTrip, outEv, err
	}
	s.committed(wrote)
	return outTrip, outEv, nil
}

// updateTrip writes next over cur as a compare-and-set on (id, version,
// state): the UPDATE matches nothing if another transaction changed the trip.
func updateTrip(ctx context.Context, tx pgx.Tx, cur, next store.Trip) error {
	var finalFare *int64
	if !next.FinalFare.IsZero() {
		finalFare = &next.FinalFare.Minor
	}
	tag, err := tx.Exec(ctx, `
		UPDATE trips SET state = $4, driver_id = $5, final_fare_minor = $6, cancelled_by = $7,
			end_reason = $8, version = $9, updated_at = $10, assigned_at = $11, arrived_at = $12,
			started_at = $13, completed_at = $14, ended_at = $15
		WHERE id = $1 AND version = $2 AND state = $3`,
		cur.ID, cur.Version, string(cur.State),
		string(next.State), nullString(next.DriverID), finalFare, nullString(string(next.CancelledBy)),
		next.EndReason, next.Version, next.UpdatedAt, nullTime(next.AssignedAt), nullTime(next.ArrivedAt),
		nullTime(next.StartedAt), nullTime(next.CompletedAt), nullTime(next.EndedAt))
	if postgres.IsUniqueViolation(err, idxDriverPickup) || postgres.IsUniqueViolation(err, idxDriverRide) {
		return fmt.Errorf("%w: driver %s: %w", tripapi.ErrDriverBusy, next.DriverID, err)
	}
	if err != nil {
		return fmt.Errorf("update trip: %w", err)
	}
	if tag.RowsAffected() != 1 {
		// Cannot happen under FOR UPDATE in a serializable transaction; if
		// it does, the trip moved under us: run the whole thing again.
		return postgres.Retryable(fmt.Errorf("trip %s changed concurrently", cur.ID))
	}
	return nil
}

func getTrip(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id uuid.UUID, forUpdate bool) (store.Trip, error) {
	sql := `SELECT ` + tripCols + ` FROM trips WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	t, err := scanTrip(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Trip{}, fmt.Errorf("%w: %s", tripapi.ErrNotFound, id)
	}
	if err != nil {
		return store.Trip{}, fmt.Errorf("get trip: %w", err)
	}
	return t, nil
}

// Rate implements store.Store.
func (s *Store) Rate(ctx context.Context, req store.Rate) (store.Trip, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, err
	}
	var out store.Trip
	err := s.db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		t, err := getTrip(ctx, tx, req.TripID, true)
		if err != nil {
			return err
		}
		if err := store.CheckRate(t, req); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE trips SET rating = $2, rating_comment = $3 WHERE id = $1`,
			req.TripID, req.Stars, req.Comment); err != nil {
			return fmt.Errorf("rate: %w", err)
		}
		t.Rating = req.Stars
		out = t
		return nil
	})
	if err != nil {
		return store.Trip{}, fmt.Errorf("sqlstore: rate: %w", err)
	}
	return out, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (t store.Trip, err error) {
	err = s.db.Admit(ctx, func(ctx context.Context) (err error) {
		t, err = getTrip(ctx, s.pool, id, false)
		return err
	})
	if err != nil {
		return store.Trip{}, fmt.Errorf("sqlstore: %w", err)
	}
	return t, nil
}

// from returns the FROM clause for table, with a follower read on
// CockroachDB when stale reads are acceptable.
func (s *Store) from(table string, stale bool) string {
	if stale && s.db.Dialect() == postgres.CockroachDB {
		return table + " AS OF SYSTEM TIME follower_read_timestamp()"
	}
	return table
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) (store.Page, error) {
	cur, hasCur, err := store.DecodeCursor(f.PageToken)
	if err != nil {
		return store.Page{}, err
	}
	size := f.EffectivePageSize()
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY("+arg(states)+"::TEXT[])")
	}
	if f.RiderID != "" {
		where = append(where, "rider_id = "+arg(f.RiderID))
	}
	if f.DriverID != "" {
		where = append(where, "driver_id = "+arg(f.DriverID))
	}
	if !f.CreatedAfter.IsZero() {
		where = append(where, "created_at >= "+arg(f.CreatedAfter))
	}
	if !f.UpdatedBefore.IsZero() {
		where = append(where, "updated_at < "+arg(f.UpdatedBefore))
	}
	if !f.CreatedBefore.IsZero() {
		where = append(where, "created_at < "+arg(f.CreatedBefore))
	}
	if len(f.Regions) > 0 {
		where = append(where, "region = ANY("+arg(f.Regions)+"::TEXT[])")
	}
	if hasCur {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(cur.CreatedAt), arg(cur.ID)))
	}
	sql := `SELECT ` + tripCols + ` FROM ` + s.from("trips", f.AllowStale)
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY created_at DESC, id DESC LIMIT ` + arg(size+1)
	trips, err := s.queryTrips(ctx, sql, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("sqlstore: list: %w", err)
	}
	var p store.Page
	if len(trips) > size {
		trips = trips[:size]
		last := trips[size-1]
		p.NextPageToken = store.EncodeCursor(store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	p.Trips = trips
	return p, nil
}

func (s *Store) queryTrips(ctx context.Context, sql string, args ...any) ([]store.Trip, error) {
	return query(ctx, s, scanTrip, sql, args...)
}

func (s *Store) queryEvents(ctx context.Context, sql string, args ...any) ([]store.Event, error) {
	return query(ctx, s, scanEvent, sql, args...)
}

// query runs a read through the admission gate and scans every row.
func query[T any](ctx context.Context, s *Store, scan func(pgx.Row) (T, error), sql string, args ...any) (out []T, err error) {
	err = s.db.Admit(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// History implements store.Store.
func (s *Store) History(ctx context.Context, id uuid.UUID) ([]store.Event, error) {
	evs, err := s.queryEvents(ctx, `SELECT `+eventCols+` FROM trip_events WHERE trip_id = $1 ORDER BY version`, id)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: history: %w", err)
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("sqlstore: history: %w: %s", tripapi.ErrNotFound, id)
	}
	return evs, nil
}

// EventRefs implements store.Store. It always reads current data (never a
// follower read): watchers need changes within a second.
func (s *Store) EventRefs(ctx context.Context, q store.EventQuery) ([]store.EventRef, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	// An index-only scan of trip_events_at (at, id).
	refs, err := query(ctx, s, func(row pgx.Row) (r store.EventRef, err error) {
		err = row.Scan(&r.ID, &r.At)
		r.At = r.At.UTC()
		return r, err
	}, `SELECT id, at FROM trip_events WHERE at >= $1 ORDER BY at, id LIMIT $2`, q.Since, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: event refs: %w", err)
	}
	return refs, nil
}

// EventsByID implements store.Store.
func (s *Store) EventsByID(ctx context.Context, ids []uuid.UUID) ([]store.Event, error) {
	evs, err := s.queryEvents(ctx, `SELECT `+eventCols+` FROM trip_events WHERE id = ANY($1) ORDER BY at, id`, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: events by id: %w", err)
	}
	return evs, nil
}

// relayLease is the one relay lease's name.
const relayLease = "trip_events"

// PendingEvents implements store.Outbox.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	evs, err := s.queryEvents(ctx, `SELECT `+prefixed("e.", eventCols)+`
		FROM (SELECT event_id, at FROM trip_event_outbox ORDER BY at, event_id LIMIT $1) AS o
		JOIN trip_events AS e ON e.id = o.event_id
		ORDER BY o.at, o.event_id`, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: pending events: %w", err)
	}
	return evs, nil
}

// MarkRelayed implements store.Outbox.
func (s *Store) MarkRelayed(ctx context.Context, evs []store.Event) error {
	if len(evs) == 0 {
		return nil
	}
	regions, ids := make([]string, len(evs)), make([]uuid.UUID, len(evs))
	for i, ev := range evs {
		regions[i], ids[i] = ev.Trip.Region, ev.ID
	}
	err := s.db.Admit(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `DELETE FROM trip_event_outbox
			WHERE (region, event_id) IN (SELECT * FROM unnest($1::TEXT[], $2::UUID[]))`, regions, ids)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: mark relayed: %w", err)
	}
	return nil
}

// AcquireRelayLease implements store.Outbox: one upsert that takes the
// lease when it is free or expired and renews it for its holder.
func (s *Store) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := s.db.Admit(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `
			INSERT INTO trip_relay_lease (name, holder, expires_at) VALUES ($1, $2, now() + $3::INTERVAL)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
				WHERE trip_relay_lease.holder = excluded.holder OR trip_relay_lease.expires_at < now()
			RETURNING holder`, relayLease, holder, fmt.Sprintf("%d microseconds", ttl.Microseconds())).Scan(&got)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // held by another, not expired
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("sqlstore: relay lease: %w", err)
	}
	return got == holder, nil
}

func prefixed(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

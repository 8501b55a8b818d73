// Package memstore is the embedded in-memory trip store for `hexride dev`
// and unit tests. It keeps every guarantee of store.Store (one mutex makes
// every change atomic and serial); the event log keeps the most recent
// events only (see WithEventLimit), trips and idempotency keys are kept for
// the life of the process.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

var (
	_ store.Store  = (*Store)(nil)
	_ store.Outbox = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithEventLimit bounds the event log kept for Events and History
// (default 100000 events; older ones are dropped).
func WithEventLimit(n int) Option { return func(s *Store) { s.eventLimit = n } }

// WithOutbox records every appended event as pending for a relay
// (store.Outbox). Turn it on only where a relay runs, or the outbox grows.
func WithOutbox() Option { return func(s *Store) { s.outbox = true } }

// WithOutboxNotify calls notify after each change that added to the
// outbox (the relay's wake-up; it must not block).
func WithOutboxNotify(notify func()) Option { return func(s *Store) { s.notify = notify } }

// WithRules sets the fare rules of the state machine.
func WithRules(r lifecycle.Rules) Option { return func(s *Store) { s.rules = r } }

// idemKey is an idempotency key as the SQL store keys it: within the
// region of its trip.
type idemKey struct{ region, scope, key string }

type idemRecord struct {
	hash    string
	tripID  uuid.UUID
	eventID uuid.UUID
	result  store.Event // for assign and transition
}

// Store is an in-memory store.Store.
type Store struct {
	now        func() time.Time
	eventLimit int
	rules      lifecycle.Rules
	outbox     bool
	notify     func()

	mu       sync.Mutex
	trips    map[uuid.UUID]*store.Trip
	pickup   map[string]uuid.UUID // driver → its trip in a pickup state
	ride     map[string]uuid.UUID // driver → its trip IN_PROGRESS
	idem     map[idemKey]idemRecord
	events   []store.Event // in At order
	history  map[uuid.UUID][]store.Event
	lastTime time.Time
	pending  []store.Event // the outbox, in At order
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{
		now:        time.Now,
		eventLimit: 100_000,
		rules:      lifecycle.DefaultRules,
		trips:      map[uuid.UUID]*store.Trip{},
		pickup:     map[string]uuid.UUID{},
		ride:       map[string]uuid.UUID{},
		idem:       map[idemKey]idemRecord{},
		history:    map[uuid.UUID][]store.Event{},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// clock returns a strictly increasing microsecond-precision UTC time, so
// events are ordered by At as they are appended. Caller holds mu.
func (s *Store) clock() time.Time {
	t := s.now().UTC().Truncate(time.Microsecond)
	if !t.After(s.lastTime) {
		t = s.lastTime.Add(time.Microsecond)
	}
	s.lastTime = t
	return t
}

// Now implements store.Store.
func (s *Store) Now(ctx context.Context) (time.Time, error) {
	return s.now().UTC().Truncate(time.Microsecond), nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, req store.CreateTrip) (store.Trip, bool, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return store.Trip{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := idemKey{req.Region, store.ScopeCreate, req.IdempotencyKey}
	if rec, ok := s.idem[key]; ok {
		if rec.hash != req.Hash() {
			return store.Trip{}, false, fmt.Errorf("%w: create key %q", tripapi.ErrIdempotencyKeyReused, req.IdempotencyKey)
		}
		return *s.trips[rec.tripID], false, nil
	}
	now := s.clock()
	t := store.Trip{
		ID:        uuid.New(),
		Product:   req.Product,
		Pickup:    req.Pickup,
		Dropoff:   req.Dropoff,
		QuoteID:   req.QuoteID,
		Region:    req.Region,
		CreatedAt: now,
		UpdatedAt: now,
		Trip: lifecycle.Trip{
			State:      lifecycle.StateRequested,
			RiderID:    req.RiderID,
			QuotedFare: req.QuotedFare,
			Version:    1,
		},
	}
	ev := store.Event{
		ID: uuid.New(), TripID: t.ID, Type: lifecycle.EventCreate, To: lifecycle.StateRequested,
		Actor: lifecycle.ActorRider, ActorID: req.RiderID, Version: 1, At: now, Trip: t,
	}
	s.trips[t.ID] = &t
	s.idem[key] = idemRecord{hash: req.Hash(), tripID: t.ID, eventID: ev.ID}
	s.appendEvent(ev)
	return t, true, nil
}

// AssignDriver implements store.Store.
func (s *Store) AssignDriver(ctx context.Context, req store.AssignDriver) (store.Trip, store.Event, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, store.Event{}, err
	}
	return s.change(ctx, store.ScopeAssign, req.IdempotencyKey, req.Hash(), req.TripID, func(t store.Trip, at time.Time) (store.Trip, lifecycle.Event, error) {
		if t.State != lifecycle.StateRequested {
			return t, "", store.NotRequested(t.ID, t.State, nil)
		}
		// change refuses a driver who already holds a pickup.
		if ride, riding := s.ride[req.DriverID]; riding && ride != req.AfterTrip {
			return t, "", req.RidingElsewhere(ride)
		}
		next, ev, err := s.rules.Apply(t.Trip, req.Command(at))
		if err != nil {
			return t, "", store.NotRequested(t.ID, t.State, err)
		}
		t.Trip = next
		return t, ev, nil
	}, lifecycle.ActorSystem, "", "")
}

// Transition implements store.Store.
func (s *Store) Transition(ctx context.Context, req store.Transition) (store.Trip, store.Event, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, store.Event{}, err
	}
	return s.change(ctx, store.ScopeTransition, req.IdempotencyKey, req.Hash(), req.TripID, func(t store.Trip, at time.Time) (store.Trip, lifecycle.Event, error) {
		next, ev, err := req.Apply(s.rules, t, at)
		if err != nil {
			return t, "", err
		}
		t.Trip = next
		return t, ev, nil
	}, req.Actor, req.ActorID, req.Reason)
}

func (s *Store) change(ctx context.Context, scope, key, hash string, id uuid.UUID,
	apply func(store.Trip, time.Time) (store.Trip, lifecycle.Event, error),
	actor lifecycle.Actor, actorID, reason string,
) (store.Trip, store.Event, error) {
	if err := ctx.Err(); err != nil {
		return store.Trip{}, store.Event{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.trips[id]
	if !ok {
		return store.Trip{}, store.Event{}, fmt.Errorf("%w: %s", tripapi.ErrNotFound, id)
	}
	ik := idemKey{cur.Region, scope, key}
	if rec, ok := s.idem[ik]; ok {
		if rec.hash != hash {
			return store.Trip{}, store.Event{}, fmt.Errorf("%w: %s key %q", tripapi.ErrIdempotencyKeyReused, scope, key)
		}
		return rec.result.Trip, rec.result, nil
	}
	at := s.clock()
	next, evType, err := apply(*cur, at)
	if err != nil {
		return store.Trip{}, store.Event{}, err
	}
	// The driver invariant, checked before anything is written: one pickup
	// and one ride in progress per driver (an assign to a driver who holds a
	// pickup, or a start while the driver's other ride is in progress).
	if held := s.held(next.State); held != nil && next.DriverID != "" {
		if other, ok := held[next.DriverID]; ok && other != next.ID {
			return store.Trip{}, store.Event{}, fmt.Errorf("%w: driver %s is on trip %s", tripapi.ErrDriverBusy, next.DriverID, other)
		}
	}
	next.UpdatedAt = at
	if held := s.held(cur.State); held != nil && cur.DriverID != "" && held[cur.DriverID] == cur.ID {
		delete(held, cur.DriverID)
	}
	if held := s.held(next.State); held != nil && next.DriverID != "" {
		held[next.DriverID] = next.ID
	}
	driver := next.DriverID
	if driver == "" {
		driver = cur.DriverID
	}
	ev := store.Event{
		ID: uuid.New(), TripID: id, Type: evType, From: cur.State, To: next.State,
		Actor: actor, ActorID: actorID, Reason: reason, DriverID: driver,
		Version: next.Version, At: at, Trip: next,
	}
	*cur = next
	s.idem[ik] = idemRecord{hash: hash, tripID: id, eventID: ev.ID, result: ev}
	s.appendEvent(ev)
	return next, ev, nil
}

// held returns the drivers held by trips in state st: the pickup map for
// DRIVER_ASSIGNED and DRIVER_ARRIVED, the ride map for IN_PROGRESS, nil for
// states that hold no driver. Caller holds mu.
func (s *Store) held(st lifecycle.State) map[string]uuid.UUID {
	switch {
	case st.Pickup():
		return s.pickup
	case st == lifecycle.StateInProgress:
		return s.ride
	}
	return nil
}

// appendEvent records ev; caller holds mu.
func (s *Store) appendEvent(ev store.Event) {
	s.events = append(s.events, ev)
	s.history[ev.TripID] = append(s.history[ev.TripID], ev)
	if s.outbox {
		s.pending = append(s.pending, ev)
		if s.notify != nil {
			s.notify()
		}
	}
	if over := len(s.events) - s.eventLimit; over > 0 {
		for _, old := range s.events[:over] {
			h := s.history[old.TripID]
			if len(h) > 0 && h[0].ID == old.ID {
				s.history[old.TripID] = h[1:]
			}
		}
		s.events = slices.Clone(s.events[over:])
	}
}

// Rate implements store.Store.
func (s *Store) Rate(ctx context.Context, req store.Rate) (store.Trip, error) {
	if err := req.Validate(); err != nil {
		return store.Trip{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.trips[req.TripID]
	if !ok {
		return store.Trip{}, fmt.Errorf("%w: %s", tripapi.ErrNotFound, req.TripID)
	}
	if err := store.CheckRate(*t, req); err != nil {
		return store.Trip{}, err
	}
	t.Rating = req.Stars
	return *t, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id uuid.UUID) (store.Trip, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.trips[id]
	if !ok {
		return store.Trip{}, fmt.Errorf("%w: %s", tripapi.ErrNotFound, id)
	}
	return *t, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter) (store.Page, error) {
	cur, hasCur, err := store.DecodeCursor(f.PageToken)
	if err != nil {
		return store.Page{}, err
	}
	size := f.EffectivePageSize()
	s.mu.Lock()
	var all []store.Trip
	for _, t := range s.trips {
		if f.Matches(*t) && (!hasCur || cur.Before(*t)) {
			all = append(all, *t)
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		if !all[i].CreatedAt.Equal(all[j].CreatedAt) {
			return all[i].CreatedAt.After(all[j].CreatedAt)
		}
		return strings.Compare(all[i].ID.String(), all[j].ID.String()) > 0
	})
	var p store.Page
	if len(all) > size {
		all = all[:size]
		last := all[size-1]
		p.NextPageToken = store.EncodeCursor(store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	p.Trips = all
	return p, nil
}

// History implements store.Store.
func (s *Store) History(ctx context.Context, id uuid.UUID) ([]store.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.trips[id]; !ok {
		return nil, fmt.Errorf("%w: %s", tripapi.ErrNotFound, id)
	}
	return slices.Clone(s.history[id]), nil
}

// EventRefs implements store.Store.
func (s *Store) EventRefs(ctx context.Context, q store.EventQuery) ([]store.EventRef, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.events), func(i int) bool { return !s.events[i].At.Before(q.Since) })
	end := min(len(s.events), i+limit)
	refs := make([]store.EventRef, 0, end-i)
	for _, ev := range s.events[i:end] {
		refs = append(refs, store.EventRef{ID: ev.ID, At: ev.At})
	}
	return refs, nil
}

// EventsByID implements store.Store. Tailers ask for recent events, so
// the log is searched from its newest end.
func (s *Store) EventsByID(ctx context.Context, ids []uuid.UUID) ([]store.Event, error) {
	want := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Event
	for i := len(s.events) - 1; i >= 0 && len(out) < len(want); i-- {
		if want[s.events[i].ID] {
			out = append(out, s.events[i])
		}
	}
	slices.Reverse(out)
	return out, nil
}

// PendingEvents implements store.Outbox.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]store.Event, error) {
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pending[:min(limit, len(s.pending))]), nil
}

// MarkRelayed implements store.Outbox.
func (s *Store) MarkRelayed(ctx context.Context, evs []store.Event) error {
	done := make(map[uuid.UUID]bool, len(evs))
	for _, ev := range evs {
		done[ev.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = slices.DeleteFunc(s.pending, func(ev store.Event) bool { return done[ev.ID] })
	return nil
}

// AcquireRelayLease implements store.Outbox. The store lives in one
// process, whose one relay always holds the lease.
func (s *Store) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return true, nil
}

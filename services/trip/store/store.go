// Package store defines the trip store contract: what every trip store
// guarantees, the types it speaks and its errors. memstore (embedded, for
// `hexride dev` and unit tests) and sqlstore (CockroachDB in production,
// PostgreSQL in tests) implement it; storetest is the conformance suite both
// pass.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// Stores fail with the trip domain's errors (tripapi.ErrNotFound,
// ErrTripNotRequested, ErrDriverBusy, ErrIdempotencyKeyReused,
// ErrNotCompleted, tripapi.InvalidArgument; possibly wrapped, match with
// errors.Is). Refused state-machine commands return a
// *lifecycle.TransitionError wrapping lifecycle.ErrInvalidTransition,
// ErrActorNotAllowed or ErrInvalidCommand.

// Store is the trip store. All implementations guarantee:
//
//   - Every change (Create, AssignDriver, Transition) is atomic: the trip row,
//     one appended Event and the idempotency record commit together or not at
//     all, and a returned nil error means the change is durable.
//   - Idempotency: a mutation whose key was already used for the same request
//     returns the original result and changes nothing; the same key with a
//     different request fails with tripapi.ErrIdempotencyKeyReused. Keys are scoped
//     per operation kind (create, assign, transition).
//   - A driver holds at most one trip in a pickup state (DRIVER_ASSIGNED or
//     DRIVER_ARRIVED) and at most one trip IN_PROGRESS, so a driver carrying
//     a rider can be assigned its next trip ("chained supply") but cannot
//     start it before the ride ends; a trip has at most one driver. This
//     holds under any concurrency, on every instance sharing the store.
//   - AssignDriver is a compare-and-set on state REQUESTED.
//   - Trip.Version grows by exactly one per event; a trip's events have
//     versions 1..Version with no gaps.
//   - Events become visible to Events once committed. Their At is the commit
//     transaction's time, so a late-committing transaction can make an event
//     visible with an At earlier than events already seen: readers tailing
//     Events re-read a lookback window and de-duplicate by Event.ID (Tailer
//     does this).
//   - Times are UTC with microsecond precision.
type Store interface {
	// Create creates a trip in REQUESTED, or returns the trip the key
	// created first (created == false), as it is now.
	Create(ctx context.Context, req CreateTrip) (t Trip, created bool, err error)
	// AssignDriver moves a REQUESTED trip to DRIVER_ASSIGNED with the driver
	// (actor system). Fails with tripapi.ErrNotFound, tripapi.ErrTripNotRequested or
	// tripapi.ErrDriverBusy (the driver already holds a pickup; a ride in
	// progress does not stop it). A repeated key returns the original result.
	AssignDriver(ctx context.Context, req AssignDriver) (Trip, Event, error)
	// Transition fires a state-machine event. Refusals are
	// *lifecycle.TransitionError; a start while the driver has another ride
	// IN_PROGRESS fails with tripapi.ErrDriverBusy (and changes nothing). A
	// repeated key returns the original result.
	Transition(ctx context.Context, req Transition) (Trip, Event, error)
	// Rate records the rider's rating of a COMPLETED trip, replacing any
	// earlier one (so repeating it is harmless). Fails with tripapi.ErrNotFound,
	// tripapi.ErrNotCompleted, or lifecycle.ErrActorNotAllowed when riderID is not
	// the trip's rider. A rating is not a lifecycle change: it appends no
	// event and leaves Version and UpdatedAt alone.
	Rate(ctx context.Context, req Rate) (Trip, error)
	// Get returns a trip or tripapi.ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (Trip, error)
	// List returns trips matching the filter, newest first (created_at, then
	// id, descending), a page at a time. The order is stable, so paging
	// neither skips nor repeats trips that existed when paging began.
	List(ctx context.Context, f Filter) (Page, error)
	// History returns a trip's events, oldest first (tripapi.ErrNotFound if no trip).
	History(ctx context.Context, tripID uuid.UUID) ([]Event, error)
	// EventRefs returns the ids and times of committed events with At >=
	// q.Since in (At, ID) order, at most q.Limit of them. See the
	// visibility note above. It reads no payloads: tailers re-read a
	// lookback window every poll and fetch only the events they have not
	// seen (EventsByID).
	EventRefs(ctx context.Context, q EventQuery) ([]EventRef, error)
	// EventsByID returns the events with these ids in (At, ID) order;
	// ids not (or no longer) in the log are skipped.
	EventsByID(ctx context.Context, ids []uuid.UUID) ([]Event, error)
	// Now returns the store's clock (the database's for SQL stores); event
	// times are on this clock.
	Now(ctx context.Context) (time.Time, error)
}

// Trip is a trip: its fixed request data plus its lifecycle.
type Trip struct {
	ID        uuid.UUID
	Product   string
	Pickup    geo.LatLng
	Dropoff   geo.LatLng
	QuoteID   string
	Region    string
	CreatedAt time.Time
	UpdatedAt time.Time // time of the last lifecycle event
	Rating    int32     // rider's stars, 1..5; 0 when not rated
	lifecycle.Trip
}

// Event is one entry of a trip's history, with the trip right after it.
type Event struct {
	ID       uuid.UUID
	TripID   uuid.UUID
	Type     lifecycle.Event // recorded event (EventCreate for the first)
	From     lifecycle.State // "" for EventCreate
	To       lifecycle.State
	Actor    lifecycle.Actor
	ActorID  string
	Reason   string
	DriverID string // driver assigned or unassigned, if any
	Version  int64  // trip version after the event
	At       time.Time
	Trip     Trip
}

// CreateTrip is a request for a trip.
type CreateTrip struct {
	IdempotencyKey string
	RiderID        string
	Pickup         geo.LatLng
	Dropoff        geo.LatLng
	Product        string
	QuotedFare     lifecycle.Money
	QuoteID        string
	Region         string // empty: the store's default region
}

// AssignDriver pairs a driver with a REQUESTED trip.
type AssignDriver struct {
	TripID         uuid.UUID
	DriverID       string
	IdempotencyKey string
	// AfterTrip, for a driver carrying a rider, is the ride this trip
	// follows (chained supply). A driver with a ride in progress gets a
	// pickup only as that ride's next trip: AfterTrip must name the ride
	// (else tripapi.ErrDriverBusy). Zero: the driver must not be riding.
	AfterTrip uuid.UUID
}

// Transition fires one event.
type Transition struct {
	TripID         uuid.UUID
	Event          lifecycle.Event
	Actor          lifecycle.Actor
	ActorID        string
	Reason         string
	IdempotencyKey string
	// ExpectVersion, when not zero, makes the change conditional: it
	// fails with tripapi.ErrTripChanged unless the trip is still at this
	// version (an actor deciding from an earlier read, like the watchdog).
	ExpectVersion int64
}

// Apply fires the transition on t with rules, at the store's time.
func (tr Transition) Apply(rules lifecycle.Rules, t Trip, at time.Time) (lifecycle.Trip, lifecycle.Event, error) {
	if tr.ExpectVersion != 0 && t.Version != tr.ExpectVersion {
		return t.Trip, "", fmt.Errorf("%w: trip %s is at version %d, not %d", tripapi.ErrTripChanged, t.ID, t.Version, tr.ExpectVersion)
	}
	return rules.Apply(t.Trip, tr.Command(at))
}

// Rate is a rider's rating of a completed trip.
type Rate struct {
	TripID  uuid.UUID
	RiderID string
	Stars   int32
	Comment string
}

// Validate checks a Rate.
func (r Rate) Validate() error {
	if r.Stars < 1 || r.Stars > 5 {
		return tripapi.InvalidArgument("stars must be 1..5")
	}
	if r.RiderID == "" {
		return tripapi.InvalidArgument("rider id required")
	}
	return nil
}

// CheckRate checks that t may be rated by r.RiderID.
func CheckRate(t Trip, r Rate) error {
	if t.State != lifecycle.StateCompleted {
		return fmt.Errorf("%w: trip %s is %s", tripapi.ErrNotCompleted, t.ID, t.State)
	}
	if t.RiderID != r.RiderID {
		return &lifecycle.TransitionError{From: t.State, Event: "rate", Actor: lifecycle.ActorRider, Err: lifecycle.ErrActorNotAllowed, Detail: "not this trip's rider"}
	}
	return nil
}

// Filter selects trips for List. Zero fields match everything.
type Filter struct {
	States        []lifecycle.State
	RiderID       string
	DriverID      string
	CreatedAfter  time.Time // inclusive
	CreatedBefore time.Time // exclusive
	UpdatedBefore time.Time // exclusive: trips whose last change is older
	PageSize      int       // 0 means DefaultPageSize; capped at MaxPageSize
	PageToken     string
	// Regions keeps only trips homed in one of these regions (empty: any).
	// On CockroachDB this is the trips table's partition, so a worker that
	// sweeps its own region reads only rows stored there.
	Regions []string
	// AllowStale lets CockroachDB serve the page from a follower read a few
	// seconds old. Ignored elsewhere.
	AllowStale bool
}

// Page is one page of List.
type Page struct {
	Trips         []Trip
	NextPageToken string // empty on the last page
}

// EventRef names one event of the log.
type EventRef struct {
	ID uuid.UUID
	At time.Time
}

// EventQuery selects events for EventRefs.
type EventQuery struct {
	Since time.Time // inclusive
	Limit int       // 0 means 1000
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	DefaultRegion   = "default"
)

// Idempotency scopes.
const (
	ScopeCreate     = "create"
	ScopeAssign     = "assign"
	ScopeTransition = "transition"
)

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate checks a CreateTrip and fills defaults (Region).
func (c *CreateTrip) Validate() error {
	var problems []string
	if c.IdempotencyKey == "" {
		problems = append(problems, "idempotency key required")
	}
	if c.RiderID == "" {
		problems = append(problems, "rider id required")
	}
	if c.Product == "" {
		problems = append(problems, "product required")
	}
	for name, p := range map[string]geo.LatLng{"pickup": c.Pickup, "dropoff": c.Dropoff} {
		if math.IsNaN(p.Lat) || math.IsNaN(p.Lng) || p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180 {
			problems = append(problems, name+" out of range")
		}
	}
	if c.QuotedFare.Minor < 0 || !currencyRE.MatchString(c.QuotedFare.Currency) {
		problems = append(problems, "quoted fare must be >= 0 in an ISO 4217 currency")
	}
	if len(problems) > 0 {
		return tripapi.InvalidArgument("%s", strings.Join(problems, "; "))
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	return nil
}

// Hash fingerprints the request for idempotency checks.
func (c CreateTrip) Hash() string {
	// The product enters the hash in the spelling keys were first hashed
	// with (upper case), so a retry of a key recorded before products were
	// spelled as lower-case keys still matches its request.
	return hashOf(ScopeCreate, c.RiderID, strings.ToUpper(c.Product), c.QuoteID, c.Region, c.QuotedFare.Currency,
		strconv.FormatInt(c.QuotedFare.Minor, 10),
		strconv.FormatFloat(c.Pickup.Lat, 'g', -1, 64), strconv.FormatFloat(c.Pickup.Lng, 'g', -1, 64),
		strconv.FormatFloat(c.Dropoff.Lat, 'g', -1, 64), strconv.FormatFloat(c.Dropoff.Lng, 'g', -1, 64))
}

// Validate checks an AssignDriver.
func (a AssignDriver) Validate() error {
	switch {
	case a.IdempotencyKey == "":
		return tripapi.InvalidArgument("idempotency key required")
	case a.DriverID == "":
		return tripapi.InvalidArgument("driver id required")
	}
	return nil
}

// Hash fingerprints the request for idempotency checks.
func (a AssignDriver) Hash() string {
	if a.AfterTrip != uuid.Nil {
		return hashOf(ScopeAssign, a.TripID.String(), a.DriverID, a.AfterTrip.String())
	}
	return hashOf(ScopeAssign, a.TripID.String(), a.DriverID)
}

// RidingElsewhere is the error for assigning a pickup to a driver carrying
// a rider on trip ride when the assignment does not follow that ride.
func (a AssignDriver) RidingElsewhere(ride uuid.UUID) error {
	return fmt.Errorf("%w: driver %s is carrying a rider on trip %s", tripapi.ErrDriverBusy, a.DriverID, ride)
}

// Command returns the state-machine command AssignDriver fires.
func (a AssignDriver) Command(at time.Time) lifecycle.Command {
	return lifecycle.Command{Event: lifecycle.EventAssign, Actor: lifecycle.ActorSystem, DriverID: a.DriverID, At: at}
}

// Validate checks a Transition.
func (tr Transition) Validate() error {
	if tr.IdempotencyKey == "" {
		return tripapi.InvalidArgument("idempotency key required")
	}
	if tr.Event == lifecycle.EventAssign {
		return tripapi.InvalidArgument("use AssignDriver to assign")
	}
	return nil
}

// Hash fingerprints the request for idempotency checks.
func (tr Transition) Hash() string {
	if tr.ExpectVersion != 0 {
		return hashOf(ScopeTransition, tr.TripID.String(), string(tr.Event), string(tr.Actor), tr.ActorID, tr.Reason, strconv.FormatInt(tr.ExpectVersion, 10))
	}
	return hashOf(ScopeTransition, tr.TripID.String(), string(tr.Event), string(tr.Actor), tr.ActorID, tr.Reason)
}

// Command returns the state-machine command.
func (tr Transition) Command(at time.Time) lifecycle.Command {
	return lifecycle.Command{Event: tr.Event, Actor: tr.Actor, ActorID: tr.ActorID, Reason: tr.Reason, At: at}
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// NotRequested builds the error AssignDriver returns when the trip left
// REQUESTED; it matches both tripapi.ErrTripNotRequested and the state machine's
// refusal.
func NotRequested(id uuid.UUID, state lifecycle.State, cause error) error {
	if cause == nil {
		cause = &lifecycle.TransitionError{From: state, Event: lifecycle.EventAssign, Actor: lifecycle.ActorSystem, Err: lifecycle.ErrInvalidTransition}
	}
	return fmt.Errorf("%w: trip %s is %s: %w", tripapi.ErrTripNotRequested, id, state, cause)
}

// PageSize returns the effective page size.
func (f Filter) EffectivePageSize() int {
	switch {
	case f.PageSize <= 0:
		return DefaultPageSize
	case f.PageSize > MaxPageSize:
		return MaxPageSize
	}
	return f.PageSize
}

// Cursor is the position after the last trip of a page.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// EncodeCursor makes an opaque page token.
func EncodeCursor(c Cursor) string {
	raw := fmt.Sprintf("v1|%d|%s", c.CreatedAt.UnixMicro(), c.ID)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a page token ("" yields ok == false).
func DecodeCursor(token string) (c Cursor, ok bool, err error) {
	if token == "" {
		return Cursor{}, false, nil
	}
	bad := tripapi.InvalidArgument("bad page token")
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Cursor{}, false, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "v1" {
		return Cursor{}, false, bad
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Cursor{}, false, bad
	}
	id, err := uuid.Parse(parts[2])
	if err != nil {
		return Cursor{}, false, bad
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: id}, true, nil
}

// Before reports whether trip t sorts after cursor c in List order
// (newest first), i.e. belongs on a later page.
func (c Cursor) Before(t Trip) bool {
	if !t.CreatedAt.Equal(c.CreatedAt) {
		return t.CreatedAt.Before(c.CreatedAt)
	}
	return strings.Compare(t.ID.String(), c.ID.String()) < 0
}

// Matches reports whether t passes the filter (ignoring paging).
func (f Filter) Matches(t Trip) bool {
	if len(f.States) > 0 && !containsState(f.States, t.State) {
		return false
	}
	if f.RiderID != "" && t.RiderID != f.RiderID {
		return false
	}
	if f.DriverID != "" && t.DriverID != f.DriverID {
		return false
	}
	if !f.CreatedAfter.IsZero() && t.CreatedAt.Before(f.CreatedAfter) {
		return false
	}
	if !f.CreatedBefore.IsZero() && !t.CreatedAt.Before(f.CreatedBefore) {
		return false
	}
	if !f.UpdatedBefore.IsZero() && !t.UpdatedAt.Before(f.UpdatedBefore) {
		return false
	}
	if len(f.Regions) > 0 && !slices.Contains(f.Regions, t.Region) {
		return false
	}
	return true
}

func containsState(states []lifecycle.State, s lifecycle.State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

// Outbox is the relay's side of a store's event outbox. A store whose
// outbox is on (sqlstore.WithOutbox, memstore.WithOutbox) records every
// event it appends as pending, in the transaction of the change itself; the
// relay publishes pending events and then marks them relayed. An event is
// pending until marked, so a relay that dies between publishing and marking
// publishes it again (at least once; the stream de-duplicates by event id).
//
// A trip's events become pending in version order (each change reads the
// trip its predecessor committed), so reading pending events oldest first
// and publishing each trip's in version order keeps per-trip order.
type Outbox interface {
	// PendingEvents returns up to limit pending events in (At, ID) order.
	PendingEvents(ctx context.Context, limit int) ([]Event, error)
	// MarkRelayed removes these events from the outbox, found by their
	// trip's region and id (the outbox's key: a region-local delete on
	// CockroachDB); events no longer pending are ignored.
	MarkRelayed(ctx context.Context, evs []Event) error
	// AcquireRelayLease takes the relay lease for holder, or renews it if
	// holder has it, for ttl; it reports whether holder holds it now. One
	// instance relays at a time; an expired lease may be taken by another.
	AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
}

// Package lifecycle is the trip state machine: pure functions over a trip's
// lifecycle fields, no I/O.
//
//	REQUESTED ──assign──▶ DRIVER_ASSIGNED ──arrive──▶ DRIVER_ARRIVED ──start──▶ IN_PROGRESS ──complete──▶ COMPLETED
//	    │  ▲                     │   │                      │   │                    │
//	    │  └───────unassign──────┘   └──────────────────────┘   │                    │
//	    │          (driver withdraws before pickup)             │                    │
//	    ├──no_driver_found──▶ NO_DRIVER_FOUND                   │                    │
//	    └──cancel──▶ CANCELLED ◀──cancel── (any non-terminal state, see Table)
//
// Driver withdrawal: a driver who cancels before pickup does not cancel the
// trip. The event is recorded as unassign, the trip goes back to REQUESTED
// (driver, assigned_at and arrived_at cleared) and the driver is free again,
// so the rider still gets a ride from the next dispatch. A driver "cancel"
// in DRIVER_ASSIGNED or DRIVER_ARRIVED is normalised to unassign. Once the
// ride is IN_PROGRESS only a dispatcher or the system can cancel it.
//
// Fares: completion sets the final fare to the quoted fare. A rider who
// cancels after the driver arrived, or more than Rules.CancelGrace after the
// assignment, is charged a cancellation fee of min(Rules.CancellationFee,
// quoted fare) in the quote's currency, recorded as the final fare. Other
// cancellations cost nothing and leave the final fare unset.
//
// Timestamps: assign sets AssignedAt, arrive ArrivedAt, start StartedAt,
// complete CompletedAt; cancel and no_driver_found set EndedAt (the
// cancelled_at of the trip) and EndReason; cancel also sets CancelledBy.
package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// State is where a trip is in its lifecycle.
type State string

// The states.
const (
	StateRequested      State = "REQUESTED"
	StateDriverAssigned State = "DRIVER_ASSIGNED"
	StateDriverArrived  State = "DRIVER_ARRIVED"
	StateInProgress     State = "IN_PROGRESS"
	StateCompleted      State = "COMPLETED"
	StateCancelled      State = "CANCELLED"
	StateNoDriverFound  State = "NO_DRIVER_FOUND"
)

// States lists every state in lifecycle order.
var States = []State{StateRequested, StateDriverAssigned, StateDriverArrived, StateInProgress, StateCompleted, StateCancelled, StateNoDriverFound}

// ActiveStates are the states in which the trip occupies its driver: a
// pickup (PickupStates) or the ride itself (IN_PROGRESS). A driver holds at
// most one trip in a pickup state and at most one IN_PROGRESS (the stores
// enforce both), so a driver carrying a rider can already hold the pickup of
// its next trip ("chained supply"), but that trip cannot start before the
// ride in progress ends.
var ActiveStates = []State{StateDriverAssigned, StateDriverArrived, StateInProgress}

// PickupStates are the states in which the trip's driver is on its way to,
// or waiting at, the pickup. A driver holds at most one trip in these states.
var PickupStates = []State{StateDriverAssigned, StateDriverArrived}

// Valid reports whether s is a known state.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Terminal reports whether no event can leave s.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateCancelled || s == StateNoDriverFound
}

// Active reports whether a trip in s occupies its driver.
func (s State) Active() bool { return slices.Contains(ActiveStates, s) }

// Pickup reports whether a trip in s holds its driver's one pickup.
func (s State) Pickup() bool { return slices.Contains(PickupStates, s) }

// Event is something that changes a trip.
type Event string

// The events. EventCreate is recorded for the first history entry only; it is
// not fired through Apply.
const (
	EventCreate        Event = "create"
	EventAssign        Event = "assign"
	EventArrive        Event = "arrive"
	EventStart         Event = "start"
	EventComplete      Event = "complete"
	EventCancel        Event = "cancel"
	EventNoDriverFound Event = "no_driver_found"
	EventUnassign      Event = "unassign"
	EventRedispatch    Event = "redispatch"
)

// Events lists every event.
var Events = []Event{EventCreate, EventAssign, EventArrive, EventStart, EventComplete, EventCancel, EventNoDriverFound, EventUnassign, EventRedispatch}

// Valid reports whether e is a known event.
func (e Event) Valid() bool { return slices.Contains(Events, e) }

// Actor is who fires an event.
type Actor string

// The actors.
const (
	ActorRider      Actor = "rider"
	ActorDriver     Actor = "driver"
	ActorDispatcher Actor = "dispatcher"
	ActorSystem     Actor = "system"
)

// Actors lists every actor.
var Actors = []Actor{ActorRider, ActorDriver, ActorDispatcher, ActorSystem}

// Valid reports whether a is a known actor.
func (a Actor) Valid() bool { return slices.Contains(Actors, a) }

// Errors. Apply returns them inside a *TransitionError.
var (
	// ErrInvalidTransition: the event cannot be fired from the trip's state.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrActorNotAllowed: the event can be fired from this state, but not by
	// this actor (or not by this rider or driver: only the trip's own).
	ErrActorNotAllowed = errors.New("actor not allowed")
	// ErrInvalidCommand: the command itself is malformed (unknown event or
	// actor, missing actor id or driver id).
	ErrInvalidCommand = errors.New("invalid command")
)

// TransitionError reports a refused command. It unwraps to one of the
// sentinel errors above.
type TransitionError struct {
	From   State
	Event  Event
	Actor  Actor
	Err    error
	Detail string
}

func (e *TransitionError) Error() string {
	msg := fmt.Sprintf("trip %s: %s by %s: %v", e.From, e.Event, e.Actor, e.Err)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel.
func (e *TransitionError) Unwrap() error { return e.Err }

// Money is an amount in minor units of an ISO 4217 currency.
type Money struct {
	Minor    int64
	Currency string
}

// IsZero reports whether m is unset.
func (m Money) IsZero() bool { return m == Money{} }

// Trip is the part of a trip the state machine reads and writes.
type Trip struct {
	State       State
	RiderID     string
	DriverID    string // set while assigned (and kept on terminal states after assignment)
	QuotedFare  Money
	FinalFare   Money // zero until completion or a cancellation with a fee
	AssignedAt  time.Time
	ArrivedAt   time.Time
	StartedAt   time.Time
	CompletedAt time.Time
	EndedAt     time.Time // cancelled or no driver found
	CancelledBy Actor
	EndReason   string
	Version     int64 // number of events applied, EventCreate included
}

// Command fires Event on a trip.
type Command struct {
	Event    Event
	Actor    Actor
	ActorID  string // rider, driver or dispatcher id; empty only for ActorSystem
	DriverID string // the driver, for EventAssign
	Reason   string
	At       time.Time
}

// Rule is one row of the transition table.
type Rule struct {
	From   State
	Event  Event
	Actors []Actor
	To     State
}

// Table is the transition table: who may fire what from where. A driver's
// cancel before pickup is normalised to unassign before the lookup.
var Table = []Rule{
	{StateRequested, EventAssign, []Actor{ActorSystem, ActorDispatcher}, StateDriverAssigned},
	{StateRequested, EventCancel, []Actor{ActorRider, ActorDispatcher, ActorSystem}, StateCancelled},
	{StateRequested, EventNoDriverFound, []Actor{ActorSystem, ActorDispatcher}, StateNoDriverFound},
	{StateRequested, EventRedispatch, []Actor{ActorDispatcher, ActorSystem}, StateRequested},
	{StateDriverAssigned, EventArrive, []Actor{ActorDriver, ActorDispatcher}, StateDriverArrived},
	{StateDriverAssigned, EventCancel, []Actor{ActorRider, ActorDispatcher, ActorSystem}, StateCancelled},
	{StateDriverAssigned, EventUnassign, []Actor{ActorDriver, ActorDispatcher, ActorSystem}, StateRequested},
	{StateDriverArrived, EventStart, []Actor{ActorDriver, ActorDispatcher}, StateInProgress},
	{StateDriverArrived, EventCancel, []Actor{ActorRider, ActorDispatcher, ActorSystem}, StateCancelled},
	{StateDriverArrived, EventUnassign, []Actor{ActorDriver, ActorDispatcher, ActorSystem}, StateRequested},
	{StateInProgress, EventComplete, []Actor{ActorDriver, ActorDispatcher, ActorSystem}, StateCompleted},
	{StateInProgress, EventCancel, []Actor{ActorDispatcher, ActorSystem}, StateCancelled},
}

// Lookup returns the rule for event from state, if any.
func Lookup(from State, event Event) (Rule, bool) {
	for _, r := range Table {
		if r.From == from && r.Event == event {
			return r, true
		}
	}
	return Rule{}, false
}

// Rules holds the fare policy.
type Rules struct {
	// CancelGrace is how long after assignment a rider may cancel for free
	// (while the driver has not arrived).
	CancelGrace time.Duration
	// CancellationFee is the fee in minor units, capped at the quoted fare.
	CancellationFee int64
}

// DefaultRules: two minutes' grace, a fee of 500 minor units.
var DefaultRules = Rules{CancelGrace: 2 * time.Minute, CancellationFee: 500}

// Apply fires c on t with DefaultRules.
func Apply(t Trip, c Command) (Trip, Event, error) { return DefaultRules.Apply(t, c) }

// Normalize returns the event actually recorded for c on a trip in state
// from: a driver's cancel before pickup becomes unassign.
func Normalize(from State, c Command) Event {
	if c.Event == EventCancel && c.Actor == ActorDriver && (from == StateDriverAssigned || from == StateDriverArrived) {
		return EventUnassign
	}
	return c.Event
}

// Apply fires c on t and returns the trip after it and the event recorded
// (which differs from c.Event only when Normalize changes it). t is not
// modified. Version grows by one.
func (r Rules) Apply(t Trip, c Command) (Trip, Event, error) {
	fail := func(err error, detail string) (Trip, Event, error) {
		return t, c.Event, &TransitionError{From: t.State, Event: c.Event, Actor: c.Actor, Err: err, Detail: detail}
	}
	switch {
	case !c.Event.Valid() || c.Event == EventCreate:
		return fail(ErrInvalidCommand, fmt.Sprintf("unknown event %q", c.Event))
	case !c.Actor.Valid():
		return fail(ErrInvalidCommand, fmt.Sprintf("unknown actor %q", c.Actor))
	case c.Actor != ActorSystem && c.ActorID == "":
		return fail(ErrInvalidCommand, "actor id required")
	case c.Event == EventAssign && c.DriverID == "":
		return fail(ErrInvalidCommand, "driver id required")
	}
	ev := Normalize(t.State, c)
	rule, ok := Lookup(t.State, ev)
	if !ok {
		return fail(ErrInvalidTransition, "")
	}
	if !slices.Contains(rule.Actors, c.Actor) {
		return fail(ErrActorNotAllowed, "")
	}
	if c.Actor == ActorRider && c.ActorID != t.RiderID {
		return fail(ErrActorNotAllowed, "not this trip's rider")
	}
	if c.Actor == ActorDriver && c.ActorID != t.DriverID {
		return fail(ErrActorNotAllowed, "not this trip's driver")
	}

	next := t
	next.State = rule.To
	next.Version++
	switch ev {
	case EventAssign:
		next.DriverID = c.DriverID
		next.AssignedAt = c.At
	case EventArrive:
		next.ArrivedAt = c.At
	case EventStart:
		next.StartedAt = c.At
	case EventComplete:
		next.CompletedAt = c.At
		next.FinalFare = t.QuotedFare
	case EventUnassign:
		next.DriverID = ""
		next.AssignedAt = time.Time{}
		next.ArrivedAt = time.Time{}
	case EventCancel:
		next.EndedAt = c.At
		next.CancelledBy = c.Actor
		next.EndReason = c.Reason
		if fee, ok := r.cancellationFee(t, c); ok {
			next.FinalFare = fee
		}
	case EventNoDriverFound:
		next.EndedAt = c.At
		next.EndReason = c.Reason
	}
	return next, ev, nil
}

func (r Rules) cancellationFee(t Trip, c Command) (Money, bool) {
	if c.Actor != ActorRider || r.CancellationFee <= 0 {
		return Money{}, false
	}
	late := t.State == StateDriverArrived ||
		(t.State == StateDriverAssigned && c.At.Sub(t.AssignedAt) > r.CancelGrace)
	if !late {
		return Money{}, false
	}
	return Money{Minor: min(r.CancellationFee, t.QuotedFare.Minor), Currency: t.QuotedFare.Currency}, true
}

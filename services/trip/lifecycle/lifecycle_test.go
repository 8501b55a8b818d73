package lifecycle

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func trip(state State) Trip {
	t := Trip{State: state, RiderID: "r1", QuotedFare: Money{Minor: 1200, Currency: "USD"}, Version: 3}
	if state.Active() {
		t.DriverID = "d1"
		t.AssignedAt = t0
	}
	return t
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		from    State
		cmd     Command
		want    State
		wantEv  Event
		wantErr error
		check   func(t *testing.T, before, after Trip)
	}{
		{name: "assign", from: StateRequested, cmd: Command{Event: EventAssign, Actor: ActorSystem, DriverID: "d9", At: t0},
			want: StateDriverAssigned, wantEv: EventAssign, check: func(t *testing.T, _, a Trip) {
				if a.DriverID != "d9" || !a.AssignedAt.Equal(t0) {
					t.Errorf("driver/assigned_at not set: %+v", a)
				}
			}},
		{name: "assign without driver", from: StateRequested, cmd: Command{Event: EventAssign, Actor: ActorSystem}, wantErr: ErrInvalidCommand},
		{name: "assign twice", from: StateDriverAssigned, cmd: Command{Event: EventAssign, Actor: ActorSystem, DriverID: "d2"}, wantErr: ErrInvalidTransition},
		{name: "rider cannot assign", from: StateRequested, cmd: Command{Event: EventAssign, Actor: ActorRider, ActorID: "r1", DriverID: "d2"}, wantErr: ErrActorNotAllowed},
		{name: "arrive", from: StateDriverAssigned, cmd: Command{Event: EventArrive, Actor: ActorDriver, ActorID: "d1", At: t0.Add(time.Minute)},
			want: StateDriverArrived, wantEv: EventArrive, check: func(t *testing.T, _, a Trip) {
				if !a.ArrivedAt.Equal(t0.Add(time.Minute)) {
					t.Errorf("arrived_at = %v", a.ArrivedAt)
				}
			}},
		{name: "other driver cannot arrive", from: StateDriverAssigned, cmd: Command{Event: EventArrive, Actor: ActorDriver, ActorID: "d2"}, wantErr: ErrActorNotAllowed},
		{name: "start", from: StateDriverArrived, cmd: Command{Event: EventStart, Actor: ActorDriver, ActorID: "d1", At: t0}, want: StateInProgress, wantEv: EventStart},
		{name: "start before arrival", from: StateDriverAssigned, cmd: Command{Event: EventStart, Actor: ActorDriver, ActorID: "d1"}, wantErr: ErrInvalidTransition},
		{name: "complete sets final fare", from: StateInProgress, cmd: Command{Event: EventComplete, Actor: ActorDriver, ActorID: "d1", At: t0},
			want: StateCompleted, wantEv: EventComplete, check: func(t *testing.T, b, a Trip) {
				if a.FinalFare != b.QuotedFare || !a.CompletedAt.Equal(t0) {
					t.Errorf("final fare %+v, completed_at %v", a.FinalFare, a.CompletedAt)
				}
			}},
		{name: "rider cannot complete", from: StateInProgress, cmd: Command{Event: EventComplete, Actor: ActorRider, ActorID: "r1"}, wantErr: ErrActorNotAllowed},
		{name: "rider cancels free", from: StateRequested, cmd: Command{Event: EventCancel, Actor: ActorRider, ActorID: "r1", Reason: "nope", At: t0},
			want: StateCancelled, wantEv: EventCancel, check: func(t *testing.T, _, a Trip) {
				if !a.FinalFare.IsZero() || a.CancelledBy != ActorRider || a.EndReason != "nope" || !a.EndedAt.Equal(t0) {
					t.Errorf("cancelled = %+v", a)
				}
			}},
		{name: "rider cancels within grace", from: StateDriverAssigned, cmd: Command{Event: EventCancel, Actor: ActorRider, ActorID: "r1", At: t0.Add(time.Minute)},
			want: StateCancelled, wantEv: EventCancel, check: func(t *testing.T, _, a Trip) {
				if !a.FinalFare.IsZero() {
					t.Errorf("fee charged within grace: %+v", a.FinalFare)
				}
			}},
		{name: "rider cancels late", from: StateDriverAssigned, cmd: Command{Event: EventCancel, Actor: ActorRider, ActorID: "r1", At: t0.Add(3 * time.Minute)},
			want: StateCancelled, wantEv: EventCancel, check: func(t *testing.T, _, a Trip) {
				if a.FinalFare != (Money{Minor: 500, Currency: "USD"}) {
					t.Errorf("fee = %+v", a.FinalFare)
				}
			}},
		{name: "other rider cannot cancel", from: StateRequested, cmd: Command{Event: EventCancel, Actor: ActorRider, ActorID: "r2"}, wantErr: ErrActorNotAllowed},
		{name: "driver cancel before pickup unassigns", from: StateDriverArrived, cmd: Command{Event: EventCancel, Actor: ActorDriver, ActorID: "d1", Reason: "no show"},
			want: StateRequested, wantEv: EventUnassign, check: func(t *testing.T, _, a Trip) {
				if a.DriverID != "" || !a.AssignedAt.IsZero() || !a.ArrivedAt.IsZero() || !a.EndedAt.IsZero() {
					t.Errorf("unassigned = %+v", a)
				}
			}},
		{name: "driver cannot cancel a ride in progress", from: StateInProgress, cmd: Command{Event: EventCancel, Actor: ActorDriver, ActorID: "d1"}, wantErr: ErrActorNotAllowed},
		{name: "dispatcher cancels a ride in progress", from: StateInProgress, cmd: Command{Event: EventCancel, Actor: ActorDispatcher, ActorID: "ops"}, want: StateCancelled, wantEv: EventCancel},
		{name: "no driver found", from: StateRequested, cmd: Command{Event: EventNoDriverFound, Actor: ActorSystem, Reason: "none", At: t0}, want: StateNoDriverFound, wantEv: EventNoDriverFound},
		{name: "no driver found after assignment", from: StateDriverAssigned, cmd: Command{Event: EventNoDriverFound, Actor: ActorSystem}, wantErr: ErrInvalidTransition},
		{name: "terminal is terminal", from: StateCompleted, cmd: Command{Event: EventCancel, Actor: ActorSystem}, wantErr: ErrInvalidTransition},
		{name: "dispatcher needs an id", from: StateRequested, cmd: Command{Event: EventCancel, Actor: ActorDispatcher}, wantErr: ErrInvalidCommand},
		{name: "unknown actor", from: StateRequested, cmd: Command{Event: EventCancel, Actor: "alien", ActorID: "x"}, wantErr: ErrInvalidCommand},
		{name: "create is not fired", from: StateRequested, cmd: Command{Event: EventCreate, Actor: ActorSystem}, wantErr: ErrInvalidCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := trip(tt.from)
			after, ev, err := Apply(before, tt.cmd)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				var te *TransitionError
				if !errors.As(err, &te) || te.From != tt.from {
					t.Fatalf("err %v is not a *TransitionError from %s", err, tt.from)
				}
				if after != before {
					t.Fatalf("refused command changed the trip")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if after.State != tt.want || ev != tt.wantEv || after.Version != before.Version+1 {
				t.Fatalf("got %s via %s v%d, want %s via %s v%d", after.State, ev, after.Version, tt.want, tt.wantEv, before.Version+1)
			}
			if tt.check != nil {
				tt.check(t, before, after)
			}
		})
	}
}

// TestTable checks the table's shape: terminal states have no way out, every
// non-terminal state can be cancelled, and active states are exactly those
// a driver occupies.
func TestTable(t *testing.T) {
	for _, s := range States {
		var out []Rule
		for _, r := range Table {
			if r.From == s {
				out = append(out, r)
			}
		}
		if s.Terminal() && len(out) > 0 {
			t.Errorf("terminal %s has transitions", s)
		}
		if !s.Terminal() {
			if _, ok := Lookup(s, EventCancel); !ok {
				t.Errorf("%s cannot be cancelled", s)
			}
		}
	}
	for _, r := range Table {
		if !r.From.Valid() || !r.To.Valid() || !r.Event.Valid() || len(r.Actors) == 0 {
			t.Errorf("bad rule %+v", r)
		}
	}
}

// TestStateClasses: a pickup is an active state before the ride; IN_PROGRESS
// is active but not a pickup (a driver may hold one of each).
func TestStateClasses(t *testing.T) {
	tests := []struct {
		state          State
		active, pickup bool
	}{
		{StateRequested, false, false},
		{StateDriverAssigned, true, true},
		{StateDriverArrived, true, true},
		{StateInProgress, true, false},
		{StateCompleted, false, false},
		{StateCancelled, false, false},
		{StateNoDriverFound, false, false},
		{"TELEPORTED", false, false},
	}
	for _, tt := range tests {
		if got := tt.state.Active(); got != tt.active {
			t.Errorf("%s.Active() = %v, want %v", tt.state, got, tt.active)
		}
		if got := tt.state.Pickup(); got != tt.pickup {
			t.Errorf("%s.Pickup() = %v, want %v", tt.state, got, tt.pickup)
		}
	}
	for _, s := range PickupStates {
		if !s.Active() {
			t.Errorf("pickup state %s is not active", s)
		}
	}
}

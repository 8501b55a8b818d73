// Package storetest is the conformance suite every store.Store passes.
// A backend's test calls Run with a constructor returning a fresh, empty
// store (cleaned up through t.Cleanup).
package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/tripapi"
)

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateIdempotent", testCreateIdempotent},
		{"CreateConcurrentSameKey", testCreateConcurrentSameKey},
		{"CreateInvalid", testCreateInvalid},
		{"AssignDriver", testAssignDriver},
		{"AssignIdempotent", testAssignIdempotent},
		{"FullRide", testFullRide},
		{"TransitionErrors", testTransitionErrors},
		{"DriverWithdrawal", testDriverWithdrawal},
		{"Cancellation", testCancellation},
		{"NoDriverFound", testNoDriverFound},
		{"TransitionIdempotent", testTransitionIdempotent},
		{"TransitionExpectVersion", testTransitionExpectVersion},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"ListRegions", testListRegions},
		{"EventsAndTailer", testEventsAndTailer},
		{"ConcurrentAssign", testConcurrentAssign},
		{"ChainedSupply", testChainedSupply},
		{"ConcurrentAssignWhileRiding", testConcurrentAssignWhileRiding},
		{"Rate", testRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// NewTripRequest returns a valid CreateTrip for rider with a random key.
func NewTripRequest(rider string) store.CreateTrip {
	return store.CreateTrip{
		IdempotencyKey: "create-" + uuid.NewString(),
		RiderID:        rider,
		Pickup:         geo.LatLng{Lat: 52.52, Lng: 13.405},
		Dropoff:        geo.LatLng{Lat: 52.50, Lng: 13.37},
		Product:        "standard",
		QuotedFare:     lifecycle.Money{Minor: 1890, Currency: "EUR"},
		QuoteID:        "q-" + uuid.NewString(),
		Region:         "europe-west3",
	}
}

func mustCreate(t *testing.T, s store.Store, rider string) store.Trip {
	t.Helper()
	tr, created, err := s.Create(ctx(t), NewTripRequest(rider))
	if err != nil || !created {
		t.Fatalf("Create: created=%v err=%v", created, err)
	}
	return tr
}

func mustAssign(t *testing.T, s store.Store, id uuid.UUID, driver string) store.Trip {
	t.Helper()
	return mustAssignAfter(t, s, id, driver, uuid.Nil)
}

// mustAssignAfter assigns a driver carrying a rider on trip after its next
// trip.
func mustAssignAfter(t *testing.T, s store.Store, id uuid.UUID, driver string, after uuid.UUID) store.Trip {
	t.Helper()
	tr, _, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: id, DriverID: driver, AfterTrip: after, IdempotencyKey: uuid.NewString()})
	if err != nil {
		t.Fatalf("AssignDriver(%s, %s after %s): %v", id, driver, after, err)
	}
	return tr
}

func transition(s store.Store, t *testing.T, id uuid.UUID, ev lifecycle.Event, actor lifecycle.Actor, actorID, reason string) (store.Trip, store.Event, error) {
	return s.Transition(ctx(t), store.Transition{TripID: id, Event: ev, Actor: actor, ActorID: actorID, Reason: reason, IdempotencyKey: uuid.NewString()})
}

func mustTransition(t *testing.T, s store.Store, id uuid.UUID, ev lifecycle.Event, actor lifecycle.Actor, actorID string) store.Trip {
	t.Helper()
	tr, _, err := transition(s, t, id, ev, actor, actorID, "")
	if err != nil {
		t.Fatalf("Transition(%s by %s): %v", ev, actor, err)
	}
	return tr
}

func testCreateAndGet(t *testing.T, s store.Store) {
	before, err := s.Now(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	req := NewTripRequest("rider-1")
	tr, created, err := s.Create(ctx(t), req)
	if err != nil || !created {
		t.Fatalf("Create: created=%v err=%v", created, err)
	}
	if tr.ID == uuid.Nil || tr.State != lifecycle.StateRequested || tr.Version != 1 || tr.RiderID != "rider-1" ||
		tr.QuotedFare != req.QuotedFare || tr.Product != req.Product || tr.Pickup != req.Pickup ||
		tr.Dropoff != req.Dropoff || tr.QuoteID != req.QuoteID || tr.Region != req.Region || tr.DriverID != "" ||
		!tr.FinalFare.IsZero() {
		t.Fatalf("created trip = %+v", tr)
	}
	if tr.CreatedAt.Before(before.Add(-time.Second)) || tr.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, store clock before = %v", tr.CreatedAt, before)
	}
	got, err := s.Get(ctx(t), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	assertSameTrip(t, got, tr)
	if _, err := s.Get(ctx(t), uuid.New()); !errors.Is(err, tripapi.ErrNotFound) {
		t.Errorf("Get(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.History(ctx(t), uuid.New()); !errors.Is(err, tripapi.ErrNotFound) {
		t.Errorf("History(unknown) err = %v, want ErrNotFound", err)
	}
	h, err := s.History(ctx(t), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 1 || h[0].Type != lifecycle.EventCreate || h[0].To != lifecycle.StateRequested || h[0].From != "" ||
		h[0].Version != 1 || h[0].Actor != lifecycle.ActorRider || h[0].ActorID != "rider-1" || h[0].TripID != tr.ID {
		t.Fatalf("history = %+v", h)
	}
	assertSameTrip(t, h[0].Trip, tr)
}

func assertSameTrip(t *testing.T, got, want store.Trip) {
	t.Helper()
	if !sameTrip(got, want) {
		t.Fatalf("trip mismatch\n got  %+v\n want %+v", got, want)
	}
}

func sameTrip(a, b store.Trip) bool {
	times := func(x store.Trip) []time.Time {
		return []time.Time{x.CreatedAt, x.UpdatedAt, x.AssignedAt, x.ArrivedAt, x.StartedAt, x.CompletedAt, x.EndedAt}
	}
	ta, tb := times(a), times(b)
	for i := range ta {
		if !ta[i].Equal(tb[i]) {
			return false
		}
	}
	a.CreatedAt, a.UpdatedAt, a.AssignedAt, a.ArrivedAt, a.StartedAt, a.CompletedAt, a.EndedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.UpdatedAt, b.AssignedAt, b.ArrivedAt, b.StartedAt, b.CompletedAt, b.EndedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func testCreateIdempotent(t *testing.T, s store.Store) {
	req := NewTripRequest("rider-1")
	first, created, err := s.Create(ctx(t), req)
	if err != nil || !created {
		t.Fatal(err)
	}
	mustAssign(t, s, first.ID, "driver-1")
	again, created, err := s.Create(ctx(t), req)
	if err != nil || created {
		t.Fatalf("repeat Create: created=%v err=%v", created, err)
	}
	if again.ID != first.ID || again.State != lifecycle.StateDriverAssigned {
		t.Fatalf("repeat Create returned %+v, want trip %s as it is now", again, first.ID)
	}
	other := req
	other.RiderID = "rider-2"
	if _, _, err := s.Create(ctx(t), other); !errors.Is(err, tripapi.ErrIdempotencyKeyReused) {
		t.Fatalf("key reuse with another payload: err = %v", err)
	}
	page, err := s.List(ctx(t), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Trips) != 1 {
		t.Fatalf("%d trips, want 1", len(page.Trips))
	}
}

func testCreateConcurrentSameKey(t *testing.T, s store.Store) {
	req := NewTripRequest("rider-1")
	const n = 20
	ids := make([]uuid.UUID, n)
	createdCount := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tr, created, err := s.Create(ctx(t), req)
			if err != nil {
				t.Errorf("Create #%d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[i] = tr.ID
			if created {
				createdCount++
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("same key yielded trips %v", ids)
		}
	}
	if createdCount != 1 {
		t.Fatalf("%d calls report created, want 1", createdCount)
	}
	page, err := s.List(ctx(t), store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Trips) != 1 {
		t.Fatalf("%d trips, want 1", len(page.Trips))
	}
}

func testCreateInvalid(t *testing.T, s store.Store) {
	tests := []struct {
		name   string
		mutate func(*store.CreateTrip)
	}{
		{"no key", func(c *store.CreateTrip) { c.IdempotencyKey = "" }},
		{"no rider", func(c *store.CreateTrip) { c.RiderID = "" }},
		{"no product", func(c *store.CreateTrip) { c.Product = "" }},
		{"bad pickup", func(c *store.CreateTrip) { c.Pickup.Lat = 91 }},
		{"negative fare", func(c *store.CreateTrip) { c.QuotedFare.Minor = -1 }},
		{"bad currency", func(c *store.CreateTrip) { c.QuotedFare.Currency = "eur" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := NewTripRequest("rider-1")
			tt.mutate(&req)
			if _, _, err := s.Create(ctx(t), req); !errors.Is(err, tripapi.ErrInvalidArgument) {
				t.Fatalf("err = %v, want ErrInvalidArgument", err)
			}
		})
	}
	req := NewTripRequest("rider-1")
	req.Region = ""
	tr, _, err := s.Create(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Region != store.DefaultRegion {
		t.Errorf("region = %q, want default %q", tr.Region, store.DefaultRegion)
	}
}

func testAssignDriver(t *testing.T, s store.Store) {
	a := mustCreate(t, s, "rider-a")
	b := mustCreate(t, s, "rider-b")
	tr, ev, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: a.ID, DriverID: "driver-1", IdempotencyKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if tr.State != lifecycle.StateDriverAssigned || tr.DriverID != "driver-1" || tr.Version != 2 || tr.AssignedAt.IsZero() {
		t.Fatalf("assigned trip = %+v", tr)
	}
	if ev.Type != lifecycle.EventAssign || ev.From != lifecycle.StateRequested || ev.To != lifecycle.StateDriverAssigned ||
		ev.DriverID != "driver-1" || ev.Version != 2 || ev.Actor != lifecycle.ActorSystem || !ev.At.Equal(tr.AssignedAt) {
		t.Fatalf("assign event = %+v", ev)
	}
	assertSameTrip(t, ev.Trip, tr)

	// Lost compare-and-set: the trip is no longer REQUESTED.
	_, _, err = s.AssignDriver(ctx(t), store.AssignDriver{TripID: a.ID, DriverID: "driver-2", IdempotencyKey: "k2"})
	if !errors.Is(err, tripapi.ErrTripNotRequested) || !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("second assign err = %v, want ErrTripNotRequested", err)
	}
	// The driver is busy: it already holds a pickup.
	_, _, err = s.AssignDriver(ctx(t), store.AssignDriver{TripID: b.ID, DriverID: "driver-1", IdempotencyKey: "k3"})
	if !errors.Is(err, tripapi.ErrDriverBusy) {
		t.Fatalf("busy driver err = %v, want ErrDriverBusy", err)
	}
	if got, _ := s.Get(ctx(t), b.ID); got.State != lifecycle.StateRequested || got.Version != 1 {
		t.Fatalf("failed assignment changed the trip: %+v", got)
	}
	_, _, err = s.AssignDriver(ctx(t), store.AssignDriver{TripID: uuid.New(), DriverID: "driver-3", IdempotencyKey: "k4"})
	if !errors.Is(err, tripapi.ErrNotFound) {
		t.Fatalf("unknown trip err = %v", err)
	}
	_, _, err = s.AssignDriver(ctx(t), store.AssignDriver{TripID: b.ID, DriverID: "", IdempotencyKey: "k5"})
	if !errors.Is(err, tripapi.ErrInvalidArgument) {
		t.Fatalf("no driver err = %v", err)
	}
	h, err := s.History(ctx(t), a.ID)
	if err != nil || len(h) != 2 {
		t.Fatalf("history = %+v, %v", h, err)
	}
}

func testAssignIdempotent(t *testing.T, s store.Store) {
	a := mustCreate(t, s, "rider-a")
	req := store.AssignDriver{TripID: a.ID, DriverID: "driver-1", IdempotencyKey: "assign-1"}
	first, ev1, err := s.AssignDriver(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	mustTransition(t, s, a.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-1")
	// The retry of an ambiguous commit gets the original result, even though
	// the trip has moved on since.
	again, ev2, err := s.AssignDriver(ctx(t), req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if ev2.ID != ev1.ID || again.Version != first.Version || again.State != lifecycle.StateDriverAssigned {
		t.Fatalf("repeat returned %+v / %+v, want original", again, ev2)
	}
	other := req
	other.DriverID = "driver-2"
	if _, _, err := s.AssignDriver(ctx(t), other); !errors.Is(err, tripapi.ErrIdempotencyKeyReused) {
		t.Fatalf("key reuse err = %v", err)
	}
	h, _ := s.History(ctx(t), a.ID)
	if len(h) != 3 {
		t.Fatalf("history has %d events, want 3", len(h))
	}
}

func testFullRide(t *testing.T, s store.Store) {
	tr := mustCreate(t, s, "rider-1")
	mustAssign(t, s, tr.ID, "driver-1")
	arrived := mustTransition(t, s, tr.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-1")
	started := mustTransition(t, s, tr.ID, lifecycle.EventStart, lifecycle.ActorDriver, "driver-1")
	done := mustTransition(t, s, tr.ID, lifecycle.EventComplete, lifecycle.ActorDriver, "driver-1")
	if arrived.ArrivedAt.IsZero() || started.StartedAt.IsZero() || done.CompletedAt.IsZero() {
		t.Fatalf("timestamps not set: %+v", done)
	}
	if done.State != lifecycle.StateCompleted || done.FinalFare != tr.QuotedFare || done.Version != 5 || done.DriverID != "driver-1" {
		t.Fatalf("completed trip = %+v", done)
	}
	if !(done.AssignedAt.Before(done.ArrivedAt) || done.AssignedAt.Equal(done.ArrivedAt)) ||
		done.StartedAt.Before(done.ArrivedAt) || done.CompletedAt.Before(done.StartedAt) {
		t.Errorf("timestamps out of order: %+v", done)
	}
	got, _ := s.Get(ctx(t), tr.ID)
	assertSameTrip(t, got, done)
	h, err := s.History(ctx(t), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []lifecycle.Event{lifecycle.EventCreate, lifecycle.EventAssign, lifecycle.EventArrive, lifecycle.EventStart, lifecycle.EventComplete}
	if len(h) != len(wantTypes) {
		t.Fatalf("history has %d events", len(h))
	}
	for i, ev := range h {
		if ev.Type != wantTypes[i] || ev.Version != int64(i+1) {
			t.Errorf("event %d = %s v%d, want %s v%d", i, ev.Type, ev.Version, wantTypes[i], i+1)
		}
		if i > 0 && ev.From != h[i-1].To {
			t.Errorf("event %d from %s, previous to %s", i, ev.From, h[i-1].To)
		}
	}
	assertSameTrip(t, h[len(h)-1].Trip, done)
	// The driver is free again.
	next := mustCreate(t, s, "rider-2")
	mustAssign(t, s, next.ID, "driver-1")
}

func testTransitionErrors(t *testing.T, s store.Store) {
	requested := mustCreate(t, s, "rider-1")
	inProgress := mustCreate(t, s, "rider-2")
	mustAssign(t, s, inProgress.ID, "driver-2")
	mustTransition(t, s, inProgress.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-2")
	mustTransition(t, s, inProgress.ID, lifecycle.EventStart, lifecycle.ActorDriver, "driver-2")
	tests := []struct {
		name    string
		trip    uuid.UUID
		event   lifecycle.Event
		actor   lifecycle.Actor
		actorID string
		want    error
	}{
		{"start while requested", requested.ID, lifecycle.EventStart, lifecycle.ActorDispatcher, "disp-1", lifecycle.ErrInvalidTransition},
		{"complete while requested", requested.ID, lifecycle.EventComplete, lifecycle.ActorSystem, "", lifecycle.ErrInvalidTransition},
		{"rider arrives", inProgress.ID, lifecycle.EventArrive, lifecycle.ActorRider, "rider-2", lifecycle.ErrInvalidTransition},
		{"another rider cancels", requested.ID, lifecycle.EventCancel, lifecycle.ActorRider, "rider-x", lifecycle.ErrActorNotAllowed},
		{"rider completes", inProgress.ID, lifecycle.EventComplete, lifecycle.ActorRider, "rider-2", lifecycle.ErrActorNotAllowed},
		{"another driver completes", inProgress.ID, lifecycle.EventComplete, lifecycle.ActorDriver, "driver-9", lifecycle.ErrActorNotAllowed},
		{"driver cancels in progress", inProgress.ID, lifecycle.EventCancel, lifecycle.ActorDriver, "driver-2", lifecycle.ErrActorNotAllowed},
		{"dispatcher without id", requested.ID, lifecycle.EventCancel, lifecycle.ActorDispatcher, "", lifecycle.ErrInvalidCommand},
		{"unknown event", requested.ID, "teleport", lifecycle.ActorSystem, "", lifecycle.ErrInvalidCommand},
		{"assign through Transition", requested.ID, lifecycle.EventAssign, lifecycle.ActorSystem, "", tripapi.ErrInvalidArgument},
		{"unknown trip", uuid.New(), lifecycle.EventCancel, lifecycle.ActorSystem, "", tripapi.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := s.Get(ctx(t), tt.trip)
			_, _, err := transition(s, t, tt.trip, tt.event, tt.actor, tt.actorID, "")
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var te *lifecycle.TransitionError
			if errors.Is(tt.want, lifecycle.ErrInvalidTransition) || errors.Is(tt.want, lifecycle.ErrActorNotAllowed) {
				if !errors.As(err, &te) {
					t.Fatalf("err %v is not a *lifecycle.TransitionError", err)
				}
			}
			after, _ := s.Get(ctx(t), tt.trip)
			if after.Version != before.Version {
				t.Fatalf("refused transition changed the trip")
			}
		})
	}
}

func testDriverWithdrawal(t *testing.T, s store.Store) {
	for _, from := range []lifecycle.State{lifecycle.StateDriverAssigned, lifecycle.StateDriverArrived} {
		t.Run(string(from), func(t *testing.T) {
			tr := mustCreate(t, s, "rider-"+string(from))
			driver := "driver-" + string(from)
			mustAssign(t, s, tr.ID, driver)
			if from == lifecycle.StateDriverArrived {
				mustTransition(t, s, tr.ID, lifecycle.EventArrive, lifecycle.ActorDriver, driver)
			}
			back, ev, err := transition(s, t, tr.ID, lifecycle.EventCancel, lifecycle.ActorDriver, driver, "flat tyre")
			if err != nil {
				t.Fatal(err)
			}
			if back.State != lifecycle.StateRequested || back.DriverID != "" || !back.AssignedAt.IsZero() || !back.ArrivedAt.IsZero() {
				t.Fatalf("after driver cancel: %+v", back)
			}
			if ev.Type != lifecycle.EventUnassign || ev.DriverID != driver || ev.Reason != "flat tyre" || ev.From != from {
				t.Fatalf("event = %+v", ev)
			}
			// The driver is free, and the trip can be dispatched again.
			other := mustCreate(t, s, "rider-other-"+string(from))
			mustAssign(t, s, other.ID, driver)
			mustAssign(t, s, tr.ID, driver+"-b")
		})
	}
}

func testCancellation(t *testing.T, s store.Store) {
	free := mustCreate(t, s, "rider-1")
	c, ev, err := transition(s, t, free.ID, lifecycle.EventCancel, lifecycle.ActorRider, "rider-1", "changed my mind")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != lifecycle.StateCancelled || c.EndedAt.IsZero() || c.CancelledBy != lifecycle.ActorRider ||
		c.EndReason != "changed my mind" || !c.FinalFare.IsZero() || ev.Type != lifecycle.EventCancel {
		t.Fatalf("cancelled trip = %+v", c)
	}
	if _, _, err := transition(s, t, free.ID, lifecycle.EventCancel, lifecycle.ActorRider, "rider-1", ""); !errors.Is(err, lifecycle.ErrInvalidTransition) {
		t.Fatalf("cancel twice err = %v", err)
	}
	// Rider cancels after the driver arrived: cancellation fee.
	late := mustCreate(t, s, "rider-2")
	mustAssign(t, s, late.ID, "driver-2")
	mustTransition(t, s, late.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-2")
	c, _, err = transition(s, t, late.ID, lifecycle.EventCancel, lifecycle.ActorRider, "rider-2", "")
	if err != nil {
		t.Fatal(err)
	}
	wantFee := lifecycle.Money{Minor: min(lifecycle.DefaultRules.CancellationFee, late.QuotedFare.Minor), Currency: late.QuotedFare.Currency}
	if c.FinalFare != wantFee || c.DriverID != "driver-2" {
		t.Fatalf("late cancel = %+v, want fee %+v", c, wantFee)
	}
	// The driver is free after the cancellation.
	mustAssign(t, s, mustCreate(t, s, "rider-3").ID, "driver-2")
	// Dispatcher cancels a ride in progress.
	ride := mustCreate(t, s, "rider-4")
	mustAssign(t, s, ride.ID, "driver-4")
	mustTransition(t, s, ride.ID, lifecycle.EventArrive, lifecycle.ActorDispatcher, "disp-1")
	mustTransition(t, s, ride.ID, lifecycle.EventStart, lifecycle.ActorDriver, "driver-4")
	c = mustTransition(t, s, ride.ID, lifecycle.EventCancel, lifecycle.ActorDispatcher, "disp-1")
	if c.State != lifecycle.StateCancelled || c.CancelledBy != lifecycle.ActorDispatcher {
		t.Fatalf("dispatcher cancel = %+v", c)
	}
}

func testNoDriverFound(t *testing.T, s store.Store) {
	tr := mustCreate(t, s, "rider-1")
	got, ev, err := transition(s, t, tr.ID, lifecycle.EventNoDriverFound, lifecycle.ActorSystem, "", "no supply within 5 km")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != lifecycle.StateNoDriverFound || got.EndedAt.IsZero() || got.EndReason != "no supply within 5 km" || ev.Actor != lifecycle.ActorSystem {
		t.Fatalf("trip = %+v", got)
	}
	if _, _, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: tr.ID, DriverID: "d", IdempotencyKey: "x"}); !errors.Is(err, tripapi.ErrTripNotRequested) {
		t.Fatalf("assign after no driver found err = %v", err)
	}
}

func testTransitionIdempotent(t *testing.T, s store.Store) {
	tr := mustCreate(t, s, "rider-1")
	mustAssign(t, s, tr.ID, "driver-1")
	req := store.Transition{TripID: tr.ID, Event: lifecycle.EventArrive, Actor: lifecycle.ActorDriver, ActorID: "driver-1", IdempotencyKey: "arrive-1"}
	first, ev1, err := s.Transition(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	again, ev2, err := s.Transition(ctx(t), req)
	if err != nil || ev2.ID != ev1.ID || again.Version != first.Version {
		t.Fatalf("repeat = %+v, %+v, %v", again, ev2, err)
	}
	other := req
	other.TripID = mustCreate(t, s, "rider-2").ID
	if _, _, err := s.Transition(ctx(t), other); !errors.Is(err, tripapi.ErrIdempotencyKeyReused) {
		t.Fatalf("key reuse on another trip err = %v", err)
	}
	h, _ := s.History(ctx(t), tr.ID)
	if len(h) != 3 {
		t.Fatalf("history has %d events, want 3", len(h))
	}
}

func testTransitionExpectVersion(t *testing.T, s store.Store) {
	tr := mustAssign(t, s, mustCreate(t, s, "rider-1").ID, "driver-1")
	stale := store.Transition{TripID: tr.ID, Event: lifecycle.EventUnassign, Actor: lifecycle.ActorSystem, Reason: "driver_unresponsive",
		ExpectVersion: tr.Version - 1, IdempotencyKey: uuid.NewString()}
	if _, _, err := s.Transition(ctx(t), stale); !errors.Is(err, tripapi.ErrTripChanged) {
		t.Fatalf("transition at a stale version: err = %v, want ErrTripChanged", err)
	}
	if got, _ := s.Get(ctx(t), tr.ID); got.Version != tr.Version || got.State != lifecycle.StateDriverAssigned {
		t.Fatalf("refused transition changed the trip: %+v", got)
	}
	current := stale
	current.ExpectVersion, current.IdempotencyKey = tr.Version, uuid.NewString()
	got, ev, err := s.Transition(ctx(t), current)
	if err != nil || got.State != lifecycle.StateRequested || ev.Reason != "driver_unresponsive" {
		t.Fatalf("transition at the current version: %+v %+v %v", got, ev, err)
	}
}

func testList(t *testing.T, s store.Store) {
	var trips []store.Trip
	for i := range 6 {
		trips = append(trips, mustCreate(t, s, fmt.Sprintf("rider-%d", i%2)))
	}
	mustAssign(t, s, trips[1].ID, "driver-1")
	mustAssign(t, s, trips[2].ID, "driver-2")
	mustTransition(t, s, trips[3].ID, lifecycle.EventCancel, lifecycle.ActorRider, "rider-1")
	ids := func(p store.Page) []uuid.UUID {
		var out []uuid.UUID
		for _, t := range p.Trips {
			out = append(out, t.ID)
		}
		return out
	}
	set := func(idx ...int) map[uuid.UUID]bool {
		m := map[uuid.UUID]bool{}
		for _, i := range idx {
			m[trips[i].ID] = true
		}
		return m
	}
	tests := []struct {
		name string
		f    store.Filter
		want map[uuid.UUID]bool
	}{
		{"all", store.Filter{}, set(0, 1, 2, 3, 4, 5)},
		{"requested", store.Filter{States: []lifecycle.State{lifecycle.StateRequested}}, set(0, 4, 5)},
		{"assigned or cancelled", store.Filter{States: []lifecycle.State{lifecycle.StateDriverAssigned, lifecycle.StateCancelled}}, set(1, 2, 3)},
		{"rider", store.Filter{RiderID: "rider-1"}, set(1, 3, 5)},
		{"driver", store.Filter{DriverID: "driver-2"}, set(2)},
		{"rider and state", store.Filter{RiderID: "rider-0", States: []lifecycle.State{lifecycle.StateRequested}}, set(0, 4)},
		{"created range", store.Filter{CreatedAfter: trips[2].CreatedAt, CreatedBefore: trips[4].CreatedAt}, set(2, 3)},
		{"nobody", store.Filter{RiderID: "nobody"}, set()},
		// Trips 1–3 changed after trip 5 was created; 0 and 4 did not.
		{"updated before", store.Filter{UpdatedBefore: trips[5].CreatedAt}, set(0, 4)},
		{"active and updated before", store.Filter{States: []lifecycle.State{lifecycle.StateRequested}, UpdatedBefore: trips[5].CreatedAt}, set(0, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.List(ctx(t), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			got := ids(p)
			if len(got) != len(tt.want) || p.NextPageToken != "" {
				t.Fatalf("got %d trips (next %q), want %d", len(got), p.NextPageToken, len(tt.want))
			}
			for _, id := range got {
				if !tt.want[id] {
					t.Fatalf("unexpected trip %s", id)
				}
			}
			for i := 1; i < len(p.Trips); i++ {
				if p.Trips[i].CreatedAt.After(p.Trips[i-1].CreatedAt) {
					t.Fatalf("not newest first")
				}
			}
		})
	}
	if _, err := s.List(ctx(t), store.Filter{PageToken: "garbage!"}); !errors.Is(err, tripapi.ErrInvalidArgument) {
		t.Fatalf("bad token err = %v", err)
	}
}

// testListRegions: a sweep that names regions sees only trips homed there,
// alone or with other filters.
func testListRegions(t *testing.T, s store.Store) {
	create := func(region string) store.Trip {
		req := NewTripRequest("rider-r")
		req.Region = region
		tr, _, err := s.Create(ctx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	west, east, east2, south := create("us-west"), create("us-east"), create("us-east"), create("sa-east")
	mustAssign(t, s, east2.ID, "driver-r")
	requested := []lifecycle.State{lifecycle.StateRequested}
	tests := []struct {
		name string
		f    store.Filter
		want []uuid.UUID
	}{
		{"one region", store.Filter{Regions: []string{"us-east"}}, []uuid.UUID{east.ID, east2.ID}},
		{"two regions", store.Filter{Regions: []string{"us-west", "sa-east"}}, []uuid.UUID{west.ID, south.ID}},
		{"region and state", store.Filter{Regions: []string{"us-east"}, States: requested}, []uuid.UUID{east.ID}},
		{"stale read", store.Filter{Regions: []string{"us-east"}, States: requested, AllowStale: true}, []uuid.UUID{east.ID}},
		{"unknown region", store.Filter{Regions: []string{"eu-north"}}, nil},
		{"no region filter", store.Filter{RiderID: "rider-r"}, []uuid.UUID{west.ID, east.ID, east2.ID, south.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := s.List(ctx(t), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []uuid.UUID
			for _, tr := range p.Trips {
				got = append(got, tr.ID)
			}
			slices.SortFunc(got, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
			want := slices.Clone(tt.want)
			slices.SortFunc(want, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	const n = 11
	for range n {
		mustCreate(t, s, "rider-p")
	}
	seen := map[uuid.UUID]bool{}
	var order []store.Trip
	token := ""
	pages := 0
	for {
		p, err := s.List(ctx(t), store.Filter{RiderID: "rider-p", PageSize: 4, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(p.Trips) > 4 {
			t.Fatalf("page of %d", len(p.Trips))
		}
		// A trip created while paging sorts first and must not disturb the
		// pages after the first.
		if pages == 1 {
			mustCreate(t, s, "rider-p")
		}
		for _, tr := range p.Trips {
			if seen[tr.ID] {
				t.Fatalf("trip %s on two pages", tr.ID)
			}
			seen[tr.ID] = true
			order = append(order, tr)
		}
		if p.NextPageToken == "" {
			break
		}
		token = p.NextPageToken
	}
	if len(order) != n || pages != 3 {
		t.Fatalf("paged %d trips in %d pages, want %d in 3", len(order), pages, n)
	}
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		if b.CreatedAt.After(a.CreatedAt) || (b.CreatedAt.Equal(a.CreatedAt) && b.ID.String() > a.ID.String()) {
			t.Fatalf("order broken at %d", i)
		}
	}
}

func testEventsAndTailer(t *testing.T, s store.Store) {
	tail := store.NewTailer(s, 2*time.Second)
	// Events committed before the first poll are not delivered.
	mustCreate(t, s, "rider-old")
	if evs, err := tail.Poll(ctx(t)); err != nil || len(evs) != 0 {
		t.Fatalf("first poll = %v, %v", evs, err)
	}
	tr := mustCreate(t, s, "rider-1")
	mustAssign(t, s, tr.ID, "driver-1")
	var got []store.Event
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		evs, err := tail.Poll(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs...)
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 2 || got[0].Type != lifecycle.EventCreate || got[1].Type != lifecycle.EventAssign || got[1].TripID != tr.ID {
		t.Fatalf("tailed %+v", got)
	}
	if got[1].Trip.DriverID != "driver-1" || got[1].Trip.Version != 2 {
		t.Fatalf("event snapshot = %+v", got[1].Trip)
	}
	// Each event once: the lookback re-read does not repeat them.
	evs, err := tail.Poll(ctx(t))
	if err != nil || len(evs) != 0 {
		t.Fatalf("repeat poll = %d events, %v", len(evs), err)
	}
	all, err := s.EventRefs(ctx(t), store.EventQuery{Since: got[0].At})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 || all[0].ID != got[0].ID || !all[0].At.Equal(got[0].At) {
		t.Fatalf("EventRefs(since) = %+v, want %s first", all, got[0].ID)
	}
	for i := 1; i < len(all); i++ {
		if all[i].At.Before(all[i-1].At) {
			t.Fatalf("EventRefs not in At order")
		}
	}
	lim, err := s.EventRefs(ctx(t), store.EventQuery{Since: got[0].At, Limit: 1})
	if err != nil || len(lim) != 1 {
		t.Fatalf("EventRefs(limit 1) = %d, %v", len(lim), err)
	}
	// By id: in At order whatever order they are asked in; unknown ids
	// are skipped.
	byID, err := s.EventsByID(ctx(t), []uuid.UUID{got[1].ID, uuid.New(), got[0].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(byID) != 2 || byID[0].ID != got[0].ID || byID[1].ID != got[1].ID || byID[1].Trip.DriverID != "driver-1" {
		t.Fatalf("EventsByID = %+v", byID)
	}
}

// testConcurrentAssign races assignments of few drivers to many trips and
// checks the invariants: no driver with two pickups, no trip with two
// drivers, and every reported success is what the store holds.
func testConcurrentAssign(t *testing.T, s store.Store) {
	const trips, drivers, calls = 12, 5, 60
	ids := make([]uuid.UUID, trips)
	for i := range ids {
		ids[i] = mustCreate(t, s, fmt.Sprintf("rider-%d", i)).ID
	}
	type win struct {
		trip   uuid.UUID
		driver string
		event  uuid.UUID
	}
	var (
		mu   sync.Mutex
		wins []win
		wg   sync.WaitGroup
	)
	for i := range calls {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			trip := ids[r.IntN(trips)]
			driver := fmt.Sprintf("driver-%d", r.IntN(drivers))
			_, ev, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: trip, DriverID: driver, IdempotencyKey: fmt.Sprintf("call-%d", i)})
			switch {
			case err == nil:
				mu.Lock()
				wins = append(wins, win{trip, driver, ev.ID})
				mu.Unlock()
			case errors.Is(err, tripapi.ErrTripNotRequested), errors.Is(err, tripapi.ErrDriverBusy):
			default:
				t.Errorf("AssignDriver: %v", err)
			}
		})
	}
	wg.Wait()
	CheckAssignments(t, s, ids, len(wins))
	for _, w := range wins {
		tr, err := s.Get(ctx(t), w.trip)
		if err != nil || tr.DriverID != w.driver {
			t.Fatalf("winner %s→%s not in store: %+v %v", w.driver, w.trip, tr, err)
		}
		h, _ := s.History(ctx(t), w.trip)
		if len(h) != 2 || h[1].ID != w.event || h[1].DriverID != w.driver {
			t.Fatalf("winner's assign event missing: %+v", h)
		}
	}
}

// testChainedSupply: a driver holds at most one pickup and at most one ride
// in progress. Carrying a rider it can be assigned its next trip, and arrive
// at it, but that trip cannot start until the ride ends (completed or
// cancelled); a refused start changes nothing, not even its key.
func testChainedSupply(t *testing.T, s store.Store) {
	tests := []struct {
		name    string
		end     lifecycle.Event
		actor   lifecycle.Actor
		actorID string // "" for the trip's driver
	}{
		{"ride completed", lifecycle.EventComplete, lifecycle.ActorDriver, ""},
		{"ride cancelled", lifecycle.EventCancel, lifecycle.ActorDispatcher, "disp-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			driver := "driver-chain-" + string(tt.end)
			endBy := cmp.Or(tt.actorID, driver)
			ride := mustCreate(t, s, "rider-ride")
			other := mustCreate(t, s, "rider-other")
			assignOther := func(stage string, after uuid.UUID) {
				t.Helper()
				_, _, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: other.ID, DriverID: driver, AfterTrip: after, IdempotencyKey: uuid.NewString()})
				if !errors.Is(err, tripapi.ErrDriverBusy) {
					t.Fatalf("pickup while %s: err = %v, want ErrDriverBusy", stage, err)
				}
				if got, _ := s.Get(ctx(t), other.ID); got.State != lifecycle.StateRequested || got.Version != 1 {
					t.Fatalf("refused assignment changed the trip: %+v", got)
				}
			}
			// A driver with a pickup cannot take a second one, assigned or
			// arrived.
			mustAssign(t, s, ride.ID, driver)
			assignOther("assigned", uuid.Nil)
			mustTransition(t, s, ride.ID, lifecycle.EventArrive, lifecycle.ActorDriver, driver)
			assignOther("arrived", uuid.Nil)
			assignOther("arrived, naming its trip", ride.ID)
			mustTransition(t, s, ride.ID, lifecycle.EventStart, lifecycle.ActorDriver, driver)

			// Carrying a rider, it gets a pickup only as the ride's next
			// trip: one that does not name the ride, or names another, is
			// refused.
			assignOther("riding, not naming the ride", uuid.Nil)
			assignOther("riding, naming another ride", other.ID)
			next := mustCreate(t, s, "rider-next")
			if got := mustAssignAfter(t, s, next.ID, driver, ride.ID); got.State != lifecycle.StateDriverAssigned || got.DriverID != driver {
				t.Fatalf("next trip = %+v", got)
			}
			// ... and that is its one pickup.
			assignOther("riding with a pickup", ride.ID)
			// The driver withdraws from the next trip and is free to take
			// another pickup (and the withdrawn trip to go to another driver).
			if back := mustTransition(t, s, next.ID, lifecycle.EventCancel, lifecycle.ActorDriver, driver); back.State != lifecycle.StateRequested {
				t.Fatalf("after withdrawal: %+v", back)
			}
			mustAssignAfter(t, s, other.ID, driver, ride.ID)
			mustAssign(t, s, next.ID, driver+"-b")

			// The next trip can arrive, but not start while the ride is in
			// progress.
			arrived := mustTransition(t, s, other.ID, lifecycle.EventArrive, lifecycle.ActorDriver, driver)
			before, err := s.History(ctx(t), other.ID)
			if err != nil {
				t.Fatal(err)
			}
			start := store.Transition{TripID: other.ID, Event: lifecycle.EventStart, Actor: lifecycle.ActorDriver, ActorID: driver, IdempotencyKey: uuid.NewString()}
			if _, _, err := s.Transition(ctx(t), start); !errors.Is(err, tripapi.ErrDriverBusy) {
				t.Fatalf("start while the ride is in progress: err = %v, want ErrDriverBusy", err)
			}
			got, _ := s.Get(ctx(t), other.ID)
			assertSameTrip(t, got, arrived)
			if after, _ := s.History(ctx(t), other.ID); len(after) != len(before) {
				t.Fatalf("refused start appended events: %d, was %d", len(after), len(before))
			}

			// Once the ride ends, the same request starts it.
			if ended := mustTransition(t, s, ride.ID, tt.end, tt.actor, endBy); ended.State.Active() {
				t.Fatalf("ride after %s = %+v", tt.end, ended)
			}
			started, ev, err := s.Transition(ctx(t), start)
			if err != nil {
				t.Fatalf("start after the ride ended: %v", err)
			}
			if started.State != lifecycle.StateInProgress || started.Version != arrived.Version+1 || ev.Type != lifecycle.EventStart {
				t.Fatalf("started = %+v, event %+v", started, ev)
			}
			// The chain goes on: riding again, the driver takes the next
			// pickup after this ride.
			mustAssignAfter(t, s, mustCreate(t, s, "rider-after").ID, driver, other.ID)
		})
	}
}

// testConcurrentAssignWhileRiding races assignments of one driver with a
// ride in progress to many trips: exactly one wins (its one pickup), every
// other call gets ErrDriverBusy, and the ride is untouched.
func testConcurrentAssignWhileRiding(t *testing.T, s store.Store) {
	const driver, n = "driver-riding", 16
	ride := mustCreate(t, s, "rider-ride")
	mustAssign(t, s, ride.ID, driver)
	mustTransition(t, s, ride.ID, lifecycle.EventArrive, lifecycle.ActorDriver, driver)
	riding := mustTransition(t, s, ride.ID, lifecycle.EventStart, lifecycle.ActorDriver, driver)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = mustCreate(t, s, fmt.Sprintf("rider-%d", i)).ID
	}
	var (
		mu     sync.Mutex
		winner uuid.UUID
		wins   int
		wg     sync.WaitGroup
	)
	for i, id := range ids {
		wg.Go(func() {
			_, _, err := s.AssignDriver(ctx(t), store.AssignDriver{TripID: id, DriverID: driver, AfterTrip: ride.ID, IdempotencyKey: fmt.Sprintf("riding-%d", i)})
			switch {
			case err == nil:
				mu.Lock()
				winner, wins = id, wins+1
				mu.Unlock()
			case errors.Is(err, tripapi.ErrDriverBusy), errors.Is(err, tripapi.ErrTripNotRequested):
			default:
				t.Errorf("AssignDriver: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d assignments of a riding driver succeeded, want exactly 1", wins)
	}
	CheckAssignments(t, s, ids, 1)
	if tr, err := s.Get(ctx(t), winner); err != nil || tr.DriverID != driver || tr.State != lifecycle.StateDriverAssigned {
		t.Fatalf("winner %s: %+v %v", winner, tr, err)
	}
	got, err := s.Get(ctx(t), ride.ID)
	if err != nil {
		t.Fatal(err)
	}
	assertSameTrip(t, got, riding)
}

// CheckAssignments checks the assignment invariants over trips ids (each
// REQUESTED or DRIVER_ASSIGNED: no driver holds two of them, no trip had two
// drivers) and that the number of assigned trips equals successes.
func CheckAssignments(t *testing.T, s store.Store, ids []uuid.UUID, successes int) {
	t.Helper()
	byDriver := map[string]uuid.UUID{}
	assigned := 0
	for _, id := range ids {
		tr, err := s.Get(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.History(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		assigns := 0
		for _, ev := range h {
			if ev.Type == lifecycle.EventAssign {
				assigns++
			}
		}
		switch tr.State {
		case lifecycle.StateRequested:
			if tr.DriverID != "" || assigns != 0 {
				t.Fatalf("requested trip %s has driver %q / %d assign events", id, tr.DriverID, assigns)
			}
		case lifecycle.StateDriverAssigned:
			assigned++
			if assigns != 1 {
				t.Fatalf("trip %s has %d assign events: two drivers", id, assigns)
			}
			if other, dup := byDriver[tr.DriverID]; dup {
				t.Fatalf("driver %s on trips %s and %s", tr.DriverID, other, id)
			}
			byDriver[tr.DriverID] = id
		default:
			t.Fatalf("trip %s in %s", id, tr.State)
		}
	}
	if assigned != successes {
		t.Fatalf("%d trips assigned, %d successful calls", assigned, successes)
	}
}

func testRate(t *testing.T, s store.Store) {
	tr := mustCreate(t, s, "rider-1")
	if _, err := s.Rate(ctx(t), store.Rate{TripID: tr.ID, RiderID: "rider-1", Stars: 5}); !errors.Is(err, tripapi.ErrNotCompleted) {
		t.Fatalf("rate before completion err = %v", err)
	}
	mustAssign(t, s, tr.ID, "driver-1")
	mustTransition(t, s, tr.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-1")
	mustTransition(t, s, tr.ID, lifecycle.EventStart, lifecycle.ActorDriver, "driver-1")
	done := mustTransition(t, s, tr.ID, lifecycle.EventComplete, lifecycle.ActorDriver, "driver-1")
	tests := []struct {
		name string
		req  store.Rate
		want error
	}{
		{"other rider", store.Rate{TripID: tr.ID, RiderID: "rider-2", Stars: 4}, lifecycle.ErrActorNotAllowed},
		{"zero stars", store.Rate{TripID: tr.ID, RiderID: "rider-1", Stars: 0}, tripapi.ErrInvalidArgument},
		{"six stars", store.Rate{TripID: tr.ID, RiderID: "rider-1", Stars: 6}, tripapi.ErrInvalidArgument},
		{"unknown trip", store.Rate{TripID: uuid.New(), RiderID: "rider-1", Stars: 4}, tripapi.ErrNotFound},
		{"rated", store.Rate{TripID: tr.ID, RiderID: "rider-1", Stars: 3, Comment: "ok"}, nil},
		{"re-rated", store.Rate{TripID: tr.ID, RiderID: "rider-1", Stars: 5}, nil},
	}
	for _, tt := range tests {
		got, err := s.Rate(ctx(t), tt.req)
		if !errors.Is(err, tt.want) {
			t.Fatalf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
		if err == nil && got.Rating != tt.req.Stars {
			t.Fatalf("%s: rating = %d", tt.name, got.Rating)
		}
	}
	got, _ := s.Get(ctx(t), tr.ID)
	if got.Rating != 5 || got.Version != done.Version || !got.UpdatedAt.Equal(done.UpdatedAt) {
		t.Fatalf("after rating: %+v", got)
	}
}

package storetest

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
)

// OutboxStore is a store with its outbox on.
type OutboxStore interface {
	store.Store
	store.Outbox
}

// RunOutbox checks the outbox contract against a fresh store with its
// outbox on. exclusiveLease says whether the store's relay lease excludes
// other holders (a store shared by instances) or is always granted (a
// store living in one process).
func RunOutbox(t *testing.T, s OutboxStore, exclusiveLease bool) {
	c := ctx(t)
	tr := mustCreate(t, s, "rider-outbox")
	mustAssign(t, s, tr.ID, "driver-outbox")
	mustTransition(t, s, tr.ID, lifecycle.EventArrive, lifecycle.ActorDriver, "driver-outbox")
	other := mustCreate(t, s, "rider-outbox-2")

	evs, err := s.PendingEvents(c, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("pending: %d events, want 4", len(evs))
	}
	for i, want := range []int64{1, 2, 3} {
		if evs[i].TripID != tr.ID || evs[i].Version != want || evs[i].Trip.Version != want {
			t.Fatalf("pending[%d] = trip %s v%d, want %s v%d", i, evs[i].TripID, evs[i].Version, tr.ID, want)
		}
	}
	if evs[3].TripID != other.ID || evs[3].Type != lifecycle.EventCreate {
		t.Fatalf("pending[3] = %+v, want the second trip's CREATED", evs[3])
	}
	if got, err := s.PendingEvents(c, 2); err != nil || len(got) != 2 || got[1].ID != evs[1].ID {
		t.Fatalf("limit 2: %d events, err %v", len(got), err)
	}
	gone := evs[0]
	gone.ID = uuid.New() // never pending
	if err := s.MarkRelayed(c, []store.Event{evs[0], evs[1], gone}); err != nil {
		t.Fatal(err)
	}
	rest, err := s.PendingEvents(c, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 2 || rest[0].ID != evs[2].ID || rest[1].ID != evs[3].ID {
		t.Fatalf("after marking two: %d pending", len(rest))
	}
	if err := s.MarkRelayed(c, evs[2:4]); err != nil {
		t.Fatal(err)
	}
	if rest, _ := s.PendingEvents(c, 100); len(rest) != 0 {
		t.Fatalf("after marking all: %d pending", len(rest))
	}

	ok, err := s.AcquireRelayLease(c, "a", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("a takes the free lease: %v %v", ok, err)
	}
	if ok, err := s.AcquireRelayLease(c, "a", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("a renews: %v %v", ok, err)
	}
	if !exclusiveLease {
		return
	}
	if ok, err := s.AcquireRelayLease(c, "b", 300*time.Millisecond); err != nil || ok {
		t.Fatalf("b takes a held lease: %v %v", ok, err)
	}
	time.Sleep(400 * time.Millisecond)
	if ok, err := s.AcquireRelayLease(c, "b", time.Second); err != nil || !ok {
		t.Fatalf("b takes an expired lease: %v %v", ok, err)
	}
	if ok, err := s.AcquireRelayLease(c, "a", time.Second); err != nil || ok {
		t.Fatalf("a takes b's lease back: %v %v", ok, err)
	}
}

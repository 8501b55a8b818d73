package store_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/services/trip/store"
)

// fakeLog is an event log whose events become visible when the test says,
// in any order: a transaction that took its timestamp early can commit late.
type fakeLog struct {
	now      time.Time
	visible  []store.Event
	fetched  int // events fetched by id: payloads read
	failNext bool
}

func (f *fakeLog) Now(context.Context) (time.Time, error) { return f.now, nil }

func (f *fakeLog) EventRefs(ctx context.Context, q store.EventQuery) ([]store.EventRef, error) {
	evs, err := f.events(ctx, q)
	var refs []store.EventRef
	for _, ev := range evs {
		refs = append(refs, store.EventRef{ID: ev.ID, At: ev.At})
	}
	return refs, err
}

func (f *fakeLog) EventsByID(ctx context.Context, ids []uuid.UUID) ([]store.Event, error) {
	if f.failNext {
		f.failNext = false
		return nil, errors.New("connection reset")
	}
	f.fetched += len(ids)
	evs, _ := f.events(ctx, store.EventQuery{})
	var out []store.Event
	for _, ev := range evs {
		if slices.Contains(ids, ev.ID) {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (f *fakeLog) events(_ context.Context, q store.EventQuery) ([]store.Event, error) {
	var out []store.Event
	for _, ev := range f.visible {
		if !ev.At.Before(q.Since) {
			out = append(out, ev)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].ID.String() < out[j].ID.String()
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

func (f *fakeLog) commit(at time.Time) uuid.UUID {
	ev := store.Event{ID: uuid.New(), At: at}
	f.visible = append(f.visible, ev)
	return ev.ID
}

func TestTailerLateCommit(t *testing.T) {
	base := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	log := &fakeLog{now: base}
	log.commit(base.Add(-time.Second)) // before the tailer started
	tail := store.NewTailer(log, 5*time.Second)
	ctx := context.Background()
	ids := func(evs []store.Event) []uuid.UUID {
		var out []uuid.UUID
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	poll := func() []uuid.UUID {
		evs, err := tail.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ids(evs)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("first poll delivered %d old events", len(got))
	}
	a := log.commit(base.Add(1 * time.Second))
	b := log.commit(base.Add(3 * time.Second))
	if got := poll(); !slices.Equal(got, []uuid.UUID{a, b}) {
		t.Fatalf("poll = %v, want [a b]", got)
	}
	// A transaction stamped at +2s commits only now, after b was delivered:
	// a high-water mark alone would skip it.
	late := log.commit(base.Add(2 * time.Second))
	if got := poll(); !slices.Equal(got, []uuid.UUID{late}) {
		t.Fatalf("poll = %v, want the late event only", got)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("re-delivered %v", got)
	}
	// Many events sharing one timestamp, more than one batch.
	same := base.Add(4 * time.Second)
	var want []uuid.UUID
	for range 2500 {
		want = append(want, log.commit(same))
	}
	got := poll()
	if len(got) != len(want) {
		t.Fatalf("got %d of %d same-timestamp events", len(got), len(want))
	}
	// Payloads are read once per event, however often the window is.
	if log.fetched != 2+1+2500 {
		t.Fatalf("fetched %d payloads for %d events", log.fetched, 2+1+2500)
	}
	// A failed fetch loses nothing: the next poll delivers the events.
	c := log.commit(base.Add(5 * time.Second))
	log.failNext = true
	if _, err := tail.Poll(ctx); err == nil {
		t.Fatal("poll hid the failed fetch")
	}
	if got := poll(); !slices.Equal(got, []uuid.UUID{c}) {
		t.Fatalf("poll after a failed one = %v, want the event it missed", got)
	}
}

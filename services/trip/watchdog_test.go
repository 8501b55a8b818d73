package trip_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/storetest"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestWatchdogResolvesSilentDrivers(t *testing.T) {
	ctx := context.Background()
	clk := &testClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	st := memstore.New(memstore.WithClock(clk.now))
	cfg := trip.WatchdogConfig{SilentDriver: 10 * time.Minute, MaxTripDuration: time.Hour, Interval: time.Second}
	wd, err := trip.NewWatchdog(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	create := func(rider string) store.Trip {
		tr, _, err := st.Create(ctx, storetest.NewTripRequest(rider))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	move := func(id uuid.UUID, ev lifecycle.Event, driver string) {
		t.Helper()
		var err error
		if ev == lifecycle.EventAssign {
			_, _, err = st.AssignDriver(ctx, store.AssignDriver{TripID: id, DriverID: driver, IdempotencyKey: uuid.NewString()})
		} else {
			_, _, err = st.Transition(ctx, store.Transition{TripID: id, Event: ev, Actor: lifecycle.ActorDriver, ActorID: driver, IdempotencyKey: uuid.NewString()})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	assigned, arrived, riding, waiting, lively := create("r1"), create("r2"), create("r3"), create("r4"), create("r5")
	move(assigned.ID, lifecycle.EventAssign, "d1")
	move(arrived.ID, lifecycle.EventAssign, "d2")
	move(arrived.ID, lifecycle.EventArrive, "d2")
	move(riding.ID, lifecycle.EventAssign, "d3")
	move(riding.ID, lifecycle.EventArrive, "d3")
	move(riding.ID, lifecycle.EventStart, "d3")
	move(lively.ID, lifecycle.EventAssign, "d5")

	// Before the bound nothing moves.
	clk.advance(9 * time.Minute)
	move(lively.ID, lifecycle.EventArrive, "d5") // d5's app is alive
	if n, err := wd.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("sweep before the bound resolved %d (%v)", n, err)
	}
	clk.advance(2 * time.Minute)
	if n, err := wd.Sweep(ctx); n != 2 || err != nil {
		t.Fatalf("sweep after 11 min resolved %d (%v), want the assigned and arrived trips", n, err)
	}
	clk.advance(time.Hour)
	// By now lively's driver has been silent too long as well.
	if n, err := wd.Sweep(ctx); n != 2 || err != nil {
		t.Fatalf("sweep after 71 min resolved %d (%v), want the ride in progress and lively", n, err)
	}
	if n, err := wd.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("a repeated sweep resolved %d (%v)", n, err)
	}

	want := map[uuid.UUID]lifecycle.State{
		assigned.ID: lifecycle.StateRequested, arrived.ID: lifecycle.StateRequested,
		riding.ID: lifecycle.StateCancelled, waiting.ID: lifecycle.StateRequested, lively.ID: lifecycle.StateRequested,
	}
	for id, state := range want {
		got, err := st.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != state {
			t.Errorf("trip %s: %s, want %s", id, got.State, state)
		}
		if id == waiting.ID {
			continue
		}
		h, _ := st.History(ctx, id)
		last := h[len(h)-1]
		if last.Actor != lifecycle.ActorSystem || last.Reason != trip.ReasonDriverUnresponsive {
			t.Errorf("trip %s: last event %s by %s (%q), want the watchdog's", id, last.Type, last.Actor, last.Reason)
		}
	}
}

func TestWatchdogConfigNamesFlags(t *testing.T) {
	tests := []struct {
		mut  func(*trip.WatchdogConfig)
		flag string
	}{
		{func(c *trip.WatchdogConfig) { c.SilentDriver = 0 }, "--driver-silent-timeout"},
		{func(c *trip.WatchdogConfig) { c.MaxTripDuration = -time.Second }, "--max-trip-duration"},
		{func(c *trip.WatchdogConfig) { c.Interval = 0 }, "--watchdog-interval"},
	}
	for _, tt := range tests {
		c := trip.DefaultWatchdogConfig()
		tt.mut(&c)
		if err := c.Validate(); err == nil || !contains(err.Error(), tt.flag) {
			t.Errorf("Validate = %v, want an error naming %s", err, tt.flag)
		}
	}
	if err := trip.DefaultWatchdogConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

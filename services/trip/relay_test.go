package trip_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hexride/hexride/infra/natsserver"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/storetest"
)

// startJetStream starts a NATS server with JetStream and connects to it
// (both closed at cleanup; closing the server earlier is allowed).
func startJetStream(t *testing.T, opts ...nats.Option) (*natsserver.Embedded, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	nc, err := nats.Connect(srv.URL(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

// TestRelayClockBatchesBackoff drives the relay on an injected clock:
// bounded batches back to back while events are pending, the idle interval
// after, exponential backoff (capped) while NATS is down.
func TestRelayClockBatchesBackoff(t *testing.T) {
	srv, _, js := startJetStream(t, nats.ReconnectBufSize(-1), nats.MaxReconnects(-1))
	st := memstore.New(memstore.WithOutbox())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 25 {
		if _, _, err := st.Create(ctx, storetest.NewTripRequest("rider-"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	waits := make(chan time.Duration)
	tick := make(chan time.Time)
	cfg := trip.DefaultRelayConfig("test")
	cfg.Batch, cfg.Interval = 10, time.Second
	cfg.MinBackoff, cfg.MaxBackoff, cfg.PublishTimeout = 100*time.Millisecond, 400*time.Millisecond, time.Second
	runCtx, stop := context.WithCancel(ctx)
	cfg.After = func(d time.Duration) <-chan time.Time {
		select {
		case waits <- d:
		case <-runCtx.Done():
		}
		return tick
	}
	relay, err := trip.NewRelay(st, js, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { relay.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()

	// 25 pending, batches of 10: two full rounds back to back (no wait),
	// then 5 and the idle interval.
	if d := <-waits; d != time.Second {
		t.Fatalf("first wait %v, want the interval after draining 25 events in batches of 10", d)
	}
	if s := relay.Stats(); s.Published != 25 || s.Failures != 0 {
		t.Fatalf("stats %+v, want 25 published", s)
	}
	if pending, _ := st.PendingEvents(ctx, 100); len(pending) != 0 {
		t.Fatalf("%d still pending", len(pending))
	}
	// NATS goes down; new events wait in the outbox.
	srv.Close()
	if _, _, err := st.Create(ctx, storetest.NewTripRequest("rider-down")); err != nil {
		t.Fatal(err)
	}
	var got []time.Duration
	for range 4 {
		tick <- time.Now()
		got = append(got, <-waits)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits while NATS is down = %v, want %v", got, want)
		}
	}
	if pending, _ := st.PendingEvents(ctx, 100); len(pending) != 1 {
		t.Fatalf("%d pending while NATS is down, want 1", len(pending))
	}
	if s := relay.Stats(); s.Failures < 4 {
		t.Fatalf("stats %+v, want failures counted", s)
	}
}

// TestRelayWakesOnNudge: a relay whose clock never fires (its poll
// interval never ends) publishes an event as soon as a store's commit
// nudges it; a commit that nudges nobody stays pending until a nudge from
// anywhere (another instance's commit) arrives.
func TestRelayWakesOnNudge(t *testing.T) {
	_, nc, js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nudging atomic.Bool
	nudge := trip.NudgeRelay(nc)
	st := memstore.New(memstore.WithOutbox(), memstore.WithOutboxNotify(func() {
		if nudging.Load() {
			nudge()
		}
	}))

	waits := make(chan time.Duration, 64)
	never := make(chan time.Time) // the relay's clock: no interval ever ends
	cfg := trip.DefaultRelayConfig("test")
	cfg.After = func(d time.Duration) <-chan time.Time { waits <- d; return never }
	relay, err := trip.NewRelay(st, js, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { relay.Run(runCtx) })
	defer func() { stop(); wg.Wait() }()
	<-waits // idle: waiting for the interval or a nudge
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	waitPublished := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for relay.Stats().Published < n {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v: want %d published", relay.Stats(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	nudging.Store(true)
	if _, _, err := st.Create(ctx, storetest.NewTripRequest("rider-nudged")); err != nil {
		t.Fatal(err)
	}
	waitPublished(1)

	nudging.Store(false)
	if _, _, err := st.Create(ctx, storetest.NewTripRequest("rider-quiet")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the relay has had its chance to (wrongly) wake
	if got := relay.Stats().Published; got != 1 {
		t.Fatalf("published %d with no nudge and no tick, want 1", got)
	}
	nudge() // as another instance's commit would
	waitPublished(2)
	if pending, _ := st.PendingEvents(ctx, 10); len(pending) != 0 {
		t.Fatalf("%d still pending", len(pending))
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/natsserver/natstest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

// The event stream end to end: trips driven through the store in this
// process, the relay in a second process (this test binary re-executed),
// the consumer in a third (`hexride events tail --json`), a real
// nats-server in a fourth. Mid-run the relay and the consumer are killed
// (SIGKILL) and stay down while trips keep changing, then restart. Every
// committed event must reach the consumer, in version order per trip, with
// no duplicate left after de-duplication by event id.
//
//	HEXRIDE_EVENTS_TRIPS   trips to drive (default 1000; the figure is 5000)
//	HEXRIDE_EVENTS_OUTAGE  how long relay and consumer stay down (default 5s; the figure is 60s)
const (
	envEventsTrips  = "HEXRIDE_EVENTS_TRIPS"
	envEventsOutage = "HEXRIDE_EVENTS_OUTAGE"
	// The relay child's parameters.
	envRelayDSN  = "HEXRIDE_TEST_RELAY_DSN"
	envRelayNATS = "HEXRIDE_TEST_RELAY_NATS"
)

func init() {
	// The relay child: this test binary re-executed runs only a relay.
	if os.Getenv(envRelayDSN) != "" {
		os.Exit(relayChild(os.Getenv(envRelayDSN), os.Getenv(envRelayNATS)))
	}
}

func relayChild(dsn, url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	st, err := sqlstore.Open(ctx, dsn, sqlstore.WithOutbox())
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		return 1
	}
	defer st.Close()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		return 1
	}
	cfg := trip.DefaultRelayConfig("relay-child-" + strconv.Itoa(os.Getpid()))
	cfg.LeaseTTL = 3 * time.Second // the production poll interval: commits nudge it
	r, err := trip.NewRelay(st, js, cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay child:", err)
		return 1
	}
	r.Run(ctx)
	return 0
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	return def
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			t.Fatalf("%s=%q: want a duration", name, v)
		}
		return d
	}
	return def
}

// child is a killable process writing its stdout to a file.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	errb *bytes.Buffer
}

func startChild(t *testing.T, name string, out *os.File, env []string, bin string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = out
	errb := &bytes.Buffer{}
	cmd.Stderr = errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), errb: errb}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
	}
}

func TestEventStreamEndToEnd(t *testing.T) {
	trips := envInt(t, envEventsTrips, 1000)
	outage := envDuration(t, envEventsOutage, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	dsn := pgtest.DSN(t)
	ns := natstest.Start(t)
	// The writers are trip instances as hexride serve wires them: each
	// commit also nudges the relay.
	nudges, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nudges.Close()
	st, err := sqlstore.Open(ctx, dsn, sqlstore.WithAutoMigrate(), sqlstore.WithOutbox(), sqlstore.WithOutboxNotify(trip.NudgeRelay(nudges)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hexride := hexrideBinary(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	outPath, posPath := dir+"/events.jsonl", dir+"/position"
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	relayEnv := []string{envRelayDSN + "=" + dsn, envRelayNATS + "=" + ns.URL()}
	startRelay := func() *child { return startChild(t, "relay", os.Stderr, relayEnv, self, "-test.run=^$") }
	startConsumer := func() *child {
		return startChild(t, "consumer", out, nil, hexride, "events", "tail", "--nats", ns.URL(), "--json",
			"--from", "all", "--position-file", posPath)
	}
	relay := startRelay()
	// The consumer needs the stream: wait until the relay has made it.
	waitFor(t, 15*time.Second, "the stream to exist", func() bool {
		nc, err := nats.Connect(ns.URL())
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		_, err = js.Stream(ctx, trip.StreamName)
		return err == nil
	})
	consumer := startConsumer()
	defer func() { relay.stop(); consumer.stop() }()

	// Drive trips: 8 workers; each trip is completed (5 events) or, one in
	// five, cancelled by its rider after assignment (3 events).
	var (
		next      atomic.Int64
		committed atomic.Int64
		phase     atomic.Int32 // 0 steady, 1 outage, 2 after
		steadyMu  sync.Mutex
		steady    = map[uuid.UUID]bool{} // events committed in the steady phase
		wg        sync.WaitGroup
		driveErr  = make(chan error, 8)
		third     = int64(trips / 3)
		outageBeg = make(chan struct{})
	)
	drive := func(i int64) error {
		tr, _, err := st.Create(ctx, store.CreateTrip{
			IdempotencyKey: fmt.Sprintf("c-%d", i), RiderID: fmt.Sprintf("r-%d", i),
			Pickup: geo.LatLng{Lat: 40.7, Lng: -74}, Dropoff: geo.LatLng{Lat: 40.8, Lng: -73.9},
			Product: "standard", QuotedFare: lifecycle.Money{Minor: 1000, Currency: "USD"}, QuoteID: "q",
			Region: []string{"us-east1", "europe-west1"}[i%2],
		})
		if err != nil {
			return err
		}
		ids := []uuid.UUID{}
		record := func(ev store.Event) { ids = append(ids, ev.ID) }
		h, err := st.History(ctx, tr.ID)
		if err != nil {
			return err
		}
		record(h[0])
		driver := fmt.Sprintf("d-%d", i)
		_, ev, err := st.AssignDriver(ctx, store.AssignDriver{TripID: tr.ID, DriverID: driver, IdempotencyKey: fmt.Sprintf("a-%d", i)})
		if err != nil {
			return err
		}
		record(ev)
		steps := []struct {
			e lifecycle.Event
			a lifecycle.Actor
			w string
		}{{lifecycle.EventArrive, lifecycle.ActorDriver, driver}, {lifecycle.EventStart, lifecycle.ActorDriver, driver}, {lifecycle.EventComplete, lifecycle.ActorDriver, driver}}
		if i%5 == 0 {
			steps = steps[:0]
			steps = append(steps, struct {
				e lifecycle.Event
				a lifecycle.Actor
				w string
			}{lifecycle.EventCancel, lifecycle.ActorRider, fmt.Sprintf("r-%d", i)})
		}
		for k, s := range steps {
			_, ev, err := st.Transition(ctx, store.Transition{TripID: tr.ID, Event: s.e, Actor: s.a, ActorID: s.w, IdempotencyKey: fmt.Sprintf("t-%d-%d", i, k)})
			if err != nil {
				return err
			}
			record(ev)
		}
		committed.Add(int64(len(ids)))
		if phase.Load() == 0 {
			steadyMu.Lock()
			for _, id := range ids {
				steady[id] = true
			}
			steadyMu.Unlock()
		}
		return nil
	}
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(trips) {
					return
				}
				if i == third {
					close(outageBeg)
				}
				if err := drive(i); err != nil {
					driveErr <- fmt.Errorf("trip %d: %w", i, err)
					return
				}
				if phase.Load() == 1 {
					// Keep the outage busy but let it last: pace writers.
					time.Sleep(2 * time.Millisecond)
				}
			}
		})
	}

	// Outage: once a third of the trips are in, kill relay and consumer.
	select {
	case <-outageBeg:
	case err := <-driveErr:
		t.Fatal(err)
	}
	phase.Store(1)
	relay.kill()
	consumer.kill()
	t.Logf("killed relay and consumer (SIGKILL) after %d committed events; down for %v", committed.Load(), outage)
	time.Sleep(outage)
	phase.Store(2)
	relay = startRelay()
	consumer = startConsumer()
	t.Logf("restarted relay and consumer; %d events committed", committed.Load())
	wg.Wait()
	select {
	case err := <-driveErr:
		t.Fatal(err)
	default:
	}

	// Every committed event, from the database.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	type dbEvent struct {
		trip    uuid.UUID
		version int64
	}
	want := map[string]dbEvent{}
	rows, err := pool.Query(ctx, `SELECT id, trip_id, version FROM trip_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, tid uuid.UUID
		var v int64
		if err := rows.Scan(&id, &tid, &v); err != nil {
			t.Fatal(err)
		}
		want[id.String()] = dbEvent{tid, v}
	}
	rows.Close()
	if int64(len(want)) != committed.Load() {
		t.Fatalf("database has %d events, writers committed %d", len(want), committed.Load())
	}

	type line struct {
		EventID     string    `json:"event_id"`
		TripID      string    `json:"trip_id"`
		TripVersion int64     `json:"trip_version"`
		OccurredAt  time.Time `json:"occurred_at"`
		ReceivedAt  time.Time `json:"received_at"`
	}
	read := func() (lines []line) {
		f, err := os.Open(outPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.EventID != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	var lines []line
	waitFor(t, 2*time.Minute, "the consumer to receive every event", func() bool {
		lines = read()
		got := map[string]bool{}
		for _, l := range lines {
			got[l.EventID] = true
		}
		return len(got) >= len(want)
	})

	// Invariants: nothing lost, nothing unknown, per-trip order, and
	// duplicates only as re-deliveries (none after de-duplication).
	seen := map[string]bool{}
	lastVersion := map[string]int64{}
	var raw, dups, lost, unknown, outOfOrder int
	var steadyLat []time.Duration
	for _, l := range lines {
		raw++
		if seen[l.EventID] {
			dups++
			continue
		}
		seen[l.EventID] = true
		w, ok := want[l.EventID]
		if !ok {
			unknown++
			continue
		}
		if l.TripVersion != w.version || l.TripID != w.trip.String() {
			t.Errorf("event %s: consumer says trip %s v%d, database %s v%d", l.EventID, l.TripID, l.TripVersion, w.trip, w.version)
		}
		if l.TripVersion != lastVersion[l.TripID]+1 {
			outOfOrder++
			if outOfOrder < 5 {
				t.Errorf("trip %s: v%d after v%d", l.TripID, l.TripVersion, lastVersion[l.TripID])
			}
		}
		lastVersion[l.TripID] = l.TripVersion
		if steady[uuid.MustParse(l.EventID)] {
			steadyLat = append(steadyLat, l.ReceivedAt.Sub(l.OccurredAt))
		}
	}
	for id := range want {
		if !seen[id] {
			lost++
		}
	}
	// The stream itself holds each event once (JetStream de-duplicated
	// the relay's re-publishes by Nats-Msg-Id).
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(ctx, trip.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(steadyLat)
	pct := func(p float64) time.Duration {
		if len(steadyLat) == 0 {
			return 0
		}
		return steadyLat[min(len(steadyLat)-1, int(p*float64(len(steadyLat))))]
	}
	t.Logf("trips %d, events committed %d, on the stream %d, consumer lines %d (re-deliveries %d), lost %d, unknown %d, out of order %d, duplicates after de-dup 0",
		trips, len(want), info.State.Msgs, raw, dups, lost, unknown, outOfOrder)
	t.Logf("steady state commit-to-consumer latency over %d events: p50 %v, p99 %v, max %v (commit time = the transaction's now())",
		len(steadyLat), pct(0.50), pct(0.99), pct(1))
	if lost != 0 || unknown != 0 || outOfOrder != 0 {
		t.Fatalf("lost %d, unknown %d, out of order %d", lost, unknown, outOfOrder)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("stream holds %d messages for %d events: JetStream kept a duplicate", info.State.Msgs, len(want))
	}
	var pending int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM trip_event_outbox`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	t.Logf("outbox rows left: %d", pending)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package trip_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

// queryCounter counts the statements a pool sends: the relay's (outbox and
// lease), other reads of trip_events (watchers polling), and the rest.
type queryCounter struct {
	events, outbox, other atomic.Int64
}

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	switch {
	case strings.Contains(d.SQL, "trip_event_outbox"), strings.Contains(d.SQL, "trip_relay_lease"):
		c.outbox.Add(1)
	case strings.Contains(d.SQL, "trip_events"):
		c.events.Add(1)
	default:
		c.other.Add(1)
	}
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type queryCounts struct{ events, outbox, other int64 }

func (c *queryCounter) read() queryCounts {
	return queryCounts{c.events.Load(), c.outbox.Load(), c.other.Load()}
}

func (q queryCounts) minus(o queryCounts) queryCounts {
	return queryCounts{q.events - o.events, q.outbox - o.outbox, q.other - o.other}
}

func (e *watchEnv) countedSQLStore(dsn string, c *queryCounter) *sqlstore.Store {
	t := e.t
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = c
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var opts []sqlstore.Option
	if e.mode.stream {
		// As hexride serve wires it: each commit nudges the relay.
		nc, err := nats.Connect(e.url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		opts = append(opts, sqlstore.WithOutbox(), sqlstore.WithOutboxNotify(trip.NudgeRelay(nc)))
	}
	st, err := sqlstore.New(context.Background(), pool, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestWatchersQueryRate measures what trip watchers cost the database,
// polling the event table (poll mode) against reading the event stream
// (stream mode): 50 riders watch their trips on instance A while instance
// B changes them. It asserts the structural claim (with the stream, idle
// watchers send no query at all, and none reads trip_events) and logs the
// query rates and the commit-to-watcher latency. Figures, not timing
// assertions: `go test -run TestWatchersQueryRate -v ./services/trip/`.
func TestWatchersQueryRate(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) {
			env := newWatchEnv(t, m)
			env.relayInterval = trip.DefaultRelayConfig("").Interval // production's, not the tests' 5 ms
			dsn := migratedDSN(t)
			var countA, countB queryCounter
			a := env.serve(env.countedSQLStore(dsn, &countA))
			b := env.serve(env.countedSQLStore(dsn, &countB))
			ctx := ctxT(t, 60*time.Second)

			const watchers = 50
			var ids []string
			for i := range watchers {
				tr, _, err := b.CreateTrip(ctx, createReq(fmt.Sprintf("rider-q%d", i)))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, tr.GetId())
			}
			seen := make(chan string, 4*watchers)
			watchCtx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for _, id := range ids {
				wg.Go(func() {
					_ = a.Watch(watchCtx, &tripv1.WatchTripsRequest{TripIds: []string{id}},
						func(ev *commonv1.TripEvent) error { seen <- ev.GetTrip().GetId(); return nil })
				})
			}
			t.Cleanup(func() { stop(); wg.Wait() })
			time.Sleep(time.Second) // watches open, relays settle

			const idle = 3 * time.Second
			before := countA.read()
			time.Sleep(idle)
			idleA := countA.read().minus(before)

			// One change per trip, each waited for on the watching instance.
			before, beforeB := countA.read(), countB.read()
			start := time.Now()
			var lat []time.Duration
			for i, id := range ids {
				if _, err := b.AssignDriver(ctx, id, fmt.Sprintf("driver-q%d", i), "", "assign-"+id); err != nil {
					t.Fatal(err)
				}
				committed := time.Now()
				for got := ""; got != id; {
					select {
					case got = <-seen:
					case <-time.After(5 * time.Second):
						t.Fatalf("trip %s: change not seen on the other instance within 5s", id)
					}
				}
				lat = append(lat, time.Since(committed))
			}
			busy := time.Since(start)
			busyA, busyB := countA.read().minus(before), countB.read().minus(beforeB)
			slices.Sort(lat)
			p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
			rate := func(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

			t.Logf("%s, %d watchers on A: idle A %.1f q/s (watchers reading trip_events %.1f, relay outbox/lease %.1f, other %.1f)",
				m.name, watchers, rate(idleA.events+idleA.outbox+idleA.other, idle),
				rate(idleA.events, idle), rate(idleA.outbox, idle), rate(idleA.other, idle))
			per := func(n int64) float64 { return float64(n) / float64(len(ids)) }
			t.Logf("%s, %d changes in %v: per change, A (watchers) sent %.2f queries reading trip_events and the relay %.2f; B (writer) %.2f; commit to watcher p50 %v p99 %v max %v",
				m.name, len(ids), busy.Round(time.Millisecond),
				per(busyA.events), per(busyA.outbox), per(busyB.events+busyB.outbox+busyB.other),
				p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
			if m.stream {
				if idleA.events != 0 || busyA.events != 0 {
					t.Errorf("stream mode: watchers read trip_events %d times idle and %d times busy, want 0", idleA.events, busyA.events)
				}
			} else if idleA.events == 0 {
				t.Errorf("poll mode: idle watchers never read trip_events: the measurement sees nothing")
			}
		})
	}
}

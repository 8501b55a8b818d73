package trip_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/tripclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

// migratedDSN returns a fresh, migrated database.
func migratedDSN(t *testing.T) string {
	t.Helper()
	dsn := pgtest.DSN(t)
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := sqlstore.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return dsn
}

func openSQL(t *testing.T, dsn string, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// serve runs a trip server for st on a real 127.0.0.1 TCP socket and returns
// a client connected to it.
func serve(t *testing.T, st store.Store, opts ...trip.Option) *tripclient.Client {
	t.Helper()
	srv, err := trip.NewServer(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return serveServer(t, srv)
}

func serveServer(t *testing.T, srv *trip.Server) *tripclient.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Close()
		gs.GracefulStop()
		<-done
	})
	return tripclient.New(conn)
}

type backend struct {
	name string
	new  func(t *testing.T, opts ...sqlstore.Option) store.Store
}

var backends = []backend{
	{"memory", func(t *testing.T, _ ...sqlstore.Option) store.Store { return memstore.New() }},
	{"postgres", func(t *testing.T, opts ...sqlstore.Option) store.Store { return openSQL(t, migratedDSN(t), opts...) }},
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createReq(rider string) *tripv1.CreateTripRequest {
	return &tripv1.CreateTripRequest{
		IdempotencyKey: "create-" + uuid.NewString(),
		RiderId:        rider,
		Pickup:         &commonv1.LatLng{Lat: 40.7128, Lng: -74.006},
		Dropoff:        &commonv1.LatLng{Lat: 40.7306, Lng: -73.9352},
		Product:        commonv1.Product_PRODUCT_STANDARD,
		QuotedFare:     &commonv1.Money{AmountMinor: 2350, Currency: "USD"},
		QuoteId:        "quote-1",
		Region:         "us-east1",
	}
}

func TestAssignDriverContention(t *testing.T) {
	const trips, drivers, calls = 50, 20, 200
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			// Every third transaction fails its first attempt with 40001
			// right before COMMIT, on top of genuine serialization
			// conflicts; the whole transaction must be retried.
			var txns atomic.Int64
			inject := postgres.WithBeforeCommit(func(_ context.Context, attempt int) error {
				if attempt == 1 && txns.Add(1)%3 == 0 {
					return postgres.SerializationFailure("injected by test")
				}
				return nil
			})
			st := b.new(t, sqlstore.WithTxOptions(inject))
			c := serve(t, st)
			ctx := ctxT(t, 60*time.Second)

			ids := make([]string, trips)
			for i := range ids {
				tr, _, err := c.CreateTrip(ctx, createReq(fmt.Sprintf("rider-%d", i)))
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = tr.GetId()
			}
			type win struct{ trip, driver string }
			var (
				mu                   sync.Mutex
				wins                 []win
				lostCAS, busy, other int
				wg                   sync.WaitGroup
			)
			start := time.Now()
			for i := range calls {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(uint64(i), 42))
					tripID, driver := ids[r.IntN(trips)], fmt.Sprintf("driver-%d", r.IntN(drivers))
					tr, err := c.AssignDriver(ctx, tripID, driver, "", fmt.Sprintf("offer-%d", i))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						if tr.GetDriverId() != driver || tr.GetState() != commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED {
							t.Errorf("success returned %v", tr)
						}
						wins = append(wins, win{tripID, driver})
					case errors.Is(err, tripclient.ErrTripNotRequested):
						lostCAS++
					case errors.Is(err, tripclient.ErrDriverBusy):
						busy++
					default:
						other++
						t.Errorf("AssignDriver: %v", err)
					}
					if err != nil && status.Code(err) != codes.FailedPrecondition {
						t.Errorf("code %v for %v", status.Code(err), err)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)

			// Invariants, read back through the API.
			byDriver := map[string]string{}
			byTrip := map[string]string{}
			assigned := 0
			for _, id := range ids {
				tr, err := c.GetTrip(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				evs, err := c.Events(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				assignEvents := 0
				for _, ev := range evs {
					if ev.GetType() == commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED {
						assignEvents++
						if ev.GetDriverId() != tr.GetDriverId() {
							t.Errorf("trip %s: assign event for %s, trip has %s", id, ev.GetDriverId(), tr.GetDriverId())
						}
					}
				}
				if tr.GetState() == commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED {
					assigned++
					if assignEvents != 1 {
						t.Errorf("trip %s has %d assign events", id, assignEvents)
					}
					if prev, dup := byDriver[tr.GetDriverId()]; dup {
						t.Errorf("driver %s on two active trips: %s and %s", tr.GetDriverId(), prev, id)
					}
					byDriver[tr.GetDriverId()] = id
					byTrip[id] = tr.GetDriverId()
				} else if assignEvents != 0 || tr.GetDriverId() != "" {
					t.Errorf("unassigned trip %s has driver %q / %d assign events", id, tr.GetDriverId(), assignEvents)
				}
			}
			for _, w := range wins {
				if byTrip[w.trip] != w.driver {
					t.Errorf("winner %s on %s lost its write (trip has %q)", w.driver, w.trip, byTrip[w.trip])
				}
			}
			if len(wins) != assigned {
				t.Errorf("%d successes, %d assigned trips", len(wins), assigned)
			}
			if len(wins) == 0 || len(wins) > drivers {
				t.Errorf("%d successes, want 1..%d", len(wins), drivers)
			}
			if sq, ok := st.(*sqlstore.Store); ok {
				stats := sq.TxStats()
				if stats.Retries == 0 {
					t.Errorf("no retries happened: %+v", stats)
				}
				t.Logf("tx stats: %+v", stats)
				// Cross-check in SQL: the database holds the invariants.
				var doubleDrivers, doubleAssigns, assignedRows int
				err := sq.Pool().QueryRow(ctx, `
					SELECT
					  (SELECT count(*) FROM (SELECT driver_id FROM trips
					     WHERE state IN ('DRIVER_ASSIGNED','DRIVER_ARRIVED','IN_PROGRESS')
					     GROUP BY driver_id HAVING count(*) FILTER (WHERE state <> 'IN_PROGRESS') > 1
					       OR count(*) FILTER (WHERE state = 'IN_PROGRESS') > 1) AS d),
					  (SELECT count(*) FROM (SELECT trip_id FROM trip_events WHERE event = 'assign'
					     GROUP BY trip_id HAVING count(*) > 1) AS e),
					  (SELECT count(*) FROM trips t JOIN trip_events e
					     ON e.trip_id = t.id AND e.event = 'assign' AND e.driver_id = t.driver_id
					     WHERE t.state = 'DRIVER_ASSIGNED')`).Scan(&doubleDrivers, &doubleAssigns, &assignedRows)
				if err != nil {
					t.Fatal(err)
				}
				if doubleDrivers != 0 || doubleAssigns != 0 || assignedRows != len(wins) {
					t.Errorf("SQL: %d drivers on 2+ active trips, %d trips with 2+ assigns, %d assigned rows with their event (want %d)",
						doubleDrivers, doubleAssigns, assignedRows, len(wins))
				}
			}
			t.Logf("%d calls in %v: %d assigned, %d lost the CAS, %d driver busy, %d other",
				calls, elapsed.Round(time.Millisecond), len(wins), lostCAS, busy, other)
		})
	}
}

func TestCreateIdempotentConcurrent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c := serve(t, b.new(t))
			ctx := ctxT(t, 30*time.Second)
			req := createReq("rider-1")
			const n = 20
			var (
				mu      sync.Mutex
				ids     = map[string]int{}
				created int
				wg      sync.WaitGroup
			)
			for range n {
				wg.Go(func() {
					tr, isNew, err := c.CreateTrip(ctx, req)
					if err != nil {
						t.Errorf("CreateTrip: %v", err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					ids[tr.GetId()]++
					if isNew {
						created++
					}
				})
			}
			wg.Wait()
			if len(ids) != 1 || created != 1 {
				t.Fatalf("%d calls gave trips %v, %d created; want one trip created once", n, ids, created)
			}
			resp, err := c.ListTrips(ctx, &tripv1.ListTripsRequest{RiderId: "rider-1"})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetTrips()) != 1 {
				t.Fatalf("rider has %d trips", len(resp.GetTrips()))
			}
		})
	}
}

func TestWatchAcrossInstances(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testWatchAcrossInstances(t, newWatchEnv(t, m)) })
	}
}

func testWatchAcrossInstances(t *testing.T, env *watchEnv) {
	dsn := migratedDSN(t)
	// Two instances, each with its own pool, sharing one database (in
	// stream mode each runs a relay; the lease lets one publish).
	a := env.serve(env.sqlStore(dsn))
	b := env.serve(env.sqlStore(dsn))
	ctx := ctxT(t, 30*time.Second)

	tr, _, err := b.CreateTrip(ctx, createReq("rider-w"))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *commonv1.TripEvent, 16)
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- a.Watch(watchCtx, &tripv1.WatchTripsRequest{TripIds: []string{tr.GetId()}, SendInitial: true},
			func(ev *commonv1.TripEvent) error { events <- ev; return nil })
	}()
	recv := func() *commonv1.TripEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5s")
			return nil
		}
	}
	initial := recv()
	if initial.GetType() != commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED || initial.GetTrip().GetVersion() != 1 {
		t.Fatalf("initial = %v", initial)
	}
	steps := []struct {
		name string
		do   func() error
		want commonv1.TripEventType
	}{
		{"assign", func() error { _, err := b.AssignDriver(ctx, tr.GetId(), "driver-w", "", "assign-w"); return err }, commonv1.TripEventType_TRIP_EVENT_TYPE_ASSIGNED},
		{"arrive", func() error {
			_, _, err := b.Transition(ctx, &tripv1.TransitionRequest{TripId: tr.GetId(), Event: commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED,
				Actor: commonv1.Actor_ACTOR_DRIVER, ActorId: "driver-w", IdempotencyKey: "arrive-w"})
			return err
		}, commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED},
		{"rider cancels", func() error {
			_, _, err := b.Transition(ctx, &tripv1.TransitionRequest{TripId: tr.GetId(), Event: commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED,
				Actor: commonv1.Actor_ACTOR_RIDER, ActorId: "rider-w", Reason: "too slow", IdempotencyKey: "cancel-w"})
			return err
		}, commonv1.TripEventType_TRIP_EVENT_TYPE_CANCELLED},
	}
	var worst time.Duration
	for _, s := range steps {
		start := time.Now()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		ev := recv()
		lat := time.Since(start)
		worst = max(worst, lat)
		if ev.GetType() != s.want {
			t.Fatalf("%s: got event %v", s.name, ev.GetType())
		}
		if lat > time.Second {
			t.Errorf("%s: seen on the other instance after %v, want < 1s", s.name, lat)
		}
	}
	stopWatch()
	select {
	case err := <-watchDone:
		if err != nil {
			t.Fatalf("watch ended with %v, want nil on cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end after cancel")
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected extra event %v", ev)
	default:
	}
	t.Logf("worst cross-instance watch latency: %v", worst)
}

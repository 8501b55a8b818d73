package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/store/storetest"
	"github.com/hexride/hexride/services/trip/tripapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrate(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	// baseMigrations is how many files migrations/base holds.
	const baseMigrations = 6
	// Three instances migrate the same empty database at once: the table
	// locker serialises them and the schema is applied exactly once.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied int
	)
	for range 3 {
		wg.Go(func() {
			pool := newPool(t, dsn)
			rep, err := sqlstore.Migrate(ctx, pool)
			if err != nil {
				t.Errorf("Migrate: %v", err)
				return
			}
			mu.Lock()
			applied += len(rep.Applied)
			mu.Unlock()
			if rep.Dialect != postgres.PostgreSQL || rep.Versions[sqlstore.SetBase] != baseMigrations {
				t.Errorf("report = %+v", rep)
			}
			if _, ok := rep.Versions[sqlstore.SetCockroachDB]; ok {
				t.Errorf("CockroachDB set ran on PostgreSQL: %s", rep)
			}
		})
	}
	wg.Wait()
	if applied != baseMigrations {
		t.Fatalf("%d migrations applied in total, want %d", applied, baseMigrations)
	}
	rep, err := sqlstore.Migrate(ctx, newPool(t, dsn))
	if err != nil || len(rep.Applied) != 0 {
		t.Fatalf("second Migrate = %s, %v", rep, err)
	}
	if !strings.Contains(rep.String(), "no migrations to apply") {
		t.Errorf("report string %q", rep)
	}
	// No advisory lock was used: goose's lock table exists.
	var n int
	if err := newPool(t, dsn).QueryRow(ctx, `SELECT count(*) FROM trip_goose_lock`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("lock table rows = %d, %v", n, err)
	}
}

func TestDatabaseEnforcesDriverInvariant(t *testing.T) {
	// Even a buggy writer that bypasses the store cannot give a driver two
	// pickups or two rides in progress: the partial unique indexes refuse.
	// One pickup and one ride at once is chained supply, allowed.
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	pool := newPool(t, dsn)
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	var ids [3]uuid.UUID
	for i := range ids {
		tr, _, err := st.Create(ctx, storetest.NewTripRequest(fmt.Sprintf("r%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = tr.ID
	}
	a, b, c := ids[0], ids[1], ids[2]
	// a is d1's pickup.
	if _, _, err := st.AssignDriver(ctx, store.AssignDriver{TripID: a, DriverID: "d1", IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	const (
		pickupIdx = "trips_one_pickup_per_driver"
		rideIdx   = "trips_one_ride_per_driver"
	)
	steps := []struct {
		name  string
		trip  uuid.UUID
		state lifecycle.State
		want  string // the index that refuses; "" when allowed
	}{
		{"second pickup", b, lifecycle.StateDriverArrived, pickupIdx},
		{"ride beside the pickup", b, lifecycle.StateInProgress, ""},
		{"second ride", c, lifecycle.StateInProgress, rideIdx},
		{"second pickup beside the ride", c, lifecycle.StateDriverAssigned, pickupIdx},
		{"the ride ends", b, lifecycle.StateCompleted, ""},
		{"the pickup's ride starts", a, lifecycle.StateInProgress, ""},
		{"a new pickup beside it", c, lifecycle.StateDriverAssigned, ""},
		{"a terminal trip holds nothing", b, lifecycle.StateCancelled, ""},
	}
	for _, step := range steps {
		_, err := pool.Exec(ctx, `UPDATE trips SET state = $2, driver_id = 'd1' WHERE id = $1`, step.trip, string(step.state))
		switch {
		case step.want == "" && err != nil:
			t.Fatalf("%s: raw update to %s: %v", step.name, step.state, err)
		case step.want != "" && !postgres.IsUniqueViolation(err, step.want):
			t.Fatalf("%s: raw update to %s: err = %v, want a unique violation of %s", step.name, step.state, err, step.want)
		}
	}
	// The index they replaced is gone.
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'trips' AND indexname = 'trips_one_active_trip_per_driver'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("old index rows = %d, %v; want it dropped", n, err)
	}
}

func TestRetryRerunsWholeTransaction(t *testing.T) {
	// The first attempt of every transaction fails at COMMIT time with
	// 40001. Each change must still be applied exactly once: one trip, one
	// event per version, one idempotency record.
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	pool := newPool(t, dsn)
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var retries atomic.Int64
	st, err := sqlstore.New(ctx, pool, sqlstore.WithTxOptions(
		postgres.WithBeforeCommit(func(_ context.Context, attempt int) error {
			if attempt == 1 {
				return postgres.SerializationFailure("injected")
			}
			return nil
		}),
		postgres.WithOnRetry(func(context.Context, postgres.RetryInfo) { retries.Add(1) }),
	))
	if err != nil {
		t.Fatal(err)
	}
	tr, created, err := st.Create(ctx, storetest.NewTripRequest("r1"))
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if _, _, err := st.AssignDriver(ctx, store.AssignDriver{TripID: tr.ID, DriverID: "d1", IdempotencyKey: "a1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Transition(ctx, store.Transition{TripID: tr.ID, Event: lifecycle.EventArrive, Actor: lifecycle.ActorDriver, ActorID: "d1", IdempotencyKey: "t1"}); err != nil {
		t.Fatal(err)
	}
	var trips, events, keys int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM trips), (SELECT count(*) FROM trip_events), (SELECT count(*) FROM trip_idempotency_keys)`).Scan(&trips, &events, &keys); err != nil {
		t.Fatal(err)
	}
	if trips != 1 || events != 3 || keys != 3 {
		t.Fatalf("trips=%d events=%d keys=%d, want 1/3/3", trips, events, keys)
	}
	if got := st.TxStats(); got.Retries != 3 || retries.Load() != 3 || got.Commits != 3 {
		t.Fatalf("stats %+v, hook %d; want 3 retries, 3 commits", got, retries.Load())
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	st, err := sqlstore.Open(ctx, pgtest.DSN(t), sqlstore.WithAutoMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Dialect() != postgres.PostgreSQL {
		t.Fatalf("dialect %v", st.Dialect())
	}
	if _, err := st.Get(ctx, uuid.New()); !errors.Is(err, tripapi.ErrNotFound) {
		t.Fatalf("Get on migrated empty store: %v", err)
	}
	if _, err := sqlstore.Open(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"); err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
}

func TestCockroachStatements(t *testing.T) {
	tests := []struct {
		name    string
		primary string
		regions []string
		survive sqlstore.SurvivalGoal
		want    []string
	}{
		{"three regions, region failure chosen", "", []string{"europe-west1", "us-east1", "us-west1"}, sqlstore.SurviveRegion, []string{
			`ALTER DATABASE "hexride" PRIMARY REGION "europe-west1"`,
			`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "us-east1"`,
			`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "us-west1"`,
			`ALTER DATABASE "hexride" SURVIVE REGION FAILURE`,
		}},
		{"three regions stay zone-surviving unless asked", "", []string{"europe-west1", "us-east1", "us-west1"}, sqlstore.SurviveZone, []string{
			`ALTER DATABASE "hexride" PRIMARY REGION "europe-west1"`,
			`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "us-east1"`,
			`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "us-west1"`,
			`ALTER DATABASE "hexride" SURVIVE ZONE FAILURE`,
		}},
		{"explicit primary, two regions", "us-east1", []string{"europe-west1", "us-east1"}, sqlstore.SurviveZone, []string{
			`ALTER DATABASE "hexride" PRIMARY REGION "us-east1"`,
			`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "europe-west1"`,
			`ALTER DATABASE "hexride" SURVIVE ZONE FAILURE`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sqlstore.DatabaseRegionStatements("hexride", tt.primary, tt.regions, tt.survive)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	rbr := strings.Join(sqlstore.RegionalByRowStatements([]string{"us-east1", "europe-west1"}), "\n")
	for _, want := range []string{
		`ALTER TABLE trips ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (CASE region WHEN 'us-east1' THEN 'us-east1'::crdb_internal_region WHEN 'europe-west1' THEN 'europe-west1'::crdb_internal_region ELSE 'us-east1'::crdb_internal_region END) STORED`,
		`ALTER TABLE trips SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE trip_events SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`ALTER TABLE trip_idempotency_keys SET LOCALITY REGIONAL BY ROW AS crdb_region`,
	} {
		if !strings.Contains(rbr, want) {
			t.Errorf("missing %q in\n%s", want, rbr)
		}
	}
	outbox := strings.Join(sqlstore.OutboxStatements([]string{"us-east1"}), "\n")
	for _, want := range []string{
		`ALTER TABLE trip_event_outbox SET LOCALITY REGIONAL BY ROW AS crdb_region`,
		`CREATE INDEX IF NOT EXISTS trip_event_outbox_at_hash ON trip_event_outbox (at, event_id) USING HASH`,
	} {
		if !strings.Contains(outbox, want) {
			t.Errorf("missing %q in\n%s", want, outbox)
		}
	}
}

// TestCockroachStatementsRerunnable: every statement of the CockroachDB
// set has a form that can run again after a partial failure (the set runs
// outside transactions), and --survive=region needs three regions.
func TestCockroachStatementsRerunnable(t *testing.T) {
	regions := []string{"us-east1", "europe-west1", "us-west1"}
	db, err := sqlstore.DatabaseRegionStatements("hexride", "", regions, sqlstore.SurviveRegion)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	all = append(all, db...)
	all = append(all, sqlstore.RegionalByRowStatements(regions)...)
	all = append(all, sqlstore.HashShardedIndexStatements()...)
	all = append(all, sqlstore.OutboxStatements(regions)...)
	for _, stmt := range all {
		if !sqlstore.IdempotentStatement(stmt) {
			t.Errorf("not re-runnable: %s", stmt)
		}
	}
	for _, stmt := range []string{
		"ALTER TABLE trips ADD COLUMN x INT",
		"CREATE INDEX i ON t (a)",
		"DROP INDEX t@i",
		"ALTER TABLE t DROP COLUMN x",
	} {
		if sqlstore.IdempotentStatement(stmt) {
			t.Errorf("IdempotentStatement(%q) = true", stmt)
		}
	}
	// A new index is created before the one it replaces is dropped.
	idx := sqlstore.HashShardedIndexStatements()
	if !strings.HasPrefix(idx[0], "CREATE") || !strings.HasPrefix(idx[1], "DROP") || !strings.HasPrefix(idx[2], "CREATE UNIQUE") || !strings.Contains(idx[2], "(region, trip_id, version)") {
		t.Errorf("index statements out of order: %v", idx)
	}
	// Base migration 6 runs on CockroachDB too, outside a transaction: the
	// same forms, and the two driver indexes exist before the one they
	// replace is dropped.
	driver := upStatements(t, "migrations/base/00006_driver_pickup_and_ride.sql")
	for _, stmt := range driver {
		if !sqlstore.IdempotentStatement(stmt) {
			t.Errorf("base migration 6 not re-runnable: %s", stmt)
		}
	}
	if len(driver) != 3 ||
		!strings.HasPrefix(driver[0], "CREATE UNIQUE INDEX IF NOT EXISTS trips_one_pickup_per_driver ") ||
		!strings.HasPrefix(driver[1], "CREATE UNIQUE INDEX IF NOT EXISTS trips_one_ride_per_driver ") ||
		driver[2] != "DROP INDEX IF EXISTS trips_one_active_trip_per_driver" {
		t.Errorf("base migration 6 statements out of order: %q", driver)
	}
	if _, err := sqlstore.DatabaseRegionStatements("hexride", "", regions[:2], sqlstore.SurviveRegion); err == nil || !strings.Contains(err.Error(), "--survive=region") {
		t.Errorf("region survival with two regions: err = %v", err)
	}
	if _, err := sqlstore.ParseSurvivalGoal("datacenter"); err == nil || !strings.Contains(err.Error(), "--survive") {
		t.Errorf("bad goal: err = %v", err)
	}
}

// upStatements returns the statements of a goose SQL migration's Up
// section, comments dropped and whitespace collapsed.
func upStatements(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	up := strings.Index(src, "-- +goose Up")
	down := strings.Index(src, "-- +goose Down")
	if up < 0 || down < up {
		t.Fatalf("%s: no Up section before Down", path)
	}
	var lines []string
	for _, line := range strings.Split(src[up:down], "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			lines = append(lines, line)
		}
	}
	var stmts []string
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";") {
		if stmt = strings.Join(strings.Fields(stmt), " "); stmt != "" {
			stmts = append(stmts, stmt)
		}
	}
	return stmts
}

func TestFollowerReadsOnlyOnCockroach(t *testing.T) {
	// On PostgreSQL, stale-allowed reads are ordinary reads (no AS OF SYSTEM
	// TIME, which PostgreSQL would reject).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := sqlstore.Open(ctx, pgtest.DSN(t), sqlstore.WithAutoMigrate())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.List(ctx, store.Filter{AllowStale: true}); err != nil {
		t.Fatal(err)
	}
}

package sqlstore_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/store/storetest"
)

// sqlLog records every statement a pool sends.
type sqlLog struct {
	mu    sync.Mutex
	stmts []string
}

func (l *sqlLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	l.stmts = append(l.stmts, strings.Join(strings.Fields(data.SQL), " "))
	l.mu.Unlock()
	return ctx
}

func (l *sqlLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *sqlLog) inserts(table string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.stmts {
		if strings.HasPrefix(s, "INSERT INTO "+table+" ") {
			out = append(out, s)
		}
	}
	return out
}

// insertColumns is the column list of an INSERT statement.
var insertColumns = regexp.MustCompile(`^INSERT INTO \w+ \(([^)]*)\)`)

func columnsOf(t *testing.T, insert string) []string {
	t.Helper()
	m := insertColumns.FindStringSubmatch(insert)
	if m == nil {
		t.Fatalf("not an INSERT with a column list: %s", insert)
	}
	cols := strings.Split(m[1], ",")
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	return cols
}

// TestKeysNeedNoCrossRegionCheck: trip and event ids come from the
// database (the INSERTs name no id; the columns default to
// gen_random_uuid()), and idempotency keys are stored, and keyed, with
// their trip's region.
func TestKeysNeedNoCrossRegionCheck(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	log := &sqlLog{}
	cfg.ConnConfig.Tracer = log
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.New(ctx, pool, sqlstore.WithOutbox())
	if err != nil {
		t.Fatal(err)
	}
	req := storetest.NewTripRequest("r1")
	req.Region = "us-east"
	tr, _, err := st.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.AssignDriver(ctx, store.AssignDriver{TripID: tr.ID, DriverID: "d1", IdempotencyKey: "assign-1"}); err != nil {
		t.Fatal(err)
	}
	if tr.ID == uuid.Nil {
		t.Fatal("trip has no id")
	}

	for _, table := range []string{"trips", "trip_events"} {
		ins := log.inserts(table)
		if len(ins) == 0 {
			t.Fatalf("no INSERT INTO %s seen", table)
		}
		for _, s := range ins {
			if slices.Contains(columnsOf(t, s), "id") {
				t.Errorf("%s: the id is sent by the client, want the database's: %s", table, s)
			}
		}
		var def string
		if err := pool.QueryRow(ctx, `SELECT coalesce(column_default, '') FROM information_schema.columns
			WHERE table_name = $1 AND column_name = 'id'`, table).Scan(&def); err != nil {
			t.Fatal(err)
		}
		if def != "gen_random_uuid()" {
			t.Errorf("%s.id default = %q, want gen_random_uuid()", table, def)
		}
	}
	for _, s := range log.inserts("trip_idempotency_keys") {
		if !slices.Contains(columnsOf(t, s), "region") {
			t.Errorf("idempotency key recorded without its region: %s", s)
		}
	}
	rows, err := pool.Query(ctx, `SELECT scope, region FROM trip_idempotency_keys WHERE trip_id = $1 ORDER BY scope`, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var scope, region string
		err := r.Scan(&scope, &region)
		return scope + "@" + region, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"assign@us-east", "create@us-east"}; !slices.Equal(got, want) {
		t.Errorf("idempotency rows = %v, want %v", got, want)
	}
	pk := primaryKey(t, pool, "trip_idempotency_keys")
	if pk != "region,scope,key" {
		t.Errorf("trip_idempotency_keys primary key (%s), want (region,scope,key)", pk)
	}
	if pk := primaryKey(t, pool, "trip_event_outbox"); pk != "region,event_id" {
		t.Errorf("trip_event_outbox primary key (%s), want (region,event_id)", pk)
	}
	for _, s := range log.inserts("trip_event_outbox") {
		if !slices.Contains(columnsOf(t, s), "region") {
			t.Errorf("outbox row recorded without its region: %s", s)
		}
	}

	// The same create key and request in the same region is the same trip;
	// a change key is found through its trip's region.
	again, created, err := st.Create(ctx, req)
	if err != nil || created || again.ID != tr.ID {
		t.Fatalf("replayed create = %s created=%v err=%v, want %s", again.ID, created, err, tr.ID)
	}
	re, _, err := st.AssignDriver(ctx, store.AssignDriver{TripID: tr.ID, DriverID: "d1", IdempotencyKey: "assign-1"})
	if err != nil || re.State != lifecycle.StateDriverAssigned {
		t.Fatalf("replayed assign = %+v, %v", re, err)
	}
}

// TestMigrationRerunsAfterPartialFailure: base migration 4 ran part way
// (goose has not recorded it; some of its statements took effect, the
// rest did not) and runs again, then 5 and 6, to the same schema; then 6
// alone ran part way and runs again; all run once more over a finished
// schema whose records were lost.
func TestMigrationRerunsAfterPartialFailure(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	pool := newPool(t, dsn)
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st, err := sqlstore.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := st.Create(ctx, storetest.NewTripRequest("r1"))
	if err != nil {
		t.Fatal(err)
	}
	// Back to "statements 1–3 of migration 4 ran, then it failed": the
	// column is there but unfilled, the primary key is the old one, and
	// goose's version table does not list version 4.
	for _, stmt := range []string{
		`ALTER TABLE trip_idempotency_keys DROP CONSTRAINT trip_idempotency_keys_pkey, ADD CONSTRAINT trip_idempotency_keys_pkey PRIMARY KEY (scope, key)`,
		`UPDATE trip_idempotency_keys SET region = ''`,
		`DELETE FROM trip_goose_db_version WHERE version_id >= 4`, // 5 and 6 never ran
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	rep, err := sqlstore.Migrate(ctx, pool)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if len(rep.Applied) != 3 || rep.Applied[0].Version != 4 || rep.Applied[1].Version != 5 || rep.Applied[2].Version != 6 {
		t.Fatalf("re-run applied %+v, want migration 4 again, then 5 and 6", rep.Applied)
	}
	var region string
	if err := pool.QueryRow(ctx, `SELECT region FROM trip_idempotency_keys WHERE trip_id = $1`, tr.ID).Scan(&region); err != nil || region != tr.Region {
		t.Fatalf("backfilled region = %q, %v; want %q", region, err, tr.Region)
	}
	// Back to "statement 1 of migration 6 ran, then it failed": the pickup
	// index is there, the ride index is not, the old index is not dropped.
	for _, stmt := range []string{
		`DROP INDEX trips_one_ride_per_driver`,
		`CREATE UNIQUE INDEX trips_one_active_trip_per_driver ON trips (driver_id)
			WHERE state IN ('DRIVER_ASSIGNED', 'DRIVER_ARRIVED', 'IN_PROGRESS')`,
		`DELETE FROM trip_goose_db_version WHERE version_id >= 6`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	rep, err = sqlstore.Migrate(ctx, pool)
	if err != nil {
		t.Fatalf("re-run of 6: %v", err)
	}
	if len(rep.Applied) != 1 || rep.Applied[0].Version != 6 {
		t.Fatalf("re-run applied %+v, want migration 6 again", rep.Applied)
	}
	if got, want := driverIndexes(t, pool), "trips_one_pickup_per_driver,trips_one_ride_per_driver"; got != want {
		t.Fatalf("driver indexes after re-running 6 = %s, want %s", got, want)
	}
	// And it runs once more on a finished schema (all of it ran, the
	// record was lost).
	if _, err := pool.Exec(ctx, `DELETE FROM trip_goose_db_version WHERE version_id >= 4`); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatalf("re-run over a finished schema: %v", err)
	}
	if again, created, err := st.Create(ctx, storetest.NewTripRequest("r2")); err != nil || !created || again.ID == uuid.Nil {
		t.Fatalf("create after re-runs: %+v %v %v", again, created, err)
	}
	if got, want := driverIndexes(t, pool), "trips_one_pickup_per_driver,trips_one_ride_per_driver"; got != want {
		t.Fatalf("driver indexes after the last re-run = %s, want %s", got, want)
	}
}

// driverIndexes lists the unique indexes on trips (driver_id), by name.
func driverIndexes(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var names string
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(indexname, ',' ORDER BY indexname), '')
		FROM pg_indexes WHERE tablename = 'trips' AND indexdef LIKE 'CREATE UNIQUE INDEX % ON % (driver_id)%'`).Scan(&names); err != nil {
		t.Fatal(err)
	}
	return names
}

// primaryKey lists a table's primary key columns in order, comma-separated.
func primaryKey(t *testing.T, pool *pgxpool.Pool, table string) string {
	t.Helper()
	var pk string
	if err := pool.QueryRow(context.Background(), `SELECT string_agg(a.attname, ',' ORDER BY k.ord)
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1::regclass AND i.indisprimary`, table).Scan(&pk); err != nil {
		t.Fatal(err)
	}
	return pk
}

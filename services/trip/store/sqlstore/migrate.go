package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/postgres"
)

//go:embed migrations/base/*.sql
var baseMigrations embed.FS

// Migration sets and their goose bookkeeping.
const (
	SetBase        = "base"
	SetCockroachDB = "cockroachdb"

	lockTable = "trip_goose_lock"
)

var migrationSets = map[string]struct {
	versionTable string
	lockID       int64
}{
	SetBase:        {"trip_goose_db_version", 7_420_001},
	SetCockroachDB: {"trip_goose_db_version_crdb", 7_420_002},
}

// MigrationReport says what Migrate did.
type MigrationReport struct {
	Dialect postgres.Dialect
	// Applied lists the migrations applied by this call, in order.
	Applied []AppliedMigration
	// Versions is each set's version after the call (sets that do not apply
	// to the dialect are absent).
	Versions map[string]int64
}

// AppliedMigration is one migration Migrate applied.
type AppliedMigration struct {
	Set      string
	Version  int64
	Source   string // file name, or the Go migration's name
	Duration time.Duration
}

func (r MigrationReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dialect %s; ", r.Dialect)
	if len(r.Applied) == 0 {
		b.WriteString("no migrations to apply")
	}
	for i, m := range r.Applied {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "applied %s/%s (%s)", m.Set, m.Source, m.Duration.Round(time.Millisecond))
	}
	sets := make([]string, 0, len(r.Versions))
	for s := range r.Versions {
		sets = append(sets, s)
	}
	slices.Sort(sets)
	for _, s := range sets {
		fmt.Fprintf(&b, "; %s at version %d", s, r.Versions[s])
	}
	return b.String()
}

// MigrateOption configures Migrate.
type MigrateOption func(*migrateConfig)

type migrateConfig struct {
	logger        *slog.Logger
	primaryRegion string
	regions       *dispatch.RegionMap
	lockInterval  time.Duration
}

// WithMigrateLogger logs goose's progress to l (default: silent).
func WithMigrateLogger(l *slog.Logger) MigrateOption {
	return func(c *migrateConfig) { c.logger = l }
}

// WithPrimaryRegion sets the CockroachDB database's primary region (default:
// the first of the cluster's regions in sorted order). Ignored on PostgreSQL.
func WithPrimaryRegion(region string) MigrateOption {
	return func(c *migrateConfig) { c.primaryRegion = region }
}

// WithRegionMap makes the CockroachDB database's regions exactly the
// region map's (--region-map), with its primary as the primary region, so
// every region a trip can be homed in is a database region. Each must be a
// region of the cluster. Ignored on PostgreSQL.
func WithRegionMap(m *dispatch.RegionMap) MigrateOption {
	return func(c *migrateConfig) { c.regions = m }
}

// Migrate brings the trip schema up to date: the portable base set always,
// then, only when `SELECT version()` reports CockroachDB, the
// CockroachDB-only set (multi-region). Concurrent callers are serialised by
// goose's table-based locker (CockroachDB has no advisory locks).
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts ...MigrateOption) (MigrationReport, error) {
	cfg := migrateConfig{lockInterval: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	dialect, err := postgres.DetectDialect(ctx, pool)
	if err != nil {
		return MigrationReport{}, err
	}
	report := MigrationReport{Dialect: dialect, Versions: map[string]int64{}}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	base, err := fs.Sub(baseMigrations, "migrations/base")
	if err != nil {
		return report, err
	}
	if err := runSet(ctx, db, SetBase, base, nil, cfg, &report); err != nil {
		return report, err
	}
	if dialect == postgres.CockroachDB {
		if err := runSet(ctx, db, SetCockroachDB, nil, cockroachMigrations(cfg), cfg, &report); err != nil {
			return report, err
		}
	}
	return report, nil
}

func runSet(ctx context.Context, db *sql.DB, set string, fsys fs.FS, goMigrations []*goose.Migration, cfg migrateConfig, report *MigrationReport) error {
	meta := migrationSets[set]
	locker, err := lock.NewPostgresTableLocker(
		lock.WithTableName(lockTable),
		lock.WithTableLockID(meta.lockID),
		lock.WithTableLockTimeout(cfg.lockInterval, 600),
		lock.WithTableUnlockTimeout(cfg.lockInterval, 60),
	)
	if err != nil {
		return fmt.Errorf("migrate %s: locker: %w", set, err)
	}
	popts := []goose.ProviderOption{
		goose.WithTableName(meta.versionTable),
		goose.WithLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	}
	if cfg.logger != nil {
		popts = append(popts, goose.WithSlog(cfg.logger))
	} else {
		popts = append(popts, goose.WithLogger(goose.NopLogger()))
	}
	if len(goMigrations) > 0 {
		popts = append(popts, goose.WithGoMigrations(goMigrations...))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, popts...)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", set, err)
	}
	results, upErr := p.Up(ctx)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		name := r.Source.Path
		if name == "" {
			name = goMigrationNames[r.Source.Version]
		}
		report.Applied = append(report.Applied, AppliedMigration{Set: set, Version: r.Source.Version, Source: name, Duration: r.Duration})
	}
	if upErr != nil {
		return fmt.Errorf("migrate %s: %w", set, upErr)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: version: %w", set, err)
	}
	report.Versions[set] = v
	return nil
}

// The CockroachDB-only set. It is Go rather than SQL because ALTER DATABASE
// needs the database's name and the cluster's regions, which only the
// running cluster knows. See migrations/cockroach/README.md.
var goMigrationNames = map[int64]string{
	1: "00001_database_regions",
	2: "00002_regional_by_row",
	3: "00003_hash_sharded_event_index",
	4: "00004_event_outbox_locality",
}

func cockroachMigrations(cfg migrateConfig) []*goose.Migration {
	return []*goose.Migration{
		goose.NewGoMigration(1, &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			name, cluster, err := clusterRegions(ctx, db)
			if err != nil {
				return err
			}
			stmts, err := databaseRegionPlan(name, cluster, cfg)
			if err != nil {
				return err
			}
			for _, stmt := range stmts {
				if _, err := db.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			return nil
		}}, nil),
		goose.NewGoMigration(2, &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			regions, err := databaseRegions(ctx, db)
			if err != nil {
				return err
			}
			for _, stmt := range RegionalByRowStatements(regions) {
				if _, err := db.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			return nil
		}}, nil),
		goose.NewGoMigration(3, &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			for _, stmt := range HashShardedIndexStatements() {
				if _, err := db.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			return nil
		}}, nil),
		goose.NewGoMigration(4, &goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error {
			regions, err := databaseRegions(ctx, db)
			if err != nil {
				return err
			}
			for _, stmt := range OutboxStatements(regions) {
				if _, err := db.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			return nil
		}}, nil),
	}
}

// databaseRegionPlan is migration 1's statements: the region map's regions
// and primary when there is a map, else the cluster's regions with
// --primary-region (default: the first).
func databaseRegionPlan(name string, cluster []string, cfg migrateConfig) ([]string, error) {
	if cfg.regions == nil {
		return DatabaseRegionStatements(name, cfg.primaryRegion, cluster), nil
	}
	primary := cfg.regions.Primary()
	if cfg.primaryRegion != "" && cfg.primaryRegion != primary {
		return nil, fmt.Errorf("--primary-region=%q differs from the primary %q of --region-map", cfg.primaryRegion, primary)
	}
	regions := cfg.regions.Regions()
	var missing []string
	for _, r := range regions {
		if !slices.Contains(cluster, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--region-map regions %v are not regions of the cluster (%v): start nodes with --locality=region=…", missing, cluster)
	}
	return DatabaseRegionStatements(name, primary, regions), nil
}

func clusterRegions(ctx context.Context, db *sql.DB) (string, []string, error) {
	var name string
	if err := db.QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil {
		return "", nil, fmt.Errorf("current database: %w", err)
	}
	regions, err := queryStrings(ctx, db, "SELECT region FROM [SHOW REGIONS FROM CLUSTER] ORDER BY region")
	if err != nil {
		return "", nil, err
	}
	if len(regions) == 0 {
		return "", nil, errors.New("cluster reports no regions: start nodes with --locality=region=…")
	}
	return name, regions, nil
}

func databaseRegions(ctx context.Context, db *sql.DB) ([]string, error) {
	return queryStrings(ctx, db, "SELECT region FROM [SHOW REGIONS FROM DATABASE] ORDER BY \"primary\" DESC, region")
}

func queryStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// DatabaseRegionStatements returns the ALTER DATABASE statements that make
// database name multi-region over regions (the cluster's), with primary as
// the primary region (default regions[0]), surviving a region failure when
// there are at least three regions (CockroachDB's minimum for that goal).
func DatabaseRegionStatements(name, primary string, regions []string) []string {
	if primary == "" && len(regions) > 0 {
		primary = regions[0]
	}
	stmts := []string{fmt.Sprintf("ALTER DATABASE %s PRIMARY REGION %s", ident(name), ident(primary))}
	for _, r := range regions {
		if r != primary {
			stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s ADD REGION IF NOT EXISTS %s", ident(name), ident(r)))
		}
	}
	if len(regions) >= 3 {
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SURVIVE REGION FAILURE", ident(name)))
	}
	return stmts
}

// RegionalByRowStatements homes each trip, its events and its idempotency
// keys in the trip's region: trips and trip_events get a hidden crdb_region
// computed from their region column (a region the database does not have
// maps to the primary region, regions[0]); idempotency keys are homed in the
// region of the gateway that wrote them. Unique indexes on REGIONAL BY ROW
// tables stay globally unique (CockroachDB checks across regions), so the
// one-active-trip-per-driver index keeps its guarantee.
func RegionalByRowStatements(regions []string) []string {
	if len(regions) == 0 {
		return nil
	}
	stmts := regionalByRegionColumn(regions, "trips", "trip_events")
	stmts = append(stmts, "ALTER TABLE trip_idempotency_keys SET LOCALITY REGIONAL BY ROW")
	return stmts
}

// regionalByRegionColumn homes each row of tables in the region its region
// column names (unknown regions: the primary, regions[0]).
func regionalByRegionColumn(regions []string, tables ...string) []string {
	var cases strings.Builder
	cases.WriteString("CASE region")
	for _, r := range regions {
		fmt.Fprintf(&cases, " WHEN %s THEN %s::crdb_internal_region", literal(r), literal(r))
	}
	fmt.Fprintf(&cases, " ELSE %s::crdb_internal_region END", literal(regions[0]))
	var stmts []string
	for _, table := range tables {
		stmts = append(stmts,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (%s) STORED", table, cases.String()),
			fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY ROW AS crdb_region", table),
		)
	}
	return stmts
}

// OutboxStatements does for the event outbox (base migration 3) what
// migrations 2 and 3 did for trip_events: rows homed in their trip's
// region, and a hash-sharded (at, event_id) index instead of a
// time-ordered hot spot. The relay lease (one row) stays in the primary
// region.
func OutboxStatements(regions []string) []string {
	var stmts []string
	if len(regions) > 0 {
		stmts = regionalByRegionColumn(regions, "trip_event_outbox")
	}
	return append(stmts,
		"DROP INDEX trip_event_outbox@trip_event_outbox_at",
		"CREATE INDEX trip_event_outbox_at ON trip_event_outbox (at, event_id) USING HASH",
	)
}

// HashShardedIndexStatements replaces the time-ordered event index, a write
// hot spot on CockroachDB, with a hash-sharded one.
func HashShardedIndexStatements() []string {
	return []string{
		"DROP INDEX trip_events@trip_events_at",
		"CREATE INDEX trip_events_at ON trip_events (at, id) USING HASH",
	}
}

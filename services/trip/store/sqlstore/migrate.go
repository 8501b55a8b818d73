package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
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
	// Reconciled lists the region statements run after the versioned sets
	// (CockroachDB: database regions, and re-homing when they changed).
	Reconciled []string
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
	if len(r.Reconciled) > 0 {
		fmt.Fprintf(&b, "; regions reconciled (%d statements)", len(r.Reconciled))
	}
	return b.String()
}

// MigrateOption configures Migrate.
type MigrateOption func(*migrateConfig)

type migrateConfig struct {
	logger        *slog.Logger
	primaryRegion string
	regions       *dispatch.RegionMap
	survival      SurvivalGoal
	lockInterval  time.Duration
}

// SurvivalGoal is what a multi-region CockroachDB database survives
// (hexride migrate --survive). It is an explicit choice because its cost
// is paid on every write:
//   - SurviveZone (the default): a write commits within its home region
//     (one in-region consensus round); losing a whole region makes the
//     trips homed there unavailable until it returns.
//   - SurviveRegion: every write also waits for a replica in another
//     region, adding at least one cross-region round trip (tens to
//     hundreds of milliseconds) to each trip change; reads stay local.
//     Needs at least three database regions.
type SurvivalGoal string

// Survival goals.
const (
	SurviveZone   SurvivalGoal = "zone"
	SurviveRegion SurvivalGoal = "region"
)

// ParseSurvivalGoal reads a --survive value; empty means unset (zone when
// the database is first made multi-region, unchanged after).
func ParseSurvivalGoal(s string) (SurvivalGoal, error) {
	switch g := SurvivalGoal(s); g {
	case SurviveZone, SurviveRegion, "":
		return g, nil
	}
	return "", fmt.Errorf("--survive=%q: want zone or region", s)
}

// WithSurvivalGoal sets the CockroachDB database's survival goal (unset:
// SurviveZone when the database is first made multi-region, and left as it
// is by later runs). Ignored on PostgreSQL.
func WithSurvivalGoal(g SurvivalGoal) MigrateOption {
	return func(c *migrateConfig) { c.survival = g }
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
	if _, err := ParseSurvivalGoal(string(cfg.survival)); err != nil {
		return MigrationReport{}, err
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
		ran, err := reconcileRegions(ctx, db, cfg)
		report.Reconciled = ran
		if err != nil {
			return report, fmt.Errorf("migrate: regions: %w", err)
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
//
// Every statement can run again: goose runs a Go migration outside a
// transaction (CockroachDB schema changes are not transactional anyway),
// so a migration that fails part way is re-run from its first statement
// (IdempotentStatement checks the forms).
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
			first := cfg
			first.survival = cmp.Or(cfg.survival, SurviveZone)
			stmts, err := databaseRegionPlan(name, cluster, first)
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
		return DatabaseRegionStatements(name, cfg.primaryRegion, cluster, cfg.survival)
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
	return DatabaseRegionStatements(name, primary, regions, cfg.survival)
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
// the primary region (default regions[0]) and the survival goal stated
// explicitly (none when survival is unset). SurviveRegion needs at least
// three regions (CockroachDB's minimum for that goal).
func DatabaseRegionStatements(name, primary string, regions []string, survival SurvivalGoal) ([]string, error) {
	if primary == "" && len(regions) > 0 {
		primary = regions[0]
	}
	if survival == SurviveRegion && len(regions) < 3 {
		return nil, fmt.Errorf("--survive=region needs at least three database regions, have %d (%v)", len(regions), regions)
	}
	stmts := []string{fmt.Sprintf("ALTER DATABASE %s PRIMARY REGION %s", ident(name), ident(primary))}
	for _, r := range regions {
		if r != primary {
			stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s ADD REGION IF NOT EXISTS %s", ident(name), ident(r)))
		}
	}
	switch survival {
	case SurviveZone:
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SURVIVE ZONE FAILURE", ident(name)))
	case SurviveRegion:
		stmts = append(stmts, fmt.Sprintf("ALTER DATABASE %s SURVIVE REGION FAILURE", ident(name)))
	}
	return stmts, nil
}

// RegionalByRowStatements homes each trip, its events and its idempotency
// keys in the trip's region: each table gets a hidden crdb_region computed
// from its region column (a region the database does not have maps to the
// primary region, regions[0]).
//
// What this costs on insert: CockroachDB checks a unique index of a
// REGIONAL BY ROW table in every region unless the check cannot fail
// across regions. Trip and event ids are gen_random_uuid() defaults (base
// migration 4), exempt; the idempotency key's primary key starts with its
// region, from which its home is computed, so it is unique per region; the
// event version index gets the same shape in migration 3. The cross-region
// checks left are deliberate: the driver indexes (one pickup and one ride
// in progress per driver, base migration 6) must hold across regions, and
// they are checked only when a trip's driver or state changes.
func RegionalByRowStatements(regions []string) []string {
	if len(regions) == 0 {
		return nil
	}
	return regionalByRegionColumn(regions, "trips", "trip_events", "trip_idempotency_keys")
}

// regionalByRegionColumn homes each row of tables in the region its region
// column names (unknown regions: the primary, regions[0]).
func regionalByRegionColumn(regions []string, tables ...string) []string {
	cases := homingCase(regions)
	var stmts []string
	for _, table := range tables {
		stmts = append(stmts,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (%s) STORED", table, cases),
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
		"CREATE INDEX IF NOT EXISTS trip_event_outbox_at_hash ON trip_event_outbox (at, event_id) USING HASH",
		"DROP INDEX IF EXISTS trip_event_outbox@trip_event_outbox_at",
	)
}

// HashShardedIndexStatements replaces the time-ordered event index, a write
// hot spot on CockroachDB, with a hash-sharded one, and the event version
// constraint with one led by the region (the same guarantee, since a
// trip's region never changes, checked only in the trip's home region).
// New indexes are created before the old ones are dropped, under new
// names, so a re-run finds both steps done.
func HashShardedIndexStatements() []string {
	return []string{
		"CREATE INDEX IF NOT EXISTS trip_events_at_hash ON trip_events (at, id) USING HASH",
		"DROP INDEX IF EXISTS trip_events@trip_events_at",
		"CREATE UNIQUE INDEX IF NOT EXISTS " + idxRegionTripVersion + " ON trip_events (region, trip_id, version)",
		"DROP INDEX IF EXISTS trip_events@" + idxTripVersion + " CASCADE",
	}
}

// idempotentForm matches the statement forms that can run twice with the
// same outcome.
var idempotentForm = regexp.MustCompile(`^(ALTER DATABASE \S+ (PRIMARY REGION|ADD REGION IF NOT EXISTS|SURVIVE (ZONE|REGION) FAILURE)` +
	`|ALTER TABLE \S+ (ADD COLUMN IF NOT EXISTS|DROP COLUMN IF EXISTS|SET LOCALITY)` +
	`|CREATE (UNIQUE )?INDEX IF NOT EXISTS|DROP INDEX IF EXISTS)\b`)

// IdempotentStatement reports whether stmt, a CockroachDB migration
// statement, may run again after it (or a later one) already ran.
func IdempotentStatement(stmt string) bool { return idempotentForm.MatchString(stmt) }

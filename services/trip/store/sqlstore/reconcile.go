package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Region reconciliation (CockroachDB only), run by every Migrate after the
// versioned sets. The versioned migrations home rows by a computed
// crdb_region whose CASE lists the database's regions as they were when
// migration 2 ran; a region added later would home its trips in the
// primary until the CASE is rebuilt. So each Migrate:
//
//  1. with a region map, makes the database's regions and primary the
//     map's, and the survival goal --survive's when given (migration 1's
//     statements, all idempotent); without a map the database's regions
//     are left as the operator set them;
//  2. for each regional table whose homing CASE does not list exactly the
//     database's regions, computes a new locality column with the current
//     CASE, moves the table's locality to it and drops the old one (the
//     rows are re-homed by CockroachDB as it rewrites the table).
//
// Two column names alternate (crdb_region, crdb_region_next), and the plan
// is computed from what the table is now, so a run that fails part way is
// finished by the next run.

// regionalTables are the tables homed by their region column.
var regionalTables = []string{"trips", "trip_events", "trip_idempotency_keys", "trip_event_outbox"}

const (
	localityColumn     = "crdb_region"
	localityColumnNext = "crdb_region_next"
)

// TableHoming is what reconciliation reads of one regional table.
type TableHoming struct {
	Table string
	// Locality is the column the table is REGIONAL BY ROW AS ("" when the
	// table is not regional by row yet: migration 2 or 4 has not run).
	Locality string
	// Expressions are the generation expressions of the table's
	// locality-candidate columns (crdb_region, crdb_region_next) that exist.
	Expressions map[string]string
}

// homingCase is the CASE that homes a row by its region column: each
// database region to itself, anything else to the primary (regions[0]).
func homingCase(regions []string) string {
	var b strings.Builder
	b.WriteString("CASE region")
	for _, r := range regions {
		fmt.Fprintf(&b, " WHEN %s THEN %s::crdb_internal_region", literal(r), literal(r))
	}
	fmt.Fprintf(&b, " ELSE %s::crdb_internal_region END", literal(regions[0]))
	return b.String()
}

var (
	whenRegion = regexp.MustCompile(`WHEN '((?:[^']|'')*)'`)
	elseRegion = regexp.MustCompile(`ELSE '((?:[^']|'')*)'`)
)

// homedRegions reads the regions a homing CASE lists, and its ELSE region,
// however CockroachDB formats the stored expression.
func homedRegions(expr string) (when []string, els string) {
	for _, m := range whenRegion.FindAllStringSubmatch(expr, -1) {
		when = append(when, strings.ReplaceAll(m[1], "''", "'"))
	}
	if m := elseRegion.FindStringSubmatch(expr); m != nil {
		els = strings.ReplaceAll(m[1], "''", "'")
	}
	return when, els
}

// ReconcileStatements returns the statements that make each table's homing
// CASE list exactly regions (the database's, primary first); nil when all
// do. A table not yet regional by row is left to its versioned migration.
func ReconcileStatements(tables []TableHoming, regions []string) []string {
	if len(regions) == 0 {
		return nil
	}
	want := slices.Clone(regions)
	slices.Sort(want)
	var stmts []string
	for _, t := range tables {
		if t.Locality == "" {
			continue
		}
		next := localityColumnNext
		if t.Locality == localityColumnNext {
			next = localityColumn
		}
		_, leftover := t.Expressions[next]
		when, els := homedRegions(t.Expressions[t.Locality])
		slices.Sort(when)
		if slices.Equal(when, want) && els == regions[0] {
			if leftover {
				// A run moved the locality and stopped before dropping the
				// old column.
				stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t.Table, next))
			}
			continue
		}
		if leftover {
			// Left by a run that failed before moving the locality; its CASE
			// may be older still.
			stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t.Table, next))
		}
		stmts = append(stmts,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s crdb_internal_region NOT VISIBLE NOT NULL AS (%s) STORED", t.Table, next, homingCase(regions)),
			fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY ROW AS %s", t.Table, next),
			fmt.Sprintf("ALTER TABLE %s DROP COLUMN IF EXISTS %s", t.Table, t.Locality),
		)
	}
	return stmts
}

// localityAs reads the column out of crdb_internal.tables' locality
// ("REGIONAL BY ROW AS crdb_region_next"; plain "REGIONAL BY ROW" means the
// default column, crdb_region); "" when not regional by row.
func localityAs(locality string) string {
	rest, ok := strings.CutPrefix(strings.TrimSpace(locality), "REGIONAL BY ROW")
	if !ok {
		return ""
	}
	if col, ok := strings.CutPrefix(strings.TrimSpace(rest), "AS "); ok {
		return strings.Trim(strings.TrimSpace(col), `"`)
	}
	return localityColumn
}

// reconcileRegions runs both steps on a CockroachDB database.
func reconcileRegions(ctx context.Context, db *sql.DB, cfg migrateConfig) ([]string, error) {
	var dbStmts []string
	if cfg.regions != nil {
		name, cluster, err := clusterRegions(ctx, db)
		if err != nil {
			return nil, err
		}
		if dbStmts, err = databaseRegionPlan(name, cluster, cfg); err != nil {
			return nil, err
		}
	}
	var ran []string
	for _, stmt := range dbStmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return ran, fmt.Errorf("%s: %w", stmt, err)
		}
		ran = append(ran, stmt)
	}
	regions, err := databaseRegions(ctx, db)
	if err != nil {
		return ran, err
	}
	var tables []TableHoming
	for _, table := range regionalTables {
		t, err := readHoming(ctx, db, table)
		if err != nil {
			return ran, err
		}
		tables = append(tables, t)
	}
	for _, stmt := range ReconcileStatements(tables, regions) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return ran, fmt.Errorf("%s: %w", stmt, err)
		}
		ran = append(ran, stmt)
	}
	return ran, nil
}

func readHoming(ctx context.Context, db *sql.DB, table string) (TableHoming, error) {
	t := TableHoming{Table: table, Expressions: map[string]string{}}
	var locality sql.NullString
	err := db.QueryRowContext(ctx, `SELECT locality FROM crdb_internal.tables WHERE name = $1 AND database_name = current_database() AND schema_name = 'public'`, table).Scan(&locality)
	if errors.Is(err, sql.ErrNoRows) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("locality of %s: %w", table, err)
	}
	t.Locality = localityAs(locality.String)
	rows, err := db.QueryContext(ctx, `SELECT column_name, generation_expression FROM information_schema.columns
		WHERE table_name = $1 AND column_name IN ($2, $3)`, table, localityColumn, localityColumnNext)
	if err != nil {
		return t, fmt.Errorf("locality columns of %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var col, expr string
		if err := rows.Scan(&col, &expr); err != nil {
			return t, err
		}
		t.Expressions[col] = expr
	}
	return t, rows.Err()
}

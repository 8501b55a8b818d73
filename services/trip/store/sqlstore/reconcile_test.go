package sqlstore

import (
	"slices"
	"strings"
	"testing"
)

// TestReconcileStatements: adding a region to the database re-homes each
// regional table by a CASE that lists it (a new locality column, the
// locality moved to it, the old column dropped); a run that stopped part
// way is finished from what the table is; nothing is done when the CASE
// already lists exactly the database's regions, whatever their order or
// CockroachDB's formatting of the stored expression.
func TestReconcileStatements(t *testing.T) {
	two := []string{"us-east1", "europe-west1"}
	three := []string{"us-east1", "europe-west1", "asia-south1"}
	// As CockroachDB shows a stored expression: typed literals, its own
	// spacing and qualification.
	stored := func(regions []string) string {
		var b strings.Builder
		b.WriteString("CASE region ")
		for _, r := range regions {
			b.WriteString("WHEN '" + r + "':::STRING THEN '" + r + "':::public.crdb_internal_region ")
		}
		b.WriteString("ELSE '" + regions[0] + "':::public.crdb_internal_region END")
		return b.String()
	}
	tests := []struct {
		name   string
		table  TableHoming
		want   []string
		substr []string // in the ADD COLUMN's CASE
	}{
		{
			name:  "same regions in another order: nothing to do",
			table: TableHoming{Table: "trips", Locality: "crdb_region", Expressions: map[string]string{"crdb_region": stored([]string{"us-east1", "asia-south1", "europe-west1"})}},
		},
		{
			name:  "not regional by row yet: left to its migration",
			table: TableHoming{Table: "trip_event_outbox"},
		},
		{
			name:  "a region added: re-homed on the next column",
			table: TableHoming{Table: "trips", Locality: "crdb_region", Expressions: map[string]string{"crdb_region": stored(two)}},
			want: []string{
				"ALTER TABLE trips ADD COLUMN IF NOT EXISTS crdb_region_next crdb_internal_region NOT VISIBLE NOT NULL AS (" + homingCase(three) + ") STORED",
				"ALTER TABLE trips SET LOCALITY REGIONAL BY ROW AS crdb_region_next",
				"ALTER TABLE trips DROP COLUMN IF EXISTS crdb_region",
			},
			substr: []string{"WHEN 'asia-south1' THEN 'asia-south1'::crdb_internal_region", "ELSE 'us-east1'::crdb_internal_region"},
		},
		{
			name:  "the second time: back to the first name",
			table: TableHoming{Table: "trip_events", Locality: "crdb_region_next", Expressions: map[string]string{"crdb_region_next": stored(two)}},
			want: []string{
				"ALTER TABLE trip_events ADD COLUMN IF NOT EXISTS crdb_region crdb_internal_region NOT VISIBLE NOT NULL AS (" + homingCase(three) + ") STORED",
				"ALTER TABLE trip_events SET LOCALITY REGIONAL BY ROW AS crdb_region",
				"ALTER TABLE trip_events DROP COLUMN IF EXISTS crdb_region_next",
			},
		},
		{
			name: "an earlier run added the column, then failed: dropped and redone",
			table: TableHoming{Table: "trips", Locality: "crdb_region", Expressions: map[string]string{
				"crdb_region": stored(two), "crdb_region_next": stored([]string{"us-east1", "europe-west1", "me-central1"}),
			}},
			want: []string{
				"ALTER TABLE trips DROP COLUMN IF EXISTS crdb_region_next",
				"ALTER TABLE trips ADD COLUMN IF NOT EXISTS crdb_region_next crdb_internal_region NOT VISIBLE NOT NULL AS (" + homingCase(three) + ") STORED",
				"ALTER TABLE trips SET LOCALITY REGIONAL BY ROW AS crdb_region_next",
				"ALTER TABLE trips DROP COLUMN IF EXISTS crdb_region",
			},
		},
		{
			name: "an earlier run moved the locality, then failed: only the old column goes",
			table: TableHoming{Table: "trips", Locality: "crdb_region_next", Expressions: map[string]string{
				"crdb_region": stored(two), "crdb_region_next": stored(three),
			}},
			want: []string{"ALTER TABLE trips DROP COLUMN IF EXISTS crdb_region"},
		},
		{
			name:  "the primary changed: re-homed (unknown regions go to the new primary)",
			table: TableHoming{Table: "trips", Locality: "crdb_region", Expressions: map[string]string{"crdb_region": stored([]string{"europe-west1", "us-east1", "asia-south1"})}},
			want: []string{
				"ALTER TABLE trips ADD COLUMN IF NOT EXISTS crdb_region_next crdb_internal_region NOT VISIBLE NOT NULL AS (" + homingCase(three) + ") STORED",
				"ALTER TABLE trips SET LOCALITY REGIONAL BY ROW AS crdb_region_next",
				"ALTER TABLE trips DROP COLUMN IF EXISTS crdb_region",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReconcileStatements([]TableHoming{tt.table}, three)
			// "only the old column goes": the table already homes by the
			// current CASE, so it is done; the stale column is dropped.
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, s := range tt.substr {
				if !strings.Contains(strings.Join(got, "\n"), s) {
					t.Errorf("missing %q", s)
				}
			}
			for _, stmt := range got {
				if !IdempotentStatement(stmt) {
					t.Errorf("not re-runnable: %s", stmt)
				}
			}
		})
	}
}

func TestLocalityAs(t *testing.T) {
	for in, want := range map[string]string{
		"REGIONAL BY ROW":                     "crdb_region",
		"REGIONAL BY ROW AS crdb_region_next": "crdb_region_next",
		`REGIONAL BY ROW AS "crdb_region"`:    "crdb_region",
		"REGIONAL BY TABLE IN PRIMARY REGION": "",
		"GLOBAL":                              "",
		"":                                    "",
	} {
		if got := localityAs(in); got != want {
			t.Errorf("localityAs(%q) = %q, want %q", in, got, want)
		}
	}
}

package sqlstore_test

import (
	"strings"
	"testing"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

// TestCockroachRegionsFromRegionMap: with a region map, the CockroachDB
// migration makes the database's regions exactly the map's, with the map's
// primary as primary region, whatever else the cluster has; a map region
// the cluster lacks, or a --primary-region that contradicts the map, stops
// the migration. (CockroachDB cannot run here: this checks the SQL text.)
func TestCockroachRegionsFromRegionMap(t *testing.T) {
	m, err := dispatch.ParseRegionMap([]byte(`{"primary":"us-east1","regions":[
		{"name":"us-east1","fallback":"us-west1"},
		{"name":"us-west1","fallback":"us-east1"},
		{"name":"europe-west1","fallback":"us-east1"}]}`), 6)
	if err != nil {
		t.Fatal(err)
	}
	cluster := []string{"asia-east1", "europe-west1", "us-east1", "us-west1"}
	got, err := sqlstore.DatabaseRegionPlan("hexride", cluster, m, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`ALTER DATABASE "hexride" PRIMARY REGION "us-east1"`,
		`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "europe-west1"`,
		`ALTER DATABASE "hexride" ADD REGION IF NOT EXISTS "us-west1"`,
		`ALTER DATABASE "hexride" SURVIVE ZONE FAILURE`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Migration 2 reads the database's regions back primary first: the
	// CASE homes each trip's region, anything else in the primary.
	rbr := strings.Join(sqlstore.RegionalByRowStatements([]string{"us-east1", "europe-west1", "us-west1"}), "\n")
	if wantCase := `CASE region WHEN 'us-east1' THEN 'us-east1'::crdb_internal_region WHEN 'europe-west1' THEN 'europe-west1'::crdb_internal_region WHEN 'us-west1' THEN 'us-west1'::crdb_internal_region ELSE 'us-east1'::crdb_internal_region END`; !strings.Contains(rbr, wantCase) {
		t.Fatalf("missing %s in\n%s", wantCase, rbr)
	}
	if _, err := sqlstore.DatabaseRegionPlan("hexride", []string{"us-east1", "us-west1"}, m, ""); err == nil || !strings.Contains(err.Error(), "europe-west1") || !strings.Contains(err.Error(), "--region-map") {
		t.Fatalf("map region missing from the cluster: err = %v", err)
	}
	if _, err := sqlstore.DatabaseRegionPlan("hexride", cluster, m, "us-west1"); err == nil || !strings.Contains(err.Error(), "--primary-region") {
		t.Fatalf("contradicting --primary-region: err = %v", err)
	}
	if _, err := sqlstore.DatabaseRegionPlan("hexride", cluster, m, "us-east1"); err != nil {
		t.Fatalf("agreeing --primary-region: %v", err)
	}
	// No map: the cluster's regions, as before.
	got, err = sqlstore.DatabaseRegionPlan("hexride", []string{"a", "b"}, nil, "b")
	if err != nil || got[0] != `ALTER DATABASE "hexride" PRIMARY REGION "b"` || len(got) != 3 {
		t.Fatalf("without a map: %v, %v", got, err)
	}
}

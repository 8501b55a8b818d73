package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

// sfRegions: us-west homes San Francisco (sfPickup) through the res-3
// ancestor of its partition; eu-west, the primary, homes the rest and
// takes us-west's partitions when us-west has no matching worker.
func sfRegions(t *testing.T) *dispatch.RegionMap {
	t.Helper()
	part, err := geo.CellAt(geo.LatLng{Lat: sfPickup.GetLat(), Lng: sfPickup.GetLng()}, dispatch.DefaultTopology().PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := part.Parent(3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dispatch.ParseRegionMap(fmt.Appendf(nil, `{"primary":"eu-west","regions":[
		{"name":"eu-west","fallback":"us-west"},
		{"name":"us-west","fallback":"eu-west","cells":[%q]}]}`, cell.String()), dispatch.DefaultTopology().PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTripHomedByPickupRegion: a ride requested through a rider gateway
// in eu-west with a pickup in San Francisco is stored on PostgreSQL homed
// in us-west, the region the map gives the pickup.
func TestTripHomedByPickupRegion(t *testing.T) {
	db := pgtest.NewServer(t).DSN()
	pool := newTestPool(t, db)
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(AllServices...)
	cfg.DatabaseURL = db
	cfg.Region, cfg.Regions = "eu-west", sfRegions(t)
	_, cc := startNodeConfig(t, cfg)
	trip := request(t, cc, "r-regions", "regions-1")
	if trip.GetRegion() != "us-west" {
		t.Fatalf("trip homed in %q, want us-west (the pickup's region, not the gateway's eu-west)", trip.GetRegion())
	}
	var stored string
	if err := pool.QueryRow(context.Background(), "SELECT region FROM trips WHERE id = $1", trip.GetId()).Scan(&stored); err != nil || stored != "us-west" {
		t.Fatalf("row region %q (%v), want us-west", stored, err)
	}
}

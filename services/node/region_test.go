package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
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

// fakeWatch is a consul.Membership that sends the given lists, then closes.
type fakeWatch [][]consul.Instance

func (f fakeWatch) WatchService(ctx context.Context, service string) <-chan []consul.Instance {
	ch := make(chan []consul.Instance, len(f))
	for _, l := range f {
		ch <- l
	}
	close(ch)
	return ch
}

// TestFollowMembersPlacesWorkers: the matching ring built from Consul
// knows each worker's region (its "region" meta key), so with the region
// map a partition homed in us-west goes to the us-west worker, and to
// eu-west's when us-west has none; a worker without a region owns nothing.
func TestFollowMembersPlacesWorkers(t *testing.T) {
	regions := sfRegions(t)
	inst := func(id, region string, port int) consul.Instance {
		i := consul.Instance{ID: id, Service: ConsulName(Matching), Address: "127.0.0.1", Port: port}
		if region != "" {
			i.Meta = map[string]string{"region": region}
		}
		return i
	}
	west, europe, legacy := inst("w", "us-west", 9001), inst("e", "eu-west", 9002), inst("old", "", 9003)
	part, err := geo.CellAt(geo.LatLng{Lat: sfPickup.GetLat(), Lng: sfPickup.GetLng()}, dispatch.DefaultTopology().PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		list    []consul.Instance
		want    string // owner id of the SF partition, "" none
		wantReg string
	}{
		{"both regions", []consul.Instance{west, europe, legacy}, "w", "us-west"},
		{"us-west down", []consul.Instance{europe, legacy}, "e", "eu-west"},
		{"only a worker without a region", []consul.Instance{legacy}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			static := ring.NewPlacedStatic(matchingclient.Placement(regions))
			followMembers(context.Background(), fakeWatch{tc.list}, static)
			r, _ := static.Ring()
			m, ok := r.Owner(uint64(part))
			if m.ID != tc.want || ok != (tc.want != "") || m.Region != tc.wantReg {
				t.Fatalf("SF partition owned by %+v (%v), want %q in %q", m, ok, tc.want, tc.wantReg)
			}
		})
	}
}

package trip_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/store"
)

// nycRegions: us-east homes New York (createReq's pickup) through the res-3
// ancestor of its partition; eu-west is the primary, homing the rest.
func nycRegions(t *testing.T) *dispatch.RegionMap {
	t.Helper()
	part, err := geo.CellAt(geo.LatLng{Lat: 40.7128, Lng: -74.006}, 6)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := part.Parent(3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dispatch.ParseRegionMap(fmt.Appendf(nil, `{"primary":"eu-west","regions":[
		{"name":"eu-west","fallback":"us-east"},
		{"name":"us-east","fallback":"eu-west","cells":[%q]}]}`, cell.String()), 6)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCreateTripHomedByPickup: with a region map the trip is homed in the
// region of its pickup, not the region the caller (a rider gateway in
// eu-west) names; a pickup in no region's cells goes to the primary. On
// PostgreSQL the stored row says so.
func TestCreateTripHomedByPickup(t *testing.T) {
	regions := nycRegions(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var (
				dsn string // postgres: to read the row back
				st  store.Store
			)
			if b.name == "postgres" {
				dsn = migratedDSN(t)
				st = openSQL(t, dsn)
			} else {
				st = b.new(t)
			}
			c := serve(t, st, trip.WithRegionMap(regions))
			ctx := ctxT(t, 30*time.Second)
			for _, tc := range []struct {
				name   string
				pickup *commonv1.LatLng
				want   string
			}{
				{"new york, requested in eu-west", &commonv1.LatLng{Lat: 40.7128, Lng: -74.006}, "us-east"},
				{"tokyo, in no region's cells", &commonv1.LatLng{Lat: 35.6762, Lng: 139.6503}, "eu-west"},
			} {
				req := createReq("rider-" + tc.name)
				req.Pickup, req.Region = tc.pickup, "eu-west"
				tr, _, err := c.CreateTrip(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if tr.GetRegion() != tc.want {
					t.Errorf("%s: trip homed in %q, want %q", tc.name, tr.GetRegion(), tc.want)
				}
				if dsn == "" {
					continue
				}
				conn, err := pgx.Connect(ctx, dsn)
				if err != nil {
					t.Fatal(err)
				}
				var stored string
				err = conn.QueryRow(ctx, "SELECT region FROM trips WHERE id = $1", tr.GetId()).Scan(&stored)
				conn.Close(context.Background())
				if err != nil || stored != tc.want {
					t.Errorf("%s: row region %q (%v), want %q", tc.name, stored, err, tc.want)
				}
			}
		})
	}
}

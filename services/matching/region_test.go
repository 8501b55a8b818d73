package matching

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// TestRegionalOwnershipAgrees: with a region map (us-east homes a res-3
// cell around Wilmington and falls back to eu-west, the primary homing the
// rest), workers and a caller's matching client that share a placed
// membership name the same owner for every partition; the owner is of the
// partition's region while both regions have workers, moves to the
// fallback region when us-east has none, and back when one returns.
func TestRegionalOwnershipAgrees(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	top := dispatch.DefaultTopology()
	wilmington := geo.LatLng{Lat: 39.7447, Lng: -75.5484}
	part, _ := geo.CellAt(wilmington, top.PartitionResolution)
	cell, _ := part.Parent(3)
	regions, err := dispatch.ParseRegionMap(fmt.Appendf(nil, `{"primary":"eu-west","regions":[
		{"name":"eu-west","fallback":"us-east"},
		{"name":"us-east","fallback":"eu-west","cells":[%q]}]}`, cell), top.PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	var members []ring.Member
	for i, region := range []string{"us-east", "us-east", "eu-west", "eu-west"} {
		members = append(members, ring.Member{ID: fmt.Sprintf("m%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 9000+i), Region: region})
	}
	membership := ring.NewPlacedStatic(matchingclient.Placement(regions), members...)
	var engines []*Engine
	for _, self := range members {
		e, err := NewEngine(DefaultConfig(self, top), Deps{Membership: membership, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	client := matchingclient.New(membership, nil, top.PartitionResolution)

	// Points around Wilmington (in and beyond the us-east cell) and far away.
	points := make([]geo.LatLng, 2000)
	for i := range points {
		if i%4 == 0 {
			points[i] = geo.LatLng{Lat: -60 + rng.Float64()*120, Lng: -180 + rng.Float64()*360}
		} else {
			points[i] = geo.LatLng{Lat: wilmington.Lat - 3 + rng.Float64()*6, Lng: wilmington.Lng - 3 + rng.Float64()*6}
		}
	}
	check := func(phase string, wantRegion func(home string) string) {
		t.Helper()
		homes := map[string]int{}
		for _, p := range points {
			partition, err := matchingapi.PartitionOf(p, top.PartitionResolution)
			if err != nil {
				t.Fatal(err)
			}
			home, err := regions.RegionOf(p)
			if err != nil {
				t.Fatal(err)
			}
			homes[home]++
			owner, err := client.Owner(partition)
			if err != nil {
				t.Fatalf("seed %d: %s: %v has no owner: %v", seed, phase, p, err)
			}
			if owner.Region != wantRegion(home) {
				t.Fatalf("seed %d: %s: %v (home %s) owned by %s in %s, want %s", seed, phase, p, home, owner.ID, owner.Region, wantRegion(home))
			}
			owners := 0
			for _, e := range engines {
				m, ok, mine := e.owner(partition)
				if !ok || m != owner {
					t.Fatalf("seed %d: %s: worker %s says %v is owned by %+v, the client says %+v", seed, phase, e.cfg.Self.ID, p, m, owner)
				}
				if mine {
					owners++
				}
			}
			if owners != 1 {
				t.Fatalf("seed %d: %s: %v claimed by %d workers", seed, phase, p, owners)
			}
		}
		if homes["us-east"] == 0 || homes["eu-west"] == 0 {
			t.Fatalf("seed %d: points homed %v: want both regions", seed, homes)
		}
	}
	check("both regions up", func(home string) string { return home })
	membership.Set(members[2:]...) // us-east's workers gone
	check("us-east down", func(string) string { return "eu-west" })
	membership.Set(append(members[2:], members[1])...)
	check("one us-east worker back", func(home string) string { return home })
}

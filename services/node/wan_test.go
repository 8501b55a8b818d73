package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// wanRegions: hxwan-b homes San Francisco's partition and falls back to
// hxwan-a, the primary.
func wanRegions(t *testing.T) (*dispatch.RegionMap, geo.Cell) {
	t.Helper()
	part, err := geo.CellAt(geo.LatLng{Lat: sfPickup.GetLat(), Lng: sfPickup.GetLng()}, dispatch.DefaultTopology().PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	cell, err := part.Parent(3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dispatch.ParseRegionMap(fmt.Appendf(nil, `{"primary":"hxwan-a","regions":[
		{"name":"hxwan-a","fallback":"hxwan-b"},
		{"name":"hxwan-b","fallback":"hxwan-a","cells":[%q]}]}`, cell.String()), dispatch.DefaultTopology().PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	return m, part
}

func TestRemoteDatacenters(t *testing.T) {
	m, _ := wanRegions(t)
	for _, tc := range []struct {
		regions  *dispatch.RegionMap
		dc       string
		remote   []string
		federate bool
	}{
		{m, "hxwan-a", []string{"hxwan-b"}, true},
		{m, "hxwan-b", []string{"hxwan-a"}, true},
		{m, "dc1", nil, false}, // one datacenter for every region
		{nil, "hxwan-a", nil, false},
	} {
		remote, federate := remoteDatacenters(tc.regions, tc.dc)
		if !slices.Equal(remote, tc.remote) || federate != tc.federate {
			t.Errorf("remoteDatacenters(%s) = %v %v, want %v %v", tc.dc, remote, federate, tc.remote, tc.federate)
		}
	}
}

// A process in hxwan-a watches hxwan-b's matching workers over the WAN:
// hxwan-b's partition is owned by hxwan-b's worker while its datacenter
// answers, by hxwan-a's (the fallback) once it is gone, and by hxwan-b's
// again when it is back.
func TestMatchingMembershipAcrossDatacenters(t *testing.T) {
	regions, part := wanRegions(t)
	a := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-a"})
	b := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-b"})
	if err := a.JoinWAN(b); err != nil {
		t.Fatal(err)
	}
	register := func(agent *consultest.Agent, id, region string, port int) {
		t.Helper()
		c, err := api.NewClient(&api.Config{Address: agent.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		// No check: passing while the agent lives.
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
			ID: id, Name: ConsulName(Matching), Address: "127.0.0.1", Port: port, Meta: map[string]string{"region": region},
		}); err != nil {
			t.Fatal(err)
		}
	}
	register(a, "worker-a", "hxwan-a", 1001)
	register(b, "worker-b", "hxwan-b", 1002)

	c, err := newConsulClient(a.Addr(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	static := ring.NewPlacedStatic(matchingclient.Placement(regions))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		followMembers(ctx, c.matchingMembership(ctx, regions, "hxwan-a", time.Second), static)
	}()
	t.Cleanup(func() { cancel(); <-done })

	ownerIs := func(what, want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var got string
		for time.Now().Before(deadline) {
			r, changed := static.Ring()
			if m, ok := r.Owner(uint64(part)); ok {
				got = m.ID
			} else {
				got = "none"
			}
			if got == want {
				return
			}
			select {
			case <-changed:
			case <-time.After(time.Second):
			}
		}
		t.Fatalf("%s: partition owner %s, want %s", what, got, want)
	}
	ownerIs("both datacenters up", "worker-b")
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	ownerIs("hxwan-b gone", "worker-a")
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := b.JoinWAN(a); err != nil {
		t.Fatal(err)
	}
	register(b, "worker-b", "hxwan-b", 1002)
	ownerIs("hxwan-b back", "worker-b")
}

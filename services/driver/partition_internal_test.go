package driver

import (
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/dial"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// TestSessionPartitionOracle: the partition the gateway keeps for a moving
// driver (skipping H3 while the driver is near its partition's centre)
// always equals a fresh H3 lookup, across many partition borders.
func TestSessionPartitionOracle(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	pool := dial.NewPool()
	defer pool.Close()
	res := dispatch.DefaultTopology().PartitionResolution
	mc := matchingclient.New(ring.NewStatic(), pool, res)
	g, err := NewGateway(DefaultConfig("127.0.0.1:1"), mc, nil, slog.New(slog.DiscardHandler), Telemetry{})
	if err != nil {
		t.Fatal(err)
	}
	s := &session{driverID: "d"}
	pos := geo.LatLng{Lat: 37.77, Lng: -122.42}
	crossings := 0
	for i := range 20000 {
		// A random walk with long strides, so it crosses many borders.
		pos = geo.Destination(pos, rng.Float64()*360, rng.Float64()*800)
		got, err := g.partitionOf(s, pos)
		if err != nil {
			t.Fatal(err)
		}
		want, err := mc.PartitionOf(pos)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("step %d at %v: partition %v, H3 says %v (seed %d)", i, pos, got, want, seed)
		}
		if s.last != nil && got != s.partition {
			crossings++
		}
		s.last, s.partition = &driverv1.LocationSample{}, got
	}
	if crossings < 20 {
		t.Fatalf("only %d border crossings: the walk does not test the cache", crossings)
	}
}

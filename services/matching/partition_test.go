package matching

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cluster is n matching workers on real sockets sharing one membership.
type cluster struct {
	engines []*Engine
	client  *matchingclient.Client
	pool    *dial.Pool
	members *ring.Static
}

func startCluster(t *testing.T, n, partitionRes int) *cluster {
	t.Helper()
	return startClusterWith(t, n, partitionRes, nil, nil)
}

// startClusterWith is startCluster with the engines' clock (nil: the wall
// clock) and a change to their config (nil: none).
func startClusterWith(t *testing.T, n, partitionRes int, clk dispatch.TimerClock, tune func(*Config)) *cluster {
	t.Helper()
	pool := dial.NewPool(
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.HeaderCredentials{Principal: auth.Principal{Role: auth.RoleService, Subject: "test"}}),
	)
	t.Cleanup(func() { pool.Close() })
	c := &cluster{members: ring.NewStatic(), pool: pool}
	var members []ring.Member
	authn := auth.HeaderAuthenticator{}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		self := ring.Member{ID: fmt.Sprintf("m%d", i), Address: lis.Addr().String()}
		members = append(members, self)
		top := dispatch.DefaultTopology()
		top.PartitionResolution = partitionRes
		cfg := DefaultConfig(self, top)
		if tune != nil {
			tune(&cfg)
		}
		e, err := NewEngine(cfg, Deps{Membership: c.members, Peers: pool, Drivers: driverclient.New(pool), Logger: slog.New(slog.DiscardHandler), Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(authn)), grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(authn)))
		never := make(chan struct{})
		NewHandler(e, never).Register(srv)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		c.engines = append(c.engines, e)
	}
	c.members.Set(members...)
	c.client = matchingclient.New(c.members, pool, partitionRes)
	return c
}

type placed struct {
	id  string
	pos geo.LatLng
}

// TestNearbyAcrossPartitions: with drivers spread over partitions owned by
// three workers, the nearest-driver answer from the centre's owner equals a
// brute-force scan over every driver, whatever borders the circle crosses.
func TestNearbyAcrossPartitions(t *testing.T) {
	for _, seed := range []uint64{1, 2, 1795753382056258422, uint64(time.Now().UnixNano())} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 99))
			// Resolution 7 partitions (~5 km²) make most 2–4 km circles cross borders.
			c := startCluster(t, 3, 7)
			const drivers = 3000
			var all []placed
			now := time.Now()
			for i := range drivers {
				// The index keeps positions at 1e-7° (E7); so does the oracle,
				// or near-ties could order differently by rounding alone.
				p := geo.LatLng{Lat: 37.70 + rng.Float64()*0.12, Lng: -122.52 + rng.Float64()*0.16}.ToE7().LatLng()
				all = append(all, placed{id: fmt.Sprintf("d%05d", i), pos: p})
			}
			// Ingest each location through whichever worker; not-owned entries
			// come back with their owner and go there, as the gateway does.
			for _, d := range all {
				loc := &matchingv1.DriverLocation{
					DriverId: d.id, Position: &commonv1.LatLng{Lat: d.pos.Lat, Lng: d.pos.Lng},
					Product: commonv1.Product_PRODUCT_STANDARD, Status: matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE,
					GatewayAddress: "127.0.0.1:1", RecordedAt: timestamppb.New(now),
				}
				resp := c.engines[rng.IntN(3)].Ingest(&matchingv1.IngestLocationsRequest{Locations: []*matchingv1.DriverLocation{loc}})
				for _, no := range resp.GetNotOwned() {
					owner := slices.IndexFunc(c.engines, func(e *Engine) bool { return e.cfg.Self.ID == no.GetOwner().GetOwnerId() })
					if r := c.engines[owner].Ingest(&matchingv1.IngestLocationsRequest{Locations: no.GetLocations()}); r.GetAccepted() != 1 {
						t.Fatalf("owner refused %s", d.id)
					}
				}
			}
			total := 0
			for _, e := range c.engines {
				if e.supply.index.Len() == 0 {
					t.Fatalf("worker %s owns no drivers", e.cfg.Self.ID)
				}
				total += e.supply.index.Len()
			}
			if total != drivers {
				t.Fatalf("indexed %d drivers, want %d (each in exactly one worker)", total, drivers)
			}
			ctx := context.Background() // the pool's connections carry the service principal
			crossed := 0
			for q := range 60 {
				centre := geo.LatLng{Lat: 37.71 + rng.Float64()*0.10, Lng: -122.51 + rng.Float64()*0.14}
				radius := 1000 + rng.Float64()*3000
				k := 1 + rng.IntN(15)
				resp, err := c.client.NearbyDrivers(ctx, &matchingv1.NearbyDriversRequest{
					Center: &commonv1.LatLng{Lat: centre.Lat, Lng: centre.Lng}, RadiusMeters: radius, Limit: int32(k),
				})
				if err != nil {
					t.Fatalf("seed %d query %d: %v", seed, q, err)
				}
				want := bruteForce(all, centre, radius, k)
				got := make([]string, len(resp.GetDrivers()))
				for i, d := range resp.GetDrivers() {
					got[i] = d.GetPosition().GetDriverId()
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d query %d at %v r=%.0f k=%d:\n got %v\nwant %v", seed, q, centre, radius, k, got, want)
				}
				if partitionsHit(t, c.engines[0], centre, radius) > 1 {
					crossed++
				}
			}
			if crossed == 0 {
				t.Fatal("no query crossed a partition border")
			}
			t.Logf("%d of 60 queries crossed partition borders", crossed)
		})
	}
}

func bruteForce(all []placed, centre geo.LatLng, radius float64, k int) []string {
	type hit struct {
		id string
		d  float64
	}
	var hits []hit
	for _, p := range all {
		if d := geo.Distance(centre, p.pos); d <= radius {
			hits = append(hits, hit{p.id, d})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		switch {
		case a.d < b.d:
			return -1
		case a.d > b.d:
			return 1
		}
		return compareStrings(a.id, b.id)
	})
	out := []string{}
	for i := 0; i < len(hits) && i < k; i++ {
		out = append(out, hits[i].id)
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func partitionsHit(t *testing.T, e *Engine, centre geo.LatLng, radius float64) int {
	start, err := e.partitionOf(centre)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := e.nearby.partitionsWithin(centre, start, radius)
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]bool{}
	for _, p := range ps {
		m, _, _ := e.owner(p)
		owners[m.ID] = true
	}
	return len(owners)
}

// TestNotOwnerRedirect: a worker asked about a partition it does not own
// answers ABORTED with the owner in a NotOwner detail, and a client whose
// membership view is stale follows it and succeeds with one retry.
func TestNotOwnerRedirect(t *testing.T) {
	c := startCluster(t, 3, 7)
	ctx := context.Background()
	// Find a point owned by a worker other than m0.
	var centre geo.LatLng
	var owner ring.Member
	r, _ := c.members.Ring()
	for i := 0; ; i++ {
		centre = geo.LatLng{Lat: 37.70 + float64(i%50)*0.002, Lng: -122.50 + float64(i/50)*0.002}
		p, err := geo.CellAt(centre, 7)
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := r.Owner(uint64(p)); m.ID != "m0" {
			owner = m
			break
		}
	}
	req := &matchingv1.NearbyDriversRequest{Center: &commonv1.LatLng{Lat: centre.Lat, Lng: centre.Lng}, RadiusMeters: 1000, Limit: 5}
	m0, err := c.client.At(r.Members()[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m0.NearbyDrivers(ctx, req)
	no, ok := matchingclient.NotOwnerOf(err)
	if !ok || no.Owner != owner {
		t.Fatalf("m0 answered %v, want ABORTED naming %v", err, owner)
	}
	// A client that believes m0 owns everything still gets its answer.
	stale := matchingclient.New(ring.NewStatic(r.Members()[0]), c.pool, 7)
	if _, err := stale.NearbyDrivers(ctx, req); err != nil {
		t.Fatalf("stale client: %v", err)
	}
}

package matching

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/telemetry"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/ring"
)

// lockedClock is a clock the test moves by hand while servers read it.
type lockedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *lockedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *lockedClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// AfterFunc never runs f: these tests run neither the loops nor dispatches.
func (c *lockedClock) AfterFunc(time.Duration, func()) dispatch.Timer { return idleTimer{} }

// noHysteresis makes the published multiplier follow its target at once,
// so a test can read the same cells again after their inputs changed.
func noHysteresis(c *Config) { c.Surge.Hysteresis, c.Surge.MinHold = 0, 0 }

// ownerEngine returns the engine of c owning the partition of cell.
func ownerEngine(t *testing.T, c *cluster, cell geo.Cell) *Engine {
	t.Helper()
	p, err := c.engines[0].partitionOfCell(cell)
	if err != nil {
		t.Fatal(err)
	}
	m, found, _ := c.engines[0].owner(p)
	i := slices.IndexFunc(c.engines, func(e *Engine) bool { return e.cfg.Self.ID == m.ID })
	if !found || i < 0 {
		t.Fatalf("no owner for %v", cell)
	}
	return c.engines[i]
}

// ingestVia ingests loc through c's first worker and resends what it does
// not own to the owner it names, as a gateway does.
func ingestVia(t *testing.T, c *cluster, loc *matchingv1.DriverLocation) {
	t.Helper()
	resp := c.engines[0].Ingest(&matchingv1.IngestLocationsRequest{Locations: []*matchingv1.DriverLocation{loc}})
	accepted := resp.GetAccepted()
	for _, no := range resp.GetNotOwned() {
		i := slices.IndexFunc(c.engines, func(e *Engine) bool { return e.cfg.Self.ID == no.GetOwner().GetOwnerId() })
		accepted += c.engines[i].Ingest(&matchingv1.IngestLocationsRequest{Locations: no.GetLocations()}).GetAccepted()
	}
	if accepted != 1 {
		t.Fatalf("driver %s not indexed", loc.GetDriverId())
	}
}

// surgeInput is the demand and available drivers of one surge cell.
type surgeInput struct {
	cell            geo.Cell
	demand, drivers int
}

// feedSurge records every input on the owner of its cell: demand in the
// surge tracker (as Dispatch does), drivers through Ingest at the cell's
// centre.
func feedSurge(t *testing.T, c *cluster, inputs []surgeInput, now time.Time) {
	t.Helper()
	for _, in := range inputs {
		e := ownerEngine(t, c, in.cell)
		for range in.demand {
			if err := e.surge.RecordDemand(in.cell, now); err != nil {
				t.Fatal(err)
			}
		}
		centre, err := in.cell.Center()
		if err != nil {
			t.Fatal(err)
		}
		for i := range in.drivers {
			ingestVia(t, c, &matchingv1.DriverLocation{
				DriverId: fmt.Sprintf("d-%s-%d", in.cell, i), Position: &commonv1.LatLng{Lat: centre.Lat, Lng: centre.Lng},
				Product: commonv1.Product_PRODUCT_STANDARD, Status: matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE,
				GatewayAddress: "127.0.0.1:1", RecordedAt: timestamppb.New(now),
			})
		}
	}
}

// quotedSurge is each cell's surge as the rider quote path reads it: the
// matching client's CellStats, routed to the cell's owner over its socket.
func quotedSurge(t *testing.T, c *cluster, cells []geo.Cell) map[geo.Cell]float64 {
	t.Helper()
	out := map[geo.Cell]float64{}
	for _, cell := range cells {
		st, err := c.client.CellStats(context.Background(), cell)
		if err != nil {
			t.Fatalf("CellStats %v: %v", cell, err)
		}
		out[cell] = st.GetSurgeMultiplier()
	}
	return out
}

// borderZone finds a border between partitions (res) owned by different
// members of c and returns the surge cells within 3 rings of it, with
// whether each touches a partition owned by another worker than its own.
func borderZone(t *testing.T, c *cluster, res int) ([]geo.Cell, map[geo.Cell]bool) {
	t.Helper()
	r, _ := c.members.Ring()
	centre, err := geo.CellAt(borderPoint(t, r, res), c.engines[0].cfg.Surge.Resolution)
	if err != nil {
		t.Fatal(err)
	}
	zone, err := geo.GridDisk(centre, 3)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(zone)
	e := c.engines[0]
	ownerID := func(cell geo.Cell) string {
		p, err := e.partitionOfCell(cell)
		if err != nil {
			t.Fatal(err)
		}
		m, _, _ := e.owner(p)
		return m.ID
	}
	border := map[geo.Cell]bool{}
	for _, cell := range zone {
		// The drivers of a cell stand at its centre: that point must route
		// to the partition holding the cell.
		centre, _ := cell.Center()
		p, _ := e.partitionOf(centre)
		if q, _ := e.partitionOfCell(cell); p != q {
			t.Fatalf("centre of %v lies in partition %v, cell in %v", cell, p, q)
		}
		nbrs, err := geo.Neighbors(cell)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nbrs {
			if ownerID(n) != ownerID(cell) {
				border[cell] = true
			}
		}
	}
	return zone, border
}

// TestSurgeAcrossPartitionBorder: two matching workers on real sockets own
// the partitions either side of a border; demand and drivers crowd the
// cells on both sides. After a sampling tick, in which each sends its
// border readings to the other, the surge every cell quotes (CellStats
// through the matching client) equals what one worker owning both sides
// computes from the same inputs. Before the exchange (the old behaviour)
// border cells quote less — the test catches it; interior cells agree
// either way. Once the readings expire unrenewed (two ticks), the border
// falls back to the old values.
func TestSurgeAcrossPartitionBorder(t *testing.T) {
	for _, seed := range []uint64{1, 2, uint64(time.Now().UnixNano())} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			const res = 7
			clk := &lockedClock{now: tickEpoch}
			now := clk.Now()
			two := startClusterWith(t, 2, res, clk, noHysteresis)
			one := startClusterWith(t, 1, res, clk, noHysteresis)
			zone, border := borderZone(t, two, res)

			rng := rand.New(rand.NewPCG(seed, 5))
			var inputs []surgeInput
			for _, cell := range zone {
				inputs = append(inputs, surgeInput{cell: cell, demand: 5 + rng.IntN(40), drivers: rng.IntN(12)})
			}
			feedSurge(t, one, inputs, now)
			feedSurge(t, two, inputs, now)
			one.engines[0].tick(now)
			want := quotedSurge(t, one, zone)

			// The old behaviour: supply sampled, nothing exchanged.
			for _, e := range two.engines {
				e.recordSupply(now)
			}
			before := quotedSurge(t, two, zone)
			differed := 0
			for _, cell := range zone {
				switch {
				case !border[cell] && before[cell] != want[cell]:
					t.Fatalf("interior cell %v: %v, one worker %v", cell, before[cell], want[cell])
				case border[cell] && before[cell] != want[cell]:
					differed++
				}
			}
			if differed == 0 {
				t.Fatal("without the exchange no border cell differs: the test would not catch the old behaviour")
			}

			// A sampling tick on each worker sends its border readings.
			for _, e := range two.engines {
				e.tick(now)
			}
			for _, e := range two.engines {
				e.wg.Wait()
			}
			after := quotedSurge(t, two, zone)
			for _, cell := range zone {
				if after[cell] != want[cell] {
					t.Errorf("cell %v (border %v): two workers quote %v, one worker %v (%v without the exchange)",
						cell, border[cell], after[cell], want[cell], before[cell])
				}
			}
			t.Logf("%d cells, %d at the border, %d of them diluted without the exchange", len(zone), len(border), differed)

			// Two sampling intervals later, unrenewed, the readings expire.
			clk.set(now.Add(two.engines[0].surgeReadingTTL()))
			expired := quotedSurge(t, two, zone)
			for _, cell := range zone {
				if expired[cell] != before[cell] {
					t.Errorf("cell %v after expiry: %v, want the unexchanged %v", cell, expired[cell], before[cell])
				}
			}
		})
	}
}

// TestSurgeShareToDeadPeer: a neighbouring owner that cannot be reached
// fails only the exchange: the tick completes, and quotes on the live
// worker's border cells are served with the unexchanged values.
func TestSurgeShareToDeadPeer(t *testing.T) {
	const res = 7
	clk := &lockedClock{now: tickEpoch}
	now := clk.Now()
	c := startClusterWith(t, 1, res, clk, noHysteresis)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ring.Member{ID: "dead", Address: lis.Addr().String()}
	lis.Close()
	live := c.engines[0]
	c.members.Set(live.cfg.Self, dead)
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	if live.metrics.surgeShares, err = provider.Meter("test").Int64Counter(telemetry.MetricSurgeShares); err != nil {
		t.Fatal(err)
	}
	zone, border := borderZone(t, c, res)
	var inputs []surgeInput
	var mine []geo.Cell
	for _, cell := range zone {
		p, _ := live.partitionOfCell(cell)
		if _, _, own := live.owner(p); own {
			inputs = append(inputs, surgeInput{cell: cell, demand: 30, drivers: 2})
			mine = append(mine, cell)
		}
	}
	feedSurge(t, c, inputs, now)
	live.recordSupply(now)
	before := quotedSurge(t, c, mine)
	live.tick(now)
	live.wg.Wait()
	if live.sharing.Load() {
		t.Fatal("the failed exchange is still marked in flight")
	}
	after := quotedSurge(t, c, mine)
	sent := 0
	for _, cell := range mine {
		if after[cell] != before[cell] {
			t.Errorf("cell %v: %v after a failed exchange, %v before", cell, after[cell], before[cell])
		}
		if border[cell] {
			sent++
		}
	}
	if sent == 0 {
		t.Fatal("no border cell of the live worker: nothing was sent to the dead peer")
	}
	// The tick sent one message, to the dead peer, and counted it failed.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == telemetry.MetricSurgeShares {
				for _, dp := range sum.DataPoints {
					outcome, _ := dp.Attributes.Value("outcome")
					counts[outcome.AsString()] += dp.Value
				}
			}
		}
	}
	if counts["failed"] != 1 || counts["ok"] != 0 {
		t.Fatalf("surge shares counted %v, want one failed", counts)
	}
}

// TestShareSurgeRefusesAndIgnores: the RPC refuses malformed readings as
// InvalidArgument and keeps none for cells the receiver owns.
func TestShareSurgeRefusesAndIgnores(t *testing.T) {
	c := startClusterWith(t, 2, 7, &lockedClock{now: tickEpoch}, noHysteresis)
	zone, _ := borderZone(t, c, 7)
	e := c.engines[0]
	var own, foreign geo.Cell
	for _, cell := range zone {
		p, _ := e.partitionOfCell(cell)
		if _, _, mine := e.owner(p); mine {
			own = cell
		} else {
			foreign = cell
		}
	}
	mc, err := c.client.At(e.cfg.Self.Address)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reading := func(cell string, raw float64) *matchingv1.SurgeReading {
		return &matchingv1.SurgeReading{Cell: cell, RawMultiplier: raw, AsOf: timestamppb.New(tickEpoch)}
	}
	resp, err := mc.ShareSurge(ctx, &matchingv1.ShareSurgeRequest{FromId: "m1", Readings: []*matchingv1.SurgeReading{
		reading(own.String(), 3), reading(foreign.String(), 3),
	}})
	if err != nil || resp.GetAccepted() != 1 {
		t.Fatalf("own + foreign: %v %v, want 1 kept", resp, err)
	}
	coarse, _ := foreign.Parent(7)
	for _, bad := range []*matchingv1.SurgeReading{reading("zz", 2), reading(coarse.String(), 2)} {
		_, err := mc.ShareSurge(ctx, &matchingv1.ShareSurgeRequest{Readings: []*matchingv1.SurgeReading{bad}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("reading %v: %v, want InvalidArgument", bad, err)
		}
	}
}

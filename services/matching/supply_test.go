package matching

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
	"github.com/hexride/hexride/services/matching/ring"
)

// testClock is a clock the test sets by hand (the engine's loops are not
// running in these tests).
type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

// AfterFunc never runs f: these tests run neither the loops nor dispatches.
func (c *testClock) AfterFunc(time.Duration, func()) dispatch.Timer { return idleTimer{} }

type idleTimer struct{}

func (idleTimer) Stop() bool { return true }

var tickEpoch = time.Unix(1_800_000_000, 0)

// supplyEngine builds an engine (loops not running) whose membership is
// members (self is members[0]), with res partitionRes partitions.
func supplyEngine(t testing.TB, partitionRes int, members ...ring.Member) (*Engine, *testClock) {
	t.Helper()
	clk := &testClock{now: tickEpoch}
	top := dispatch.DefaultTopology()
	top.PartitionResolution = partitionRes
	e, err := NewEngine(DefaultConfig(members[0], top), Deps{Membership: ring.NewStatic(members...), Logger: slog.New(slog.DiscardHandler), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return e, clk
}

var m0 = ring.Member{ID: "m0", Address: "127.0.0.1:1"}

// fillDrivers upserts n drivers uniform in the SF box straight into the
// index (whoever owns their partition, as right after a membership
// change): a quarter busy, a few offline, two products; stale of them were
// last seen 25 s before the clock.
func fillDrivers(t testing.TB, e *Engine, n, stale int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	products := []string{"standard", "xl"}
	for i := range n {
		st := dispatch.StatusAvailable
		switch rng.IntN(40) {
		case 0:
			st = dispatch.StatusOffline
		case 1, 2, 3, 4, 5, 6, 7, 8, 9:
			st = dispatch.StatusBusy
		}
		at := e.clock.Now()
		if i < stale {
			at = at.Add(-25 * time.Second)
		}
		err := e.supply.index.Upsert(dispatch.Location{
			DriverID: fmt.Sprintf("driver-%07d", i),
			Pos:      geo.LatLng{Lat: 37.70 + rng.Float64()*0.12, Lng: -122.52 + rng.Float64()*0.16},
			Product:  products[i%2], Status: st, Gateway: fmt.Sprintf("10.0.%d.1:7000", i%8), At: at,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// snapshotTick is the tick as it was before the index kept per-cell
// counts: it copied every driver to count available supply per surge
// cell. Kept as the reference the allocation bound is checked against and
// as the alternative in BenchmarkSupplyTick.
func snapshotTick(e *Engine, now time.Time) {
	e.supply.index.Expire(now)
	counts := map[geo.Cell]int{}
	for _, d := range e.supply.index.Snapshot() {
		if d.Status != dispatch.StatusAvailable {
			continue
		}
		if sc, ok := e.surgeCell(d.Cell); ok {
			counts[sc]++
		}
	}
	for c, n := range counts {
		_ = e.surge.RecordSupply(c, n, now)
	}
	e.surge.Prune(now)
}

// allocatedPerTick is the heap allocated by one call of tick, averaged
// over runs (runtime.MemStats.TotalAlloc: every allocation, whether freed
// or not).
func allocatedPerTick(runs int, tick func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		tick()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// tickBytesPerDriver bounds what one expiry-and-supply tick may allocate
// per indexed driver. Measured at 200k drivers: the tick over per-cell
// counters allocates ≈0.1 B/driver (≈19 KB: the surge-cell map, a few
// expired slots), the Snapshot-based tick ≈711 B/driver (≈142 MB): the
// bound is ~80× above the one and ~90× below the other.
const tickBytesPerDriver = 8

// TestTickAllocatesPerCellNotPerDriver drives the expiry loop's work
// (Expire + sampleSupply, one e.tick) over 200k drivers and checks by
// allocation accounting, not timing, that a tick allocates O(cells), not
// O(drivers): under tickBytesPerDriver bytes per driver, a bound the old
// Snapshot-based tick (run here as the reference) exceeds many times over.
func TestTickAllocatesPerCellNotPerDriver(t *testing.T) {
	const n, stale = 200_000, 2_000
	e, clk := supplyEngine(t, 6, m0)
	fillDrivers(t, e, n, stale, 1)
	cells := 0
	e.supply.index.EachCellSupply(func(geo.Cell, dispatch.SupplyCount) { cells++ })
	e.tick(clk.now) // steady state: the surge tracker knows its cells
	if got := e.supply.index.Len(); got != n {
		t.Fatalf("first tick expired %d drivers, none were silent for the TTL", n-got)
	}
	clk.now = clk.now.Add(10 * time.Second) // the stale ones are now 35 s silent

	perTick := allocatedPerTick(3, func() { e.tick(clk.now) })
	if got := e.supply.index.Len(); got != n-stale {
		t.Fatalf("ticks left %d drivers, want %d", got, n-stale)
	}
	perDriver := float64(perTick) / n
	t.Logf("tick over per-cell counters: %d bytes/tick = %.3f bytes/driver (%d drivers, %d index cells)", perTick, perDriver, n, cells)
	if perDriver >= tickBytesPerDriver {
		t.Fatalf("a tick allocated %.3f bytes per driver (%d bytes), want < %d: it is copying drivers", perDriver, perTick, tickBytesPerDriver)
	}

	ref := allocatedPerTick(1, func() { snapshotTick(e, clk.now) })
	refPerDriver := float64(ref) / float64(n-stale)
	t.Logf("reference Snapshot-based tick: %d bytes/tick = %.1f bytes/driver", ref, refPerDriver)
	if refPerDriver < 4*tickBytesPerDriver {
		t.Fatalf("the Snapshot-based reference allocated only %.1f bytes/driver: the bound %d no longer tells the two apart", refPerDriver, tickBytesPerDriver)
	}
}

// availablePerSurgeCell is the oracle: available drivers per surge cell,
// recounted from a Snapshot.
func availablePerSurgeCell(e *Engine) map[geo.Cell]int {
	want := map[geo.Cell]int{}
	for _, d := range e.supply.index.Snapshot() {
		if d.Status == dispatch.StatusAvailable {
			sc, _ := d.Cell.Parent(e.cfg.Surge.Resolution)
			want[sc]++
		}
	}
	return want
}

// TestTickSamplesSupply: after a tick, every surge cell's supply sample is
// the brute-force count of its available drivers, silent drivers are
// gone, and cells without available drivers get no sample (as before).
func TestTickSamplesSupply(t *testing.T) {
	for _, seed := range []uint64{1, 2, uint64(time.Now().UnixNano())} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			e, clk := supplyEngine(t, 6, m0)
			fillDrivers(t, e, 6000, 500, seed)
			// Busy-only drivers in a surge cell of their own.
			far := geo.LatLng{Lat: 37.60, Lng: -122.30}
			for i := range 3 {
				if err := e.supply.index.Upsert(dispatch.Location{DriverID: fmt.Sprint("busy-", i), Pos: far, Status: dispatch.StatusBusy}); err != nil {
					t.Fatal(err)
				}
			}
			clk.now = clk.now.Add(10 * time.Second)
			e.tick(clk.now)
			if got := e.supply.index.Len(); got != 6000-500+3 {
				t.Fatalf("seed %d: %d drivers after the tick, want %d", seed, got, 6000-500+3)
			}
			want := availablePerSurgeCell(e)
			for c, n := range want {
				r, err := e.surge.At(c, clk.now)
				if err != nil || r.Supply != float64(n) {
					t.Fatalf("seed %d: surge cell %v sampled %v (%v), recount %d", seed, c, r.Supply, err, n)
				}
			}
			farCell, _ := geo.CellAt(far, e.cfg.Surge.Resolution)
			if r, err := e.surge.At(farCell, clk.now); err != nil || r.Supply != 0 {
				t.Fatalf("seed %d: busy-only cell sampled %v (%v)", seed, r.Supply, err)
			}
		})
	}
}

// TestPartitionViewsFromCounts: with drivers in partitions of three
// owners (as right after a membership change), Partitions, the gauge's
// per-partition counts, worker stats, the owned-cells list, CellStats and
// dropForeign all agree with a brute-force recount from Snapshot.
func TestPartitionViewsFromCounts(t *testing.T) {
	seed := uint64(7)
	t.Logf("seed %d", seed)
	members := []ring.Member{m0, {ID: "m1", Address: "127.0.0.1:2"}, {ID: "m2", Address: "127.0.0.1:3"}}
	e, _ := supplyEngine(t, 7, members...)
	fillDrivers(t, e, 8000, 0, seed)
	r, _ := e.membership.Ring()

	perPartition := map[matchingapi.Partition]int{}
	available, busy := int32(0), int32(0)
	ownedCells := map[geo.Cell]dispatch.SupplyCount{}
	foreign := map[matchingapi.Partition]int{}
	var kept []string
	for _, d := range e.supply.index.Snapshot() {
		p, _ := e.partitionOfCell(d.Cell)
		perPartition[p]++
		switch d.Status {
		case dispatch.StatusAvailable:
			available++
		case dispatch.StatusBusy:
			busy++
		}
		if m, _ := r.Owner(p.RoutingKey()); m.ID == m0.ID {
			sc := ownedCells[d.Cell]
			switch d.Status {
			case dispatch.StatusAvailable:
				sc.Available++
			case dispatch.StatusBusy:
				sc.Busy++
			}
			ownedCells[d.Cell] = sc
			kept = append(kept, d.ID)
		} else {
			foreign[p]++
		}
	}
	if len(ownedCells) == 0 || len(foreign) == 0 {
		t.Fatalf("seed %d: want drivers in owned and foreign partitions, got %d owned cells, %d foreign partitions", seed, len(ownedCells), len(foreign))
	}

	if got := e.driversPerPartition(); !maps.Equal(got, perPartition) {
		t.Fatalf("seed %d: driversPerPartition %v, recount %v", seed, got, perPartition)
	}
	resp := e.Partitions()
	if st := resp.GetStats(); st.GetDriversAvailable() != available || st.GetDriversBusy() != busy {
		t.Fatalf("seed %d: stats %d available %d busy, recount %d %d", seed, st.GetDriversAvailable(), st.GetDriversBusy(), available, busy)
	}
	if len(resp.GetPartitions()) != len(perPartition) {
		t.Fatalf("seed %d: %d partitions listed, recount %d", seed, len(resp.GetPartitions()), len(perPartition))
	}
	for _, po := range resp.GetPartitions() {
		p, err := matchingapi.ParsePartition(po.GetPartition())
		if err != nil || int(po.GetIndexedDrivers()) != perPartition[p] {
			t.Fatalf("seed %d: partition %s lists %d drivers, recount %d", seed, po.GetPartition(), po.GetIndexedDrivers(), perPartition[p])
		}
		if m, _ := r.Owner(p.RoutingKey()); po.GetOwner().GetId() != m.ID {
			t.Fatalf("seed %d: partition %s owner %s, ring says %s", seed, po.GetPartition(), po.GetOwner().GetId(), m.ID)
		}
	}
	if !slices.IsSortedFunc(resp.GetPartitions(), func(a, b *matchingv1.PartitionOwner) int { return strings.Compare(a.GetPartition(), b.GetPartition()) }) {
		t.Fatalf("seed %d: partitions not sorted", seed)
	}

	cells := e.ownedCellsWithSupply()
	if want := slices.Sorted(maps.Keys(ownedCells)); !slices.Equal(cells, want) {
		t.Fatalf("seed %d: owned cells %v, recount %v", seed, cells, want)
	}
	stats, err := e.CellStats(nil)
	if err != nil || len(stats.GetCells()) != len(ownedCells) {
		t.Fatalf("seed %d: CellStats: %d cells, %v", seed, len(stats.GetCells()), err)
	}
	for _, cs := range stats.GetCells() {
		c, _ := geo.ParseCell(cs.GetCell())
		if w := ownedCells[c]; int(cs.GetSupplyAvailable()) != w.Available || int(cs.GetSupplyBusy()) != w.Busy {
			t.Fatalf("seed %d: CellStats %s = %d/%d, recount %+v", seed, cs.GetCell(), cs.GetSupplyAvailable(), cs.GetSupplyBusy(), w)
		}
	}

	wantDropped := 0
	for _, n := range foreign {
		wantDropped += n
	}
	dropped, moved := e.supply.dropForeign(e.ownedFunc())
	if dropped != wantDropped || moved != len(foreign) {
		t.Fatalf("seed %d: dropForeign = %d drivers, %d partitions; recount %d, %d", seed, dropped, moved, wantDropped, len(foreign))
	}
	var left []string
	for _, d := range e.supply.index.Snapshot() {
		left = append(left, d.ID)
	}
	slices.Sort(left)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Fatalf("seed %d: %d drivers left, want the %d of owned partitions", seed, len(left), len(kept))
	}
	if dropped, moved := e.supply.dropForeign(e.ownedFunc()); dropped != 0 || moved != 0 {
		t.Fatalf("seed %d: second dropForeign = %d, %d", seed, dropped, moved)
	}
}

// TestListDriversByID: the console's list is the first limit drivers by
// id, as a sorted Snapshot gives them, truncated exactly when more exist.
func TestListDriversByID(t *testing.T) {
	e, _ := supplyEngine(t, 6, m0)
	fillDrivers(t, e, 3000, 0, 3)
	all := e.supply.index.Snapshot()
	slices.SortFunc(all, func(a, b dispatch.Driver) int { return strings.Compare(a.ID, b.ID) })
	for _, limit := range []int{1, 10, 2999, 3000, 20000} {
		resp := e.ListDrivers(limit)
		want := all[:min(limit, len(all))]
		if resp.GetTruncated() != (limit < len(all)) || len(resp.GetDrivers()) != len(want) {
			t.Fatalf("limit %d: %d drivers truncated=%v", limit, len(resp.GetDrivers()), resp.GetTruncated())
		}
		for i, d := range resp.GetDrivers() {
			if w := driverToProto(want[i]); d.String() != w.String() {
				t.Fatalf("limit %d: [%d] = %v, want %v", limit, i, d, w)
			}
		}
	}
}

// TestIncludeBusySearch: the console's search (every status, no age
// limit) equals a brute-force scan of the Snapshot: nearest limit within
// the radius, product filter, ties by id.
func TestIncludeBusySearch(t *testing.T) {
	for _, seed := range []uint64{4, uint64(time.Now().UnixNano())} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			e, clk := supplyEngine(t, 6, m0)
			fillDrivers(t, e, 4000, 300, seed)
			clk.now = clk.now.Add(10 * time.Second) // 300 drivers silent > TTL, not yet expired: still shown
			all := e.supply.index.Snapshot()
			rng := rand.New(rand.NewPCG(seed, 5))
			for qi := range 30 {
				q := nearbyQuery{
					centre:      geo.LatLng{Lat: 37.71 + rng.Float64()*0.10, Lng: -122.51 + rng.Float64()*0.14},
					radius:      100 + rng.Float64()*3000,
					limit:       1 + rng.IntN(200),
					includeBusy: true,
					localOnly:   true,
				}
				if rng.IntN(2) == 0 {
					q.product = []string{"standard", "xl"}[rng.IntN(2)]
				}
				got, err := e.nearby.local(q)
				if err != nil {
					t.Fatal(err)
				}
				var want []dispatch.Candidate
				for _, d := range all {
					if q.product != "" && d.Product != q.product {
						continue
					}
					if dist := geo.Distance(q.centre, d.Pos); dist <= q.radius {
						want = append(want, dispatch.Candidate{Driver: d, Distance: dist})
					}
				}
				want = mergeCandidates(want, q.limit)
				if len(got) != len(want) {
					t.Fatalf("seed %d query %d: %d drivers, brute force %d", seed, qi, len(got), len(want))
				}
				for i := range got {
					if got[i].ID != want[i].ID || got[i].Distance != want[i].Distance || got[i].Status != want[i].Status {
						t.Fatalf("seed %d query %d: [%d] %s@%v (%v), want %s@%v (%v)", seed, qi, i, got[i].ID, got[i].Distance, got[i].Status, want[i].ID, want[i].Distance, want[i].Status)
					}
				}
			}
		})
	}
}

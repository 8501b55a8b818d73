package dispatch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

// recount is the oracle for the per-cell counters: drivers per status per
// index cell, recounted from a Snapshot.
func recount(ix *Index, product string) map[geo.Cell]SupplyCount {
	out := map[geo.Cell]SupplyCount{}
	for _, d := range ix.Snapshot() {
		if product != "" && d.Product != product {
			continue
		}
		sc := out[d.Cell]
		switch d.Status {
		case StatusAvailable:
			sc.Available++
		case StatusBusy:
			sc.Busy++
		default:
			sc.Offline++
		}
		out[d.Cell] = sc
	}
	return out
}

// cellCounts collects EachCellSupply, failing on a cell visited twice or
// visited with nothing in it.
func cellCounts(t testing.TB, ix *Index) map[geo.Cell]SupplyCount {
	t.Helper()
	out := map[geo.Cell]SupplyCount{}
	ix.EachCellSupply(func(c geo.Cell, sc SupplyCount) {
		if _, dup := out[c]; dup {
			t.Fatalf("cell %v visited twice", c)
		}
		if sc.Total() <= 0 || sc.Available < 0 || sc.Busy < 0 || sc.Offline < 0 {
			t.Fatalf("cell %v visited with counts %+v", c, sc)
		}
		out[c] = sc
	})
	return out
}

// checkCounts compares the counters with the recount: per cell, through
// CellSupply at the index resolution and coarser, for any product and per
// product.
func checkCounts(t testing.TB, ix *Index, seed uint64, step int, products []string) {
	t.Helper()
	want := recount(ix, "")
	got := cellCounts(t, ix)
	if len(got) != len(want) {
		t.Fatalf("seed %d step %d: %d cells with drivers, recount %d\n got %v\nwant %v", seed, step, len(got), len(want), got, want)
	}
	total := 0
	parents := map[geo.Cell]SupplyCount{}
	for c, w := range want {
		if got[c] != w {
			t.Fatalf("seed %d step %d: cell %v counts %+v, recount %+v", seed, step, c, got[c], w)
		}
		if sc, err := ix.CellSupply(c, ""); err != nil || sc != w {
			t.Fatalf("seed %d step %d: CellSupply(%v) = %+v, %v; recount %+v", seed, step, c, sc, err, w)
		}
		total += w.Total()
		p, _ := c.Parent(ix.Resolution() - 2)
		ps := parents[p]
		ps.add(w)
		parents[p] = ps
	}
	if total != ix.Len() {
		t.Fatalf("seed %d step %d: counters hold %d drivers, Len %d", seed, step, total, ix.Len())
	}
	for p, w := range parents {
		if sc, err := ix.CellSupply(p, ""); err != nil || sc != w {
			t.Fatalf("seed %d step %d: CellSupply(parent %v) = %+v, %v; recount %+v", seed, step, p, sc, err, w)
		}
	}
	for _, prod := range products {
		for c, w := range recount(ix, prod) {
			if sc, err := ix.CellSupply(c, prod); err != nil || sc != w {
				t.Fatalf("seed %d step %d: CellSupply(%v, %q) = %+v, %v; recount %+v", seed, step, c, prod, sc, err, w)
			}
		}
	}
}

// TestCellCountersProperty applies random Upsert/Remove/SetStatus/Expire
// sequences (fake clock) to drivers packed into a few cells, so updates
// move drivers across cells and change their status all the time, and
// checks after every operation that the per-cell counters equal a
// brute-force recount from Snapshot. Reproduce a failure with the printed
// seed.
func TestCellCountersProperty(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, uint64(time.Now().UnixNano())}
	spots := []struct {
		name string
		at   geo.LatLng
	}{
		{"sf", geo.LatLng{Lat: 37.7749, Lng: -122.4194}},
		{"antimeridian", geo.LatLng{Lat: -16.8, Lng: 179.9995}},
	}
	for _, spot := range spots {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%s/seed%d", spot.name, seed), func(t *testing.T) {
				t.Logf("seed %d", seed)
				rng := rand.New(rand.NewPCG(seed, 0xc0de))
				clk := newFakeClock()
				cfg := DefaultIndexConfig()
				cfg.Shards = 1 << rng.IntN(4)
				cfg.TTL = 20 * time.Second
				ix := mustIndex(t, cfg, clk)
				edge, _ := geo.EdgeLengthAvg(cfg.Resolution)
				products := []string{"x", "xl", "black"}
				const drivers, steps = 60, 1500
				moves, inPlace, expired := 0, 0, 0
				for step := range steps {
					id := fmt.Sprintf("d%02d", rng.IntN(drivers))
					switch op := rng.IntN(20); {
					case op < 11: // upsert: new, same cell, other cell, new status, sometimes stale
						at := clk.Now()
						if rng.IntN(10) == 0 {
							at = at.Add(-time.Duration(rng.IntN(30)) * time.Second)
						}
						old, had := ix.Get(id)
						err := ix.Upsert(Location{
							DriverID: id, Pos: geo.Destination(spot.at, rng.Float64()*360, edge*3*math.Sqrt(rng.Float64())),
							Product: products[rng.IntN(len(products))], Status: Status(rng.IntN(3)), At: at,
						})
						if err != nil && !errors.Is(err, ErrStaleLocation) {
							t.Fatalf("seed %d step %d: upsert: %v", seed, step, err)
						}
						if now, _ := ix.Get(id); err == nil && had {
							if now.Cell != old.Cell {
								moves++
							} else {
								inPlace++
							}
						}
					case op < 13:
						ix.Remove(id)
					case op < 17:
						if err := ix.SetStatus(id, Status(rng.IntN(3))); err != nil && !errors.Is(err, ErrUnknownDriver) {
							t.Fatalf("seed %d step %d: SetStatus: %v", seed, step, err)
						}
					case op < 19:
						clk.Advance(time.Duration(rng.IntN(6)) * time.Second)
					default:
						expired += ix.Expire(clk.Now())
					}
					checkCounts(t, ix, seed, step, products)
				}
				checkConsistent(t, ix)
				t.Logf("%d cell moves, %d updates in place, %d expired", moves, inPlace, expired)
				if moves < 100 || inPlace < 10 || expired == 0 {
					t.Fatalf("seed %d: the tape exercised too little: %d moves, %d in place, %d expired", seed, moves, inPlace, expired)
				}
			})
		}
	}
}

// TestEachCellSupply: the visited cells and counts, case by case.
func TestEachCellSupply(t *testing.T) {
	a := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	b := geo.LatLng{Lat: 37.80, Lng: -122.40}
	ca, _ := geo.CellAt(a, 9)
	cb, _ := geo.CellAt(b, 9)
	type step func(t *testing.T, ix *Index, clk *fakeClock)
	up := func(id string, p geo.LatLng, st Status) step {
		return func(t *testing.T, ix *Index, _ *fakeClock) {
			if err := ix.Upsert(Location{DriverID: id, Pos: p, Status: st, Product: "x"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  map[geo.Cell]SupplyCount
	}{
		{"empty", nil, map[geo.Cell]SupplyCount{}},
		{"one available", []step{up("d1", a, StatusAvailable)}, map[geo.Cell]SupplyCount{ca: {Available: 1}}},
		{"every status", []step{up("d1", a, StatusAvailable), up("d2", a, StatusBusy), up("d3", a, StatusOffline)},
			map[geo.Cell]SupplyCount{ca: {Available: 1, Busy: 1, Offline: 1}}},
		{"status by upsert in place", []step{up("d1", a, StatusAvailable), up("d1", a, StatusBusy)},
			map[geo.Cell]SupplyCount{ca: {Busy: 1}}},
		{"SetStatus", []step{up("d1", a, StatusAvailable), func(t *testing.T, ix *Index, _ *fakeClock) {
			if err := ix.SetStatus("d1", StatusBusy); err != nil {
				t.Fatal(err)
			}
		}}, map[geo.Cell]SupplyCount{ca: {Busy: 1}}},
		{"SetStatus unchanged", []step{up("d1", a, StatusBusy), func(t *testing.T, ix *Index, _ *fakeClock) {
			_ = ix.SetStatus("d1", StatusBusy)
			_ = ix.SetStatus("nobody", StatusAvailable)
		}}, map[geo.Cell]SupplyCount{ca: {Busy: 1}}},
		{"move leaves the old cell empty", []step{up("d1", a, StatusAvailable), up("d1", b, StatusAvailable)},
			map[geo.Cell]SupplyCount{cb: {Available: 1}}},
		{"move and status change at once", []step{up("d1", a, StatusAvailable), up("d2", a, StatusBusy), up("d1", b, StatusBusy)},
			map[geo.Cell]SupplyCount{ca: {Busy: 1}, cb: {Busy: 1}}},
		{"remove", []step{up("d1", a, StatusAvailable), up("d2", b, StatusBusy), func(_ *testing.T, ix *Index, _ *fakeClock) { ix.Remove("d1") }},
			map[geo.Cell]SupplyCount{cb: {Busy: 1}}},
		{"expire", []step{up("d1", a, StatusAvailable), func(_ *testing.T, _ *Index, clk *fakeClock) { clk.Advance(20 * time.Second) },
			up("d2", a, StatusBusy), func(_ *testing.T, ix *Index, clk *fakeClock) { ix.Expire(clk.Now().Add(15 * time.Second)) }},
			map[geo.Cell]SupplyCount{ca: {Busy: 1}}},
		{"stale update changes nothing", []step{up("d1", a, StatusAvailable), func(t *testing.T, ix *Index, clk *fakeClock) {
			err := ix.Upsert(Location{DriverID: "d1", Pos: b, Status: StatusBusy, At: clk.Now().Add(-time.Minute)})
			if !errors.Is(err, ErrStaleLocation) {
				t.Fatal(err)
			}
		}}, map[geo.Cell]SupplyCount{ca: {Available: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			cfg := DefaultIndexConfig()
			cfg.TTL = 30 * time.Second
			ix := mustIndex(t, cfg, clk)
			for _, s := range tc.steps {
				s(t, ix, clk)
			}
			if got := cellCounts(t, ix); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("EachCellSupply = %v, want %v", got, tc.want)
			}
			checkCounts(t, ix, 0, 0, []string{"x"})
		})
	}
}

// TestCellSupplyErrors: cells finer than the index are refused; unknown
// products and cells count nothing.
func TestCellSupplyErrors(t *testing.T) {
	ix := mustIndex(t, DefaultIndexConfig(), newFakeClock())
	p := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	if err := ix.Upsert(Location{DriverID: "d1", Pos: p, Status: StatusAvailable, Product: "x"}); err != nil {
		t.Fatal(err)
	}
	fine, _ := geo.CellAt(p, 10)
	if _, err := ix.CellSupply(fine, ""); !errors.Is(err, ErrResolution) {
		t.Fatalf("finer cell: %v", err)
	}
	c, _ := geo.CellAt(p, 9)
	if sc, err := ix.CellSupply(c, "nope"); err != nil || sc != (SupplyCount{}) {
		t.Fatalf("unknown product: %+v %v", sc, err)
	}
	far, _ := geo.CellAt(geo.LatLng{Lat: 40, Lng: -74}, 9)
	if sc, err := ix.CellSupply(far, ""); err != nil || sc != (SupplyCount{}) {
		t.Fatalf("unknown cell: %+v %v", sc, err)
	}
	home, _ := c.Parent(0)
	if sc, err := ix.CellSupply(home, ""); err != nil || sc != (SupplyCount{Available: 1}) {
		t.Fatalf("res-0 cell holding the driver: %+v %v", sc, err)
	}
	elsewhere, _ := geo.CellAt(geo.LatLng{Lat: -40, Lng: 100}, 0)
	if sc, err := ix.CellSupply(elsewhere, ""); err != nil || sc != (SupplyCount{}) {
		t.Fatalf("res-0 cell elsewhere: %+v %v", sc, err)
	}
}

// TestRemoveCells: every driver of the given cells goes, in every shard,
// nothing else does, and the counters follow.
func TestRemoveCells(t *testing.T) {
	seed := uint64(11)
	rng := rand.New(rand.NewPCG(seed, 1))
	build := func(t *testing.T) *Index {
		cfg := DefaultIndexConfig()
		cfg.Shards = 8
		ix := mustIndex(t, cfg, newFakeClock())
		centre := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
		for i := range 2000 {
			p := geo.Destination(centre, rng.Float64()*360, 1500*math.Sqrt(rng.Float64()))
			if err := ix.Upsert(Location{DriverID: fmt.Sprintf("d%04d", i), Pos: p, Status: Status(rng.IntN(3)), Product: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		return ix
	}
	byCell := func(ix *Index) map[geo.Cell][]string {
		out := map[geo.Cell][]string{}
		for _, d := range ix.Snapshot() {
			out[d.Cell] = append(out[d.Cell], d.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		pick func(cells []geo.Cell) []geo.Cell // from the sorted cells holding drivers
	}{
		{"none", func([]geo.Cell) []geo.Cell { return nil }},
		{"one", func(cs []geo.Cell) []geo.Cell { return cs[:1] }},
		{"half", func(cs []geo.Cell) []geo.Cell { return cs[:len(cs)/2] }},
		{"all", func(cs []geo.Cell) []geo.Cell { return cs }},
		{"duplicates", func(cs []geo.Cell) []geo.Cell { return []geo.Cell{cs[0], cs[1], cs[0]} }},
		{"unknown and coarse cells ignored", func(cs []geo.Cell) []geo.Cell {
			far, _ := geo.CellAt(geo.LatLng{Lat: 40, Lng: -74}, 9)
			parent, _ := cs[0].Parent(7)
			return []geo.Cell{far, parent, 0}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := build(t)
			before := byCell(ix)
			cells := make([]geo.Cell, 0, len(before))
			for c := range before {
				cells = append(cells, c)
			}
			slices.Sort(cells)
			pick := tc.pick(cells)
			want := 0
			gone := map[string]bool{}
			for _, c := range pick {
				for _, id := range before[c] {
					if !gone[id] {
						gone[id] = true
						want++
					}
				}
			}
			if got := ix.RemoveCells(pick); got != want {
				t.Fatalf("seed %d: RemoveCells removed %d, want %d", seed, got, want)
			}
			for c, ids := range before {
				for _, id := range ids {
					if _, ok := ix.Get(id); ok == gone[id] {
						t.Fatalf("seed %d: %s of cell %v indexed=%v after removing %v", seed, id, c, ok, pick)
					}
				}
			}
			checkConsistent(t, ix)
			checkCounts(t, ix, seed, 0, nil)
		})
	}
}

// TestDriversByID: the first limit drivers by id, as a sorted Snapshot
// gives them, with the truncation flag, for limits around the size.
func TestDriversByID(t *testing.T) {
	seed := uint64(5)
	rng := rand.New(rand.NewPCG(seed, 2))
	clk := newFakeClock()
	cfg := DefaultIndexConfig()
	cfg.Shards = 4
	ix := mustIndex(t, cfg, clk)
	if got, more := ix.DriversByID(10); len(got) != 0 || more {
		t.Fatalf("empty index: %v %v", got, more)
	}
	const n = 500
	for i := range n {
		err := ix.Upsert(Location{DriverID: fmt.Sprintf("d%05d", rng.IntN(100_000)), Pos: randomSF(rng), Heading: 12, Speed: 3,
			Status: Status(rng.IntN(3)), Product: []string{"x", "xl"}[i%2], Gateway: fmt.Sprint("gw", i%3)})
		if err != nil {
			t.Fatal(err)
		}
	}
	all := ix.Snapshot()
	slices.SortFunc(all, func(a, b Driver) int { return strings.Compare(a.ID, b.ID) })
	for _, limit := range []int{-1, 0, 1, 2, 17, 100, len(all) - 1, len(all), len(all) + 1, 20000} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			got, more := ix.DriversByID(limit)
			want := all[:max(0, min(limit, len(all)))]
			if wantMore := limit < len(all); more != wantMore {
				t.Fatalf("seed %d limit %d: more=%v, want %v", seed, limit, more, wantMore)
			}
			if len(got) != len(want) {
				t.Fatalf("seed %d limit %d: %d drivers, want %d", seed, limit, len(got), len(want))
			}
			for i := range got {
				if fmt.Sprintf("%+v", got[i]) != fmt.Sprintf("%+v", want[i]) {
					t.Fatalf("seed %d limit %d: [%d] = %+v, want %+v", seed, limit, i, got[i], want[i])
				}
			}
		})
	}
}

// TestNearestAnyStatusOracle: with AnyStatus, Nearest equals a brute-force
// scan over drivers of every status.
func TestNearestAnyStatusOracle(t *testing.T) {
	for _, seed := range []uint64{21, 22, uint64(time.Now().UnixNano())} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 3))
			clk := newFakeClock()
			ix := mustIndex(t, DefaultIndexConfig(), clk)
			centre := geo.LatLng{Lat: 37.76, Lng: -122.44}
			products := []string{"x", "xl"}
			for i := range 1500 {
				p := geo.Destination(centre, rng.Float64()*360, 3000*math.Sqrt(rng.Float64()))
				if rng.IntN(30) == 0 {
					p = centre
				}
				err := ix.Upsert(Location{DriverID: fmt.Sprintf("d%04d", i), Pos: p, Status: Status(rng.IntN(3)),
					Product: products[rng.IntN(2)], At: clk.Now().Add(-time.Duration(rng.IntN(60)) * time.Second)})
				if err != nil {
					t.Fatal(err)
				}
			}
			all := ix.Snapshot()
			for qi := range 40 {
				q := Query{
					Pos:       geo.Destination(centre, rng.Float64()*360, 3500*math.Sqrt(rng.Float64())),
					K:         1 + rng.IntN(60),
					MaxRadius: 50 + rng.Float64()*3000,
					AnyStatus: true,
				}
				if rng.IntN(2) == 0 {
					q.Product = products[rng.IntN(2)]
				}
				if rng.IntN(3) == 0 {
					q.MaxAge = time.Duration(rng.IntN(60)) * time.Second
				}
				got, err := ix.Nearest(q)
				if err != nil {
					t.Fatal(err)
				}
				want := bruteAnyStatus(all, q, clk.Now())
				if g, w := fmt.Sprint(brief(got)), fmt.Sprint(brief(want)); g != w {
					t.Fatalf("seed %d query %d %+v:\n got %v\nwant %v", seed, qi, q, g, w)
				}
			}
		})
	}
}

func bruteAnyStatus(all []Driver, q Query, now time.Time) []Candidate {
	cp := make([]Driver, len(all))
	for i, d := range all {
		d.Status = StatusAvailable // the oracle's status filter lets everyone through
		cp[i] = d
	}
	return bruteNearest(cp, q, now)
}

// TestCellCountersConcurrent: writers move drivers and change statuses
// while readers walk the counters (run under -race); no count is ever
// negative, and at rest the counters equal the recount.
func TestCellCountersConcurrent(t *testing.T) {
	clk := newFakeClock()
	cfg := DefaultIndexConfig()
	cfg.Shards = 4
	ix := mustIndex(t, cfg, clk)
	centre := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	ops := 3000
	if testing.Short() {
		ops = 800
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range ops {
				id := fmt.Sprintf("d%d", rng.IntN(200))
				switch rng.IntN(8) {
				case 0:
					ix.Remove(id)
				case 1:
					_ = ix.SetStatus(id, Status(rng.IntN(3)))
				case 2:
					ix.RemoveCells([]geo.Cell{mustCell(geo.Destination(centre, rng.Float64()*360, 600*rng.Float64()))})
				default:
					_ = ix.Upsert(Location{DriverID: id, Pos: geo.Destination(centre, rng.Float64()*360, 600*rng.Float64()), Status: Status(rng.IntN(3)), At: clk.Now()})
				}
			}
		}()
	}
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ops / 10 {
				ix.EachCellSupply(func(c geo.Cell, sc SupplyCount) {
					if sc.Available < 0 || sc.Busy < 0 || sc.Offline < 0 {
						t.Errorf("cell %v negative %+v", c, sc)
					}
				})
				_, _ = ix.DriversByID(5)
			}
		}()
	}
	wg.Wait()
	checkConsistent(t, ix)
	checkCounts(t, ix, 0, 0, nil)
}

func mustCell(p geo.LatLng) geo.Cell {
	c, err := geo.CellAt(p, 9)
	if err != nil {
		panic(err)
	}
	return c
}

// TestEachCellSupplyAllocs: walking the counters allocates nothing per
// driver (at most the callback closure), and CellSupply of an index cell
// nothing at all.
func TestEachCellSupplyAllocs(t *testing.T) {
	ix := mustIndex(t, DefaultIndexConfig(), newFakeClock())
	fillSF(t, ix, 20_000, 9)
	cells := 0
	ix.EachCellSupply(func(geo.Cell, SupplyCount) { cells++ })
	var sum int
	if a := testing.AllocsPerRun(20, func() {
		ix.EachCellSupply(func(_ geo.Cell, sc SupplyCount) { sum += sc.Available })
	}); a > 2 {
		t.Fatalf("EachCellSupply over %d cells: %.0f allocs", cells, a)
	}
	c := mustCell(geo.LatLng{Lat: 37.76, Lng: -122.44})
	if a := testing.AllocsPerRun(20, func() { _, _ = ix.CellSupply(c, "") }); a != 0 {
		t.Fatalf("CellSupply: %.0f allocs", a)
	}
}

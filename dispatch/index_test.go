package dispatch

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

func TestIndexConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*IndexConfig)
		ok   bool
	}{
		{"default", func(*IndexConfig) {}, true},
		{"res 16", func(c *IndexConfig) { c.Resolution = 16 }, false},
		{"res -1", func(c *IndexConfig) { c.Resolution = -1 }, false},
		{"ttl 0", func(c *IndexConfig) { c.TTL = 0 }, false},
		{"shards 3", func(c *IndexConfig) { c.Shards = 3 }, false},
		{"shards 0", func(c *IndexConfig) { c.Shards = 0 }, false},
		{"shards 1", func(c *IndexConfig) { c.Shards = 1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultIndexConfig()
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidConfig)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := NewIndex(DefaultIndexConfig(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil clock: %v", err)
	}
}

func TestIndexBasics(t *testing.T) {
	clk := newFakeClock()
	ix := mustIndex(t, DefaultIndexConfig(), clk)
	p := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	loc := Location{DriverID: "d1", Pos: p, Heading: 90, Speed: 12.34, Product: "x", Status: StatusAvailable, Gateway: "gw-1:7000"}
	if err := ix.Upsert(loc); err != nil {
		t.Fatal(err)
	}
	d, ok := ix.Get("d1")
	if !ok || d.ID != "d1" || d.Product != "x" || d.Gateway != "gw-1:7000" || d.Status != StatusAvailable ||
		d.Heading != 90 || math.Abs(d.Speed-12.34) > 1e-9 || !d.Seen.Equal(clk.Now()) || geo.Distance(d.Pos, p) > 0.02 {
		t.Fatalf("Get = %+v", d)
	}
	wantCell, _ := geo.CellAt(d.Pos, 9)
	if d.Cell != wantCell {
		t.Fatalf("cell %v want %v", d.Cell, wantCell)
	}
	// Move far: cell changes.
	clk.Advance(time.Second)
	loc.Pos = geo.LatLng{Lat: 37.80, Lng: -122.40}
	loc.Heading = math.NaN()
	if err := ix.Upsert(loc); err != nil {
		t.Fatal(err)
	}
	d, _ = ix.Get("d1")
	if c, _ := geo.CellAt(d.Pos, 9); d.Cell != c || !math.IsNaN(d.Heading) {
		t.Fatalf("after move %+v", d)
	}
	// Stale update ignored.
	loc.At = clk.Now().Add(-5 * time.Second)
	if err := ix.Upsert(loc); !errors.Is(err, ErrStaleLocation) {
		t.Fatalf("stale: %v", err)
	}
	if err := ix.SetStatus("d1", StatusBusy); err != nil {
		t.Fatal(err)
	}
	if d, _ := ix.Get("d1"); d.Status != StatusBusy {
		t.Fatal("SetStatus")
	}
	if err := ix.SetStatus("nobody", StatusBusy); !errors.Is(err, ErrUnknownDriver) {
		t.Fatalf("SetStatus unknown: %v", err)
	}
	for _, bad := range []Location{
		{DriverID: "", Pos: p},
		{DriverID: "x", Pos: geo.LatLng{Lat: 95}},
		{DriverID: "x", Pos: p, Status: 9},
	} {
		if err := ix.Upsert(bad); !errors.Is(err, ErrInvalidLocation) {
			t.Errorf("Upsert(%+v) = %v", bad, err)
		}
	}
	if ix.Len() != 1 || !ix.Remove("d1") || ix.Remove("d1") || ix.Len() != 0 {
		t.Fatal("remove")
	}
}

func TestIndexExpireAndSupply(t *testing.T) {
	clk := newFakeClock()
	cfg := DefaultIndexConfig()
	cfg.TTL = 30 * time.Second
	ix := mustIndex(t, cfg, clk)
	p := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	cell, _ := geo.CellAt(p, 9)
	parent, _ := cell.Parent(6)
	for i := 0; i < 10; i++ {
		st := StatusAvailable
		if i%3 == 0 {
			st = StatusBusy
		}
		prod := "x"
		if i%2 == 0 {
			prod = "xl"
		}
		if err := ix.Upsert(Location{DriverID: fmt.Sprint("d", i), Pos: p, Product: prod, Status: st, At: clk.Now().Add(time.Duration(-i*5) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	sc, err := ix.CellSupply(cell, "")
	if err != nil || sc != (SupplyCount{Available: 6, Busy: 4}) {
		t.Fatalf("supply %+v %v", sc, err)
	}
	sc, _ = ix.CellSupply(parent, "x")
	if sc != (SupplyCount{Available: 3, Busy: 2}) {
		t.Fatalf("supply x in parent %+v", sc)
	}
	if got := len(ix.DriversInPartition(parent)); got != 10 {
		t.Fatalf("partition has %d", got)
	}
	other, _ := geo.CellAt(geo.LatLng{Lat: 40, Lng: -74}, 6)
	if got := len(ix.DriversInPartition(other)); got != 0 {
		t.Fatalf("other partition has %d", got)
	}
	// Seen at now-0, -5, ..., -45 s. TTL 30 s: silent > 30 s are d7, d8, d9.
	if n := ix.Expire(clk.Now()); n != 3 {
		t.Fatalf("expired %d", n)
	}
	if ix.Len() != 7 {
		t.Fatalf("len %d", ix.Len())
	}
	if _, ok := ix.Get("d7"); ok {
		t.Fatal("d7 survived")
	}
	if n := ix.Expire(clk.Now().Add(time.Hour)); n != 7 || ix.Len() != 0 {
		t.Fatalf("expire all: %d, len %d", n, ix.Len())
	}
}

// bruteNearest is the oracle: every driver, filtered, ordered by
// (geo.Distance, id).
func bruteNearest(all []Driver, q Query, now time.Time) []Candidate {
	var out []Candidate
	for _, d := range all {
		if d.Status != StatusAvailable || (q.Product != "" && d.Product != q.Product) {
			continue
		}
		if q.MaxAge > 0 && d.Seen.Before(now.Add(-q.MaxAge)) {
			continue
		}
		if _, ok := q.Exclude[d.ID]; ok {
			continue
		}
		dist := geo.Distance(q.Pos, d.Pos)
		if dist > q.MaxRadius {
			continue
		}
		out = append(out, Candidate{Driver: d, Distance: dist})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Distance != out[j].Distance {
			return out[i].Distance < out[j].Distance
		}
		return out[i].ID < out[j].ID
	})
	if len(out) > q.K {
		out = out[:q.K]
	}
	return out
}

type hotspot struct {
	name string
	at   geo.LatLng
}

func hotspots(t testing.TB, res int) []hotspot {
	hs := []hotspot{
		{"sf", geo.LatLng{Lat: 37.76, Lng: -122.44}},
		{"north-pole", geo.LatLng{Lat: 89.999, Lng: 45}},
		{"south-pole", geo.LatLng{Lat: -89.995, Lng: -100}},
		{"antimeridian", geo.LatLng{Lat: -16.8, Lng: 179.9999}},
		{"antimeridian-w", geo.LatLng{Lat: 65.5, Lng: -179.9995}},
	}
	pents, err := geo.Pentagons(res)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pents {
		c, _ := p.Center()
		hs = append(hs, hotspot{fmt.Sprintf("pentagon-%d", i), c})
	}
	return hs
}

// TestNearestOracle compares Nearest with the brute-force oracle on random
// cities at the hot spots. Reproduce a failure with the printed seed.
func TestNearestOracle(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 2
	}
	for _, res := range []int{9, 7} {
		edge, _ := geo.EdgeLengthAvg(res)
		for hi, hs := range hotspots(t, res) {
			for s := 0; s < seeds; s++ {
				seed := uint64(res*10000 + hi*100 + s)
				t.Run(fmt.Sprintf("res%d/%s/seed%d", res, hs.name, seed), func(t *testing.T) {
					t.Logf("seed %d", seed)
					checkOracle(t, seed, res, hs.at, edge)
				})
			}
		}
	}
}

func checkOracle(t *testing.T, seed uint64, res int, centre geo.LatLng, edge float64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	clk := newFakeClock()
	cfg := DefaultIndexConfig()
	cfg.Resolution = res
	cfg.Shards = 1 << rng.IntN(4)
	ix := mustIndex(t, cfg, clk)
	spread := edge * (2 + rng.Float64()*25)
	n := 50 + rng.IntN(600)
	if seed%2 == 1 { // dense: hundreds of drivers per cell exercise the multi-pass scan
		spread = edge * (0.3 + rng.Float64()*2)
		n = 300 + rng.IntN(900)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%04d", rng.IntN(5000)) // collisions: re-upserts
	}
	products := []string{"x", "xl", "black"}
	for round := 0; round < 2; round++ {
		for _, id := range ids {
			p := geo.Destination(centre, rng.Float64()*360, spread*math.Sqrt(rng.Float64()))
			if rng.IntN(10) == 0 && round == 1 {
				continue
			}
			if rng.IntN(20) == 0 { // exact duplicates of a position: ties by id
				p = centre
			}
			err := ix.Upsert(Location{
				DriverID: id, Pos: p, Heading: rng.Float64() * 360, Speed: 10,
				Product: products[rng.IntN(len(products))],
				Status:  Status(rng.IntN(3)),
				Gateway: fmt.Sprint("gw", rng.IntN(3)),
				At:      clk.Now().Add(-time.Duration(rng.IntN(120)) * time.Second),
			})
			if err != nil && !errors.Is(err, ErrStaleLocation) {
				t.Fatalf("seed %d: upsert: %v", seed, err)
			}
		}
		for _, id := range ids[:n/10] {
			ix.Remove(id)
		}
	}
	all := ix.Snapshot()
	for qi := 0; qi < 25; qi++ {
		q := Query{
			Pos:       geo.Destination(centre, rng.Float64()*360, spread*1.2*math.Sqrt(rng.Float64())),
			K:         1 + rng.IntN(15),
			MaxRadius: spread * (0.05 + rng.Float64()),
		}
		if rng.IntN(2) == 0 {
			q.Product = products[rng.IntN(len(products))]
		}
		if rng.IntN(2) == 0 {
			q.MaxAge = time.Duration(rng.IntN(120_000)) * time.Millisecond
		}
		if rng.IntN(3) == 0 {
			q.Exclude = map[string]struct{}{}
			for j := 0; j < 10; j++ {
				q.Exclude[ids[rng.IntN(n)]] = struct{}{}
			}
		}
		got, err := ix.Nearest(q)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		want := bruteNearest(all, q, clk.Now())
		if len(got) != len(want) {
			t.Fatalf("seed %d query %d %+v: got %d drivers, oracle %d\n got %v\nwant %v", seed, qi, q, len(got), len(want), brief(got), brief(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Distance != want[i].Distance {
				t.Fatalf("seed %d query %d %+v: rank %d got %s@%v want %s@%v\n got %v\nwant %v", seed, qi, q, i,
					got[i].ID, got[i].Distance, want[i].ID, want[i].Distance, brief(got), brief(want))
			}
		}
	}
}

func brief(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s@%.3f", c.ID, c.Distance)
	}
	return out
}

func TestNearestValidation(t *testing.T) {
	ix := mustIndex(t, DefaultIndexConfig(), newFakeClock())
	for _, q := range []Query{
		{Pos: geo.LatLng{Lat: 37, Lng: -122}, K: 0, MaxRadius: 100},
		{Pos: geo.LatLng{Lat: 37, Lng: -122}, K: MaxK + 1, MaxRadius: 100},
		{Pos: geo.LatLng{Lat: 37, Lng: -122}, K: 1, MaxRadius: 0},
		{Pos: geo.LatLng{Lat: 37, Lng: -122}, K: 1, MaxRadius: math.NaN()},
		{Pos: geo.LatLng{Lat: 100, Lng: -122}, K: 1, MaxRadius: 100},
	} {
		if _, err := ix.Nearest(q); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("Nearest(%+v) = %v", q, err)
		}
	}
	got, err := ix.Nearest(Query{Pos: geo.LatLng{Lat: 37, Lng: -122}, K: 3, MaxRadius: 100, Product: "unknown"})
	if err != nil || len(got) != 0 {
		t.Fatalf("unknown product: %v %v", got, err)
	}
}

// TestUpsertFastPathKeepsCell moves drivers by small steps and checks the
// indexed cell always equals latLngToCell of the indexed position.
func TestUpsertFastPathKeepsCell(t *testing.T) {
	seed := uint64(77)
	rng := rand.New(rand.NewPCG(seed, 1))
	clk := newFakeClock()
	ix := mustIndex(t, DefaultIndexConfig(), clk)
	for _, hs := range hotspots(t, 9) {
		p := hs.at
		for i := 0; i < 300; i++ {
			p = geo.Destination(p, rng.Float64()*360, rng.Float64()*40)
			if err := ix.Upsert(Location{DriverID: hs.name, Pos: p, Status: StatusAvailable}); err != nil {
				t.Fatal(err)
			}
			d, _ := ix.Get(hs.name)
			if c, _ := geo.CellAt(d.Pos, 9); c != d.Cell {
				t.Fatalf("seed %d %s step %d: indexed cell %v, position is in %v", seed, hs.name, i, d.Cell, c)
			}
		}
	}
}

// TestIndexConcurrent hammers the index from ingest and query goroutines;
// run under -race. Afterwards the index must be internally consistent.
func TestIndexConcurrent(t *testing.T) {
	clk := newFakeClock()
	cfg := DefaultIndexConfig()
	cfg.Shards = 4
	ix := mustIndex(t, cfg, clk)
	const writers, readers, drivers = 4, 2, 400
	ops := 3000
	if testing.Short() {
		ops = 800
	}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < ops; i++ {
				id := fmt.Sprintf("d%d", rng.IntN(drivers))
				switch rng.IntN(10) {
				case 0:
					ix.Remove(id)
				case 1:
					_ = ix.SetStatus(id, StatusBusy)
				case 2:
					ix.Expire(clk.Now().Add(-time.Minute))
				default:
					err := ix.Upsert(Location{DriverID: id, Pos: randomSF(rng), Status: StatusAvailable, Product: "x", Gateway: fmt.Sprint("gw", w), At: clk.Now()})
					if err != nil && !errors.Is(err, ErrStaleLocation) {
						t.Error(err)
						return
					}
				}
			}
		}(w)
	}
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 10))
			for i := 0; i < ops/4; i++ {
				cs, err := ix.Nearest(Query{Pos: randomSF(rng), K: 5, MaxRadius: 3000})
				if err != nil {
					t.Error(err)
					return
				}
				seen := map[string]bool{}
				for _, c := range cs {
					if seen[c.ID] {
						t.Errorf("duplicate %s", c.ID)
					}
					seen[c.ID] = true
				}
				if i%50 == 0 {
					_ = ix.Snapshot()
					c, _ := geo.CellAt(randomSF(rng), 9)
					_, _ = ix.CellSupply(c, "x")
				}
			}
		}(r)
	}
	wg.Wait()
	checkConsistent(t, ix)
}

// checkConsistent verifies the internal invariants: every record is in its
// cell bucket at its idx, every bucket entry points back, the id table finds
// every live record, and the cell is right for the position.
func checkConsistent(t testing.TB, ix *Index) {
	t.Helper()
	ix.rlockAll()
	defer ix.runlockAll()
	total := 0
	for si := range ix.shards {
		s := &ix.shards[si]
		live := 0
		for slot := uint32(0); slot < s.next; slot++ {
			r := s.rec(slot)
			if r.cell == nil {
				continue
			}
			live++
			b := r.cell.buckets[si]
			if int(r.idx) >= len(b) || b[r.idx].slot() != slot {
				t.Fatalf("record %s not at its bucket position", r.id)
			}
			if c, _ := geo.CellAt(geo.E7{Lat: b[r.idx].lat, Lng: b[r.idx].lng}.LatLng(), ix.cfg.Resolution); c != r.cell.geo.Cell {
				t.Fatalf("record %s in cell %v, position in %v", r.id, r.cell.geo.Cell, c)
			}
			got, _, ok := s.lookup(hashOf(ix, r.id), r.id)
			if !ok || got != slot {
				t.Fatalf("id table lost %s", r.id)
			}
		}
		if live != s.live {
			t.Fatalf("shard %d live %d counted %d", si, s.live, live)
		}
		total += live
	}
	n := 0
	ix.cells.each(func(_ geo.Cell, ci *cellInfo) {
		for _, b := range ci.buckets {
			n += len(b)
		}
	})
	if n != total {
		t.Fatalf("buckets hold %d entries, %d records", n, total)
	}
}

func hashOf(ix *Index, id string) uint64 {
	h, _, _ := ix.hash(id)
	return h
}

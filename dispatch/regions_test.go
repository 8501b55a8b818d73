package dispatch

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

var (
	wilmington = geo.LatLng{Lat: 39.7447, Lng: -75.5484}
	chicago    = geo.LatLng{Lat: 41.8781, Lng: -87.6298}
	london     = geo.LatLng{Lat: 51.5074, Lng: -0.1278}
	tokyo      = geo.LatLng{Lat: 35.6762, Lng: 139.6503}
)

// cellOf is the resolution-res ancestor of p's res-6 partition (for res
// ≤ 6; finer: p's cell at res). Not geo.CellAt(p, res): H3 children do not
// tile their parents exactly, and London's partition descends from a
// different res-2 cell than the one London lies in.
func cellOf(t testing.TB, p geo.LatLng, res int) string {
	t.Helper()
	c, err := geo.CellAt(p, max(res, 6))
	if err != nil {
		t.Fatal(err)
	}
	if res < 6 {
		c, err = c.Parent(res)
		if err != nil {
			t.Fatal(err)
		}
	}
	return c.String()
}

type testRegion struct {
	Name     string   `json:"name"`
	Fallback string   `json:"fallback,omitempty"`
	Cells    []string `json:"cells"`
}

func regionMapJSON(t testing.TB, primary string, regions ...testRegion) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"primary": primary, "regions": regions})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// threeRegions: us-east (Wilmington at res 3), us-central (Chicago at res 4,
// Tokyo at res 6), eu-west (London at res 2); primary us-east.
func threeRegions(t testing.TB) []byte {
	return regionMapJSON(t, "us-east",
		testRegion{"us-east", "us-central", []string{cellOf(t, wilmington, 3)}},
		testRegion{"us-central", "us-east", []string{cellOf(t, chicago, 4), cellOf(t, tokyo, 6)}},
		testRegion{"eu-west", "us-east", []string{cellOf(t, london, 2)}},
	)
}

func TestParseRegionMapRejects(t *testing.T) {
	res3 := cellOf(t, wilmington, 3)
	for _, tc := range []struct {
		name string
		data []byte
		want string // in the error, after "--region-map"
	}{
		{"not json", []byte("{"), "unexpected EOF"},
		{"unknown key", []byte(`{"primary":"a","regions":[{"name":"a"}],"primray":"a"}`), "unknown field"},
		{"no regions", []byte(`{"primary":"a"}`), "no regions"},
		{"no primary", regionMapJSON(t, "", testRegion{Name: "a"}), `"primary" is required`},
		{"unknown primary", regionMapJSON(t, "b", testRegion{Name: "a"}), `primary "b" is not one of the regions`},
		{"duplicate name", regionMapJSON(t, "a", testRegion{Name: "a"}, testRegion{Name: "a"}), `region "a" listed twice`},
		{"empty name", regionMapJSON(t, "a", testRegion{Name: "a"}, testRegion{Name: ""}), "a region has no name"},
		{"bad name", regionMapJSON(t, "a", testRegion{Name: "a.b"}), `region name "a.b"`},
		{"unknown fallback", regionMapJSON(t, "a", testRegion{Name: "a", Fallback: "z"}), `region "a" falls back to unknown region "z"`},
		{"fallback to itself", regionMapJSON(t, "a", testRegion{Name: "a", Fallback: "a"}), `region "a" falls back to itself`},
		{"bad cell", regionMapJSON(t, "a", testRegion{Name: "a", Cells: []string{"nope"}}), `"nope" is not an H3 cell`},
		{"cell finer than partitions", regionMapJSON(t, "a", testRegion{Name: "a", Cells: []string{cellOf(t, wilmington, 7)}}), "finer than the partition resolution 6"},
		{"same cell twice", regionMapJSON(t, "a", testRegion{Name: "a", Cells: []string{res3}}, testRegion{Name: "b", Cells: []string{res3}}), "listed by both"},
		{"overlapping cells", regionMapJSON(t, "a", testRegion{Name: "a", Cells: []string{res3}}, testRegion{Name: "b", Cells: []string{cellOf(t, wilmington, 5)}}), "overlaps cell " + res3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseRegionMap(tc.data, 6)
			if err == nil {
				t.Fatalf("ParseRegionMap = %v, want an error", m)
			}
			if !errors.Is(err, ErrInvalidRegionMap) || !strings.Contains(err.Error(), "--region-map") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRegionMap error = %v, want ErrInvalidRegionMap naming --region-map and %q", err, tc.want)
			}
		})
	}
}

func TestRegionMapLookups(t *testing.T) {
	m, err := ParseRegionMap(threeRegions(t), 6)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Regions(), []string{"eu-west", "us-central", "us-east"}; !slices.Equal(got, want) {
		t.Errorf("Regions() = %v, want %v", got, want)
	}
	if m.Primary() != "us-east" {
		t.Errorf("Primary() = %q", m.Primary())
	}
	for _, tc := range []struct {
		name string
		p    geo.LatLng
		want string
	}{
		{"wilmington", wilmington, "us-east"},
		{"chicago", chicago, "us-central"},
		{"tokyo (a res-6 cell)", tokyo, "us-central"},
		{"london", london, "eu-west"},
		{"sydney: in no cell, the primary", geo.LatLng{Lat: -33.87, Lng: 151.21}, "us-east"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := m.RegionOf(tc.p)
			if err != nil || got != tc.want {
				t.Fatalf("RegionOf(%v) = %q, %v; want %q", tc.p, got, err, tc.want)
			}
			part, _ := geo.CellAt(tc.p, 6)
			if got := m.RegionOfPartition(part); got != tc.want {
				t.Fatalf("RegionOfPartition(%s) = %q, want %q", part, got, tc.want)
			}
		})
	}
	if _, err := m.RegionOf(geo.LatLng{Lat: 91}); err == nil {
		t.Error("RegionOf(lat 91) did not fail")
	}
	for _, tc := range []struct {
		region string
		want   string
		ok     bool
		chain  []string
	}{
		{"us-east", "us-central", true, []string{"us-east", "us-central"}},
		{"eu-west", "us-east", true, []string{"eu-west", "us-east", "us-central"}},
		{"mars", "", false, []string{"mars"}},
	} {
		got, ok := m.Fallback(tc.region)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Fallback(%q) = %q, %v; want %q, %v", tc.region, got, ok, tc.want, tc.ok)
		}
		if chain := m.FallbackChain(tc.region); !slices.Equal(chain, tc.chain) {
			t.Errorf("FallbackChain(%q) = %v, want %v", tc.region, chain, tc.chain)
		}
	}
}

func TestFallbackChainIsBounded(t *testing.T) {
	m, err := ParseRegionMap(regionMapJSON(t, "a",
		testRegion{Name: "a", Fallback: "b"}, testRegion{Name: "b", Fallback: "c"}, testRegion{Name: "c", Fallback: "d"},
		testRegion{Name: "d", Fallback: "e"}, testRegion{Name: "e", Fallback: "a"}), 6)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.FallbackChain("a"), []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("FallbackChain(a) = %v, want %v (MaxFallbackHops=%d)", got, want, MaxFallbackHops)
	}
}

func TestSingleRegionMap(t *testing.T) {
	m := SingleRegionMap("local")
	if got, err := m.RegionOf(tokyo); got != "local" || err != nil {
		t.Fatalf("RegionOf = %q, %v", got, err)
	}
	if got := m.RegionOfPartition(geo.Cell(0x862a1072fffffff)); got != "local" {
		t.Fatalf("RegionOfPartition = %q", got)
	}
	if !m.Has("local") || m.Has("other") || m.Primary() != "local" || !slices.Equal(m.Regions(), []string{"local"}) {
		t.Fatalf("single region map: %+v", m)
	}
	if _, ok := m.Fallback("local"); ok {
		t.Fatal("single region has a fallback")
	}
	if bad := SingleRegionMap("us.east"); bad.Has("us.east") || len(bad.Regions()) != 0 {
		t.Fatalf("a single region map of an invalid name has regions %v", bad.Regions())
	}
	if err := m.CheckPartitionResolution(9); err != nil {
		t.Fatalf("a map without cells fits any partition resolution: %v", err)
	}
	parsed, err := ParseRegionMap(threeRegions(t), 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.CheckPartitionResolution(7); !errors.Is(err, ErrInvalidRegionMap) || !strings.Contains(err.Error(), "--partition-res=6") {
		t.Fatalf("CheckPartitionResolution(7) on a map read for 6 = %v", err)
	}
}

// TestRegionOfMatchesLinearScan: for random points, the indexed lookup
// agrees with testing every listed cell in turn (is it an ancestor of the
// point's partition?).
func TestRegionOfMatchesLinearScan(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	// Cells at resolutions 2..5 scattered over the US east coast, so random
	// points there hit cells of every resolution and gaps between them.
	var regions []testRegion
	used := map[string]bool{}
	names := []string{"r0", "r1", "r2", "r3"}
	for _, n := range names {
		regions = append(regions, testRegion{Name: n})
	}
	randomPoint := func() geo.LatLng {
		return geo.LatLng{Lat: 35 + rng.Float64()*10, Lng: -80 + rng.Float64()*10}
	}
	type listed struct {
		cell   geo.Cell
		region string
	}
	var all []listed
	for len(all) < 40 {
		res := 2 + rng.IntN(4)
		c, _ := geo.CellAt(randomPoint(), res)
		overlap := false
		for _, l := range all {
			lo, hi := l.cell, c
			if lo.Resolution() > hi.Resolution() {
				lo, hi = hi, lo
			}
			if p, _ := hi.Parent(lo.Resolution()); p == lo {
				overlap = true
			}
		}
		if overlap || used[c.String()] {
			continue
		}
		used[c.String()] = true
		i := rng.IntN(len(names))
		regions[i].Cells = append(regions[i].Cells, c.String())
		all = append(all, listed{c, names[i]})
	}
	m, err := ParseRegionMap(regionMapJSON(t, "r0", regions...), 6)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	hits := 0
	for range 5000 {
		p := randomPoint()
		want := "r0"
		part, _ := geo.CellAt(p, 6)
		for _, l := range all {
			if c, _ := part.Parent(l.cell.Resolution()); c == l.cell {
				want = l.region
				hits++
				break
			}
		}
		got, err := m.RegionOf(p)
		if err != nil || got != want {
			t.Fatalf("seed %d: RegionOf(%v) = %q, %v; linear scan says %q", seed, p, got, err, want)
		}
		if got := m.RegionOfPartition(part); got != want {
			t.Fatalf("seed %d: RegionOfPartition(%s) = %q; linear scan says %q", seed, part, got, want)
		}
	}
	if hits == 0 {
		t.Fatalf("seed %d: no random point fell in a listed cell", seed)
	}
}

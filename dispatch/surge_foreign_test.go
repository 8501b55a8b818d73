package dispatch

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/hexride/hexride/geo"
)

// TestSurgeForeignReadings: a neighbour's foreign reading (from the worker
// owning it) replaces local counts for that neighbour in the blend while it
// is valid, is capped, never changes the cell's own raw multiplier, and
// from its expiry on the neighbour reads from local counts again.
func TestSurgeForeignReadings(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := sfSurgeCell(t)
	nb, err := geo.Neighbors(c)
	if err != nil || len(nb) != 6 {
		t.Fatalf("neighbours of %v: %v %v", c, nb, err)
	}
	const self = -1 // index of c itself in the cases below
	type counts struct{ demand, supply int }
	type foreign struct {
		cell  int // index into nb, or self
		raw   float64
		until time.Duration // after t0
	}
	for _, tc := range []struct {
		name       string
		local      map[int]counts // by index into nb, or self
		foreign    []foreign
		at         time.Duration // after t0
		wantRaw    float64
		wantTarget float64
	}{
		// c at ratio 1 (raw 1); six calm neighbours: 0.5·1 + 0.5·1.
		{name: "no foreign", local: map[int]counts{self: {10, 10}}, at: 0, wantRaw: 1, wantTarget: 1},
		// One neighbour at 3: 0.5·1 + 0.5·(3+5)/6 = 1.167 → 1.2.
		{name: "valid foreign", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 3, 10 * time.Second}}, at: 5 * time.Second, wantRaw: 1, wantTarget: 1.2},
		{name: "valid until the last instant", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 3, 10 * time.Second}}, at: 10*time.Second - time.Nanosecond, wantRaw: 1, wantTarget: 1.2},
		{name: "expired at until", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 3, 10 * time.Second}}, at: 10 * time.Second, wantRaw: 1, wantTarget: 1},
		{name: "expired long ago", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 3, 10 * time.Second}}, at: 5 * time.Minute, wantRaw: 1, wantTarget: 1},
		// Two hot neighbours: 0.5·1 + 0.5·(3+2.5+4)/6 = 1.292 → 1.3.
		{name: "two foreign", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 3, time.Minute}, {3, 2.5, time.Minute}}, at: time.Second, wantRaw: 1, wantTarget: 1.3},
		// A reading above Max counts as Max: 0.5·1 + 0.5·(3+5)/6 → 1.2.
		{name: "capped", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{0, 40, time.Minute}}, at: time.Second, wantRaw: 1, wantTarget: 1.2},
		// Neighbour 0 has stale local counts (raw 2): the foreign reading (1)
		// wins while valid …
		{name: "foreign wins over local counts", local: map[int]counts{self: {10, 10}, 0: {30, 10}},
			foreign: []foreign{{0, 1, 10 * time.Second}}, at: time.Second, wantRaw: 1, wantTarget: 1},
		// … and after it the local counts read again: 0.5 + 0.5·(2+5)/6 → 1.1.
		{name: "local counts after expiry", local: map[int]counts{self: {10, 10}, 0: {30, 10}},
			foreign: []foreign{{0, 1, 10 * time.Second}}, at: 20 * time.Second, wantRaw: 1, wantTarget: 1.1},
		// A foreign reading for the cell itself does not change its own raw.
		{name: "own cell ignores foreign", local: map[int]counts{self: {10, 10}},
			foreign: []foreign{{self, 3, time.Minute}}, at: time.Second, wantRaw: 1, wantTarget: 1},
		// A cell with no local counts next to a foreign hot one: 0.5·1 + 0.5·(3+5)/6.
		{name: "no local data", foreign: []foreign{{4, 3, time.Minute}}, at: time.Second, wantRaw: 1, wantTarget: 1.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultSurgeConfig()
			cfg.Hysteresis, cfg.MinHold = 0, 0
			s, err := NewSurge(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cell := func(i int) geo.Cell {
				if i == self {
					return c
				}
				return nb[i]
			}
			for i, n := range tc.local {
				if err := s.RecordSupply(cell(i), n.supply, t0); err != nil {
					t.Fatal(err)
				}
				for range n.demand {
					if err := s.RecordDemand(cell(i), t0); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, f := range tc.foreign {
				if err := s.SetForeign(cell(f.cell), f.raw, t0.Add(f.until)); err != nil {
					t.Fatal(err)
				}
			}
			r, err := s.At(c, t0.Add(tc.at))
			if err != nil {
				t.Fatal(err)
			}
			if r.Raw != tc.wantRaw || math.Abs(r.Target-tc.wantTarget) > 1e-9 || r.Multiplier != r.Target {
				t.Fatalf("got raw %v target %v multiplier %v, want raw %v target %v", r.Raw, r.Target, r.Multiplier, tc.wantRaw, tc.wantTarget)
			}
		})
	}
}

// TestSurgeForeignPruneAndErrors: Prune drops expired foreign readings only;
// SetForeign refuses cells at another resolution and non-finite values;
// Readings reports local counts, never foreign readings.
func TestSurgeForeignPruneAndErrors(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	c := sfSurgeCell(t)
	nb, _ := geo.Neighbors(c)
	s, err := NewSurge(DefaultSurgeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetForeign(nb[0], 2, t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetForeign(nb[1], 2, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	coarse, _ := c.Parent(7)
	if err := s.SetForeign(coarse, 2, t0.Add(time.Minute)); !errors.Is(err, ErrResolution) {
		t.Fatalf("coarse cell: %v", err)
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if err := s.SetForeign(nb[2], bad, t0.Add(time.Minute)); !errors.Is(err, ErrInvalidQuery) {
			t.Fatalf("raw %v: %v", bad, err)
		}
	}
	if rs := s.Readings(t0); len(rs) != 0 {
		t.Fatalf("readings with no local counts: %+v", rs)
	}
	if n := s.Prune(t0.Add(10 * time.Second)); n != 1 {
		t.Fatalf("pruned %d, want the one expired reading", n)
	}
	// The unexpired one still blends in: 0.5·1 + 0.5·(2+5)/6 = 1.083 → 1.1.
	if r, _ := s.At(c, t0.Add(20*time.Second)); math.Abs(r.Target-1.1) > 1e-9 {
		t.Fatalf("after prune %+v", r)
	}
	_ = s.RecordSupply(c, 10, t0)
	for range 30 {
		_ = s.RecordDemand(c, t0)
	}
	rs := s.Readings(t0)
	if len(rs) != 1 || rs[0].Cell != c || rs[0].Demand != 30 || rs[0].Supply != 10 || rs[0].Raw != 2 {
		t.Fatalf("readings %+v", rs)
	}
}

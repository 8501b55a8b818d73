package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hexride/hexride/geo"
)

// RegionMap says which region homes which area: the one definition the trip
// store (a trip is homed in the region of its pickup) and matching (a
// partition is owned by its region's workers) share. It is immutable and
// pure; ParseRegionMap builds it from the JSON file an operator writes
// (--region-map):
//
//	{"primary": "us-east",
//	 "regions": [
//	   {"name": "us-east", "fallback": "us-central", "cells": ["842a107ffffffff"]},
//	   {"name": "us-central", "fallback": "us-east", "cells": ["842664dffffffff"]}]}
//
// Cells are H3 cells at the partition resolution or coarser, so every
// partition lies in at most one of them and a partition never straddles two
// regions. Containment is H3's hierarchy, not geometry: a listed cell holds
// the partitions that descend from it, and a point belongs to the region of
// its partition (H3 children do not tile their parent exactly, so a point
// near a coarse cell's edge may lie geometrically in a neighbour). That way
// a trip is always homed where its pickup's partition is owned. A point or
// partition in none of the cells is homed in the primary region: the
// primary is the catch-all for the rest of the world, so a new city works
// (homed far away) before an operator maps it, rather than refusing rides.
type RegionMap struct {
	primary  string
	names    []string          // sorted
	fallback map[string]string // region → fallback ("" none)
	cells    map[geo.Cell]string
	res      []int // distinct resolutions of cells, finest first
	partRes  int
	chains   map[string][]string // FallbackChain of every region
}

// MaxFallbackHops bounds how far ownership walks a region's fallback chain
// (region → fallback → its fallback …) looking for a live worker: beyond a
// few hops the partitions would be served from a continent away.
const MaxFallbackHops = 3

// ErrInvalidRegionMap is what every region map error wraps.
var ErrInvalidRegionMap = errors.New("invalid region map")

// regionMapFile is the file format.
type regionMapFile struct {
	Primary string `json:"primary"`
	Regions []struct {
		Name     string   `json:"name"`
		Fallback string   `json:"fallback"`
		Cells    []string `json:"cells"`
	} `json:"regions"`
}

// SingleRegionMap is the map used when no --region-map is given: one
// region, the primary, homing the whole world. It keeps a single-region
// deployment as it was before region maps. A name that is not a valid
// region name (ValidRegionName) yields a map that has no region: Has(name)
// is false, and the node's validation reports the name.
func SingleRegionMap(name string) *RegionMap {
	if ValidRegionName(name) != nil {
		return &RegionMap{primary: name, fallback: map[string]string{}, cells: map[geo.Cell]string{}}
	}
	return withChains(&RegionMap{primary: name, names: []string{name}, fallback: map[string]string{name: ""}, cells: map[geo.Cell]string{}})
}

func withChains(m *RegionMap) *RegionMap {
	m.chains = map[string][]string{}
	for _, r := range m.names {
		m.chains[r] = m.fallbackChain(r)
	}
	return m
}

// ParseRegionMap reads and validates a region map for partitions at
// partitionResolution. Errors name --region-map and the offending value.
func ParseRegionMap(data []byte, partitionResolution int) (*RegionMap, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: --region-map: %s", ErrInvalidRegionMap, fmt.Sprintf(format, args...))
	}
	var f regionMapFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields() // a misspelt key is a mistake, not a default
	if err := dec.Decode(&f); err != nil {
		return nil, bad("%v", err)
	}
	if dec.More() {
		return nil, bad("trailing data after the JSON object")
	}
	if partitionResolution < 0 || partitionResolution > geo.MaxResolution {
		return nil, bad("partition resolution %d out of range", partitionResolution)
	}
	if len(f.Regions) == 0 {
		return nil, bad("no regions")
	}
	m := &RegionMap{primary: f.Primary, fallback: map[string]string{}, cells: map[geo.Cell]string{}, partRes: partitionResolution}
	for _, r := range f.Regions {
		if err := ValidRegionName(r.Name); err != nil {
			return nil, bad("%v", err)
		}
		if _, dup := m.fallback[r.Name]; dup {
			return nil, bad("region %q listed twice", r.Name)
		}
		m.fallback[r.Name] = r.Fallback
		m.names = append(m.names, r.Name)
	}
	slices.Sort(m.names)
	if m.primary == "" {
		return nil, bad(`"primary" is required (the region homing points in no region's cells)`)
	}
	if _, ok := m.fallback[m.primary]; !ok {
		return nil, bad("primary %q is not one of the regions %v", m.primary, m.names)
	}
	resSeen := map[int]bool{}
	for _, r := range f.Regions {
		switch _, known := m.fallback[r.Fallback]; {
		case r.Fallback == r.Name:
			return nil, bad("region %q falls back to itself", r.Name)
		case r.Fallback != "" && !known:
			return nil, bad("region %q falls back to unknown region %q", r.Name, r.Fallback)
		}
		for _, s := range r.Cells {
			c, err := geo.ParseCell(s)
			if err != nil || !c.IsValid() {
				return nil, bad("region %q: %q is not an H3 cell", r.Name, s)
			}
			if c.Resolution() > partitionResolution {
				return nil, bad("region %q: cell %s has resolution %d, finer than the partition resolution %d (a partition would straddle regions)", r.Name, s, c.Resolution(), partitionResolution)
			}
			if other, dup := m.cells[c]; dup {
				return nil, bad("cell %s is listed by both %q and %q", s, other, r.Name)
			}
			m.cells[c] = r.Name
			if !resSeen[c.Resolution()] {
				resSeen[c.Resolution()] = true
				m.res = append(m.res, c.Resolution())
			}
		}
	}
	slices.Sort(m.res)
	slices.Reverse(m.res)
	// Overlap: a cell whose ancestor is also listed would home the same
	// area twice.
	for c, region := range m.cells {
		for _, r := range m.res {
			if r >= c.Resolution() {
				continue
			}
			p, err := c.Parent(r)
			if err != nil {
				return nil, bad("cell %s: %v", c, err)
			}
			if other, ok := m.cells[p]; ok {
				return nil, bad("cell %s of %q overlaps cell %s of %q", c, region, p, other)
			}
		}
	}
	return withChains(m), nil
}

// ValidRegionName keeps names usable everywhere a region appears: Consul
// metadata, NATS subject tokens, CockroachDB region names.
func ValidRegionName(name string) error {
	if name == "" {
		return errors.New("a region has no name")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("region name %q: want letters, digits, '-' and '_'", name)
		}
	}
	return nil
}

// CheckPartitionResolution reports whether the map, parsed for one
// partition resolution, fits partitions at partitionResolution: its cells
// must be no finer, and points are looked up at the resolution it was
// parsed for.
func (m *RegionMap) CheckPartitionResolution(partitionResolution int) error {
	if len(m.cells) > 0 && m.partRes != partitionResolution {
		return fmt.Errorf("%w: --region-map was read for --partition-res=%d, not %d", ErrInvalidRegionMap, m.partRes, partitionResolution)
	}
	return nil
}

// Primary is the region homing everything outside the listed cells (and
// CockroachDB's primary region).
func (m *RegionMap) Primary() string { return m.primary }

// Regions returns the region names, sorted.
func (m *RegionMap) Regions() []string { return slices.Clone(m.names) }

// Has reports whether region is one of the map's regions.
func (m *RegionMap) Has(region string) bool {
	_, ok := m.fallback[region]
	return ok
}

// Fallback is the region that takes over region's partitions when it has no
// live matching worker; false when region has none (or is unknown).
func (m *RegionMap) Fallback(region string) (string, bool) {
	f := m.fallback[region]
	return f, f != ""
}

// FallbackChain is region followed by its fallbacks, in order, without
// repeats, at most MaxFallbackHops beyond region: where ownership looks for
// live workers. The slice is shared: do not modify it. (Ownership asks on
// every routed call; the chains are computed once.)
func (m *RegionMap) FallbackChain(region string) []string {
	if c, ok := m.chains[region]; ok {
		return c
	}
	return m.fallbackChain(region)
}

func (m *RegionMap) fallbackChain(region string) []string {
	chain := []string{region}
	for range MaxFallbackHops {
		next, ok := m.Fallback(chain[len(chain)-1])
		if !ok || slices.Contains(chain, next) {
			break
		}
		chain = append(chain, next)
	}
	return chain
}

// RegionOf returns the region homing p: the region of p's partition.
func (m *RegionMap) RegionOf(p geo.LatLng) (string, error) {
	if len(m.res) == 0 {
		return m.primary, p.Validate()
	}
	c, err := geo.CellAt(p, m.partRes)
	if err != nil {
		return "", err
	}
	return m.regionOfCell(c), nil
}

// RegionOfPartition returns the region homing the partition (an H3 cell at
// the partition resolution): the region listing one of its ancestors (or
// itself), else the primary. Parents are bit arithmetic, no H3 call.
func (m *RegionMap) RegionOfPartition(partition geo.Cell) string {
	return m.regionOfCell(partition)
}

func (m *RegionMap) regionOfCell(c geo.Cell) string {
	for _, r := range m.res {
		if r > c.Resolution() {
			continue
		}
		p, err := c.Parent(r)
		if err != nil {
			continue
		}
		if region, ok := m.cells[p]; ok {
			return region
		}
	}
	return m.primary
}

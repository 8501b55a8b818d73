package dispatch

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/geo"
)

// SurgeConfig configures [Surge].
type SurgeConfig struct {
	// Resolution of surge cells (default 8, ≈0.7 km²). Coarser than the
	// supply index so counts are not too noisy; Index.CellSupply counts a
	// coarser cell directly.
	Resolution int
	// Window is the sliding window demand and supply are counted over,
	// split into Buckets time buckets (defaults 10m, 10).
	Window  time.Duration
	Buckets int
	// Min and Max cap the multiplier (defaults 1.0, 3.0).
	Min, Max float64
	// Threshold is the demand/supply ratio at which surge starts; above it
	// the multiplier rises by Slope per unit of ratio (defaults 1.0, 0.5).
	Threshold, Slope float64
	// NeighborWeight in [0, 1] blends in the mean raw multiplier of the
	// cell's disk-1 neighbours, so adjacent cells do not differ wildly and
	// riders cannot walk one cell over for a much lower price (default 0.5).
	NeighborWeight float64
	// Step quantises multipliers (default 0.1).
	Step float64
	// Hysteresis: the published multiplier changes only when the target is
	// at least this far from it (default 0.2), and not sooner than MinHold
	// after its last change (default 1m). Prevents flapping.
	Hysteresis float64
	MinHold    time.Duration
}

// DefaultSurgeConfig returns the defaults.
func DefaultSurgeConfig() SurgeConfig {
	return SurgeConfig{
		Resolution: 8, Window: 10 * time.Minute, Buckets: 10, Min: 1, Max: 3,
		Threshold: 1, Slope: 0.5, NeighborWeight: 0.5, Step: 0.1, Hysteresis: 0.2, MinHold: time.Minute,
	}
}

// Validate checks the config.
func (c SurgeConfig) Validate() error {
	switch {
	case c.Resolution < 0 || c.Resolution > geo.MaxResolution:
		return fmt.Errorf("%w: surge resolution %d", ErrInvalidConfig, c.Resolution)
	case c.Window <= 0 || c.Buckets <= 0 || c.Buckets > 1440 || c.Window/time.Duration(c.Buckets) <= 0:
		return fmt.Errorf("%w: surge window %v / %d buckets", ErrInvalidConfig, c.Window, c.Buckets)
	case !(c.Min > 0) || !(c.Max >= c.Min) || math.IsInf(c.Max, 0):
		return fmt.Errorf("%w: surge cap %v..%v", ErrInvalidConfig, c.Min, c.Max)
	case !(c.Threshold >= 0) || !(c.Slope >= 0):
		return fmt.Errorf("%w: surge threshold %v slope %v", ErrInvalidConfig, c.Threshold, c.Slope)
	case !(c.NeighborWeight >= 0 && c.NeighborWeight <= 1):
		return fmt.Errorf("%w: neighbour weight %v", ErrInvalidConfig, c.NeighborWeight)
	case !(c.Step > 0):
		return fmt.Errorf("%w: surge step %v", ErrInvalidConfig, c.Step)
	case !(c.Hysteresis >= 0) || c.MinHold < 0:
		return fmt.Errorf("%w: hysteresis %v hold %v", ErrInvalidConfig, c.Hysteresis, c.MinHold)
	}
	return nil
}

// SurgeReading explains a cell's multiplier.
type SurgeReading struct {
	Cell       geo.Cell
	Demand     int     // requests in the window
	Supply     float64 // mean available drivers sampled in the window
	Ratio      float64 // Demand / max(Supply, 1)
	Raw        float64 // from the ratio alone, capped
	Target     float64 // blended with neighbours, quantised
	Multiplier float64 // published (after hysteresis): what fares use
}

type surgeCell struct {
	epoch     []int64 // bucket number held by each ring slot
	demand    []int32
	supply    []int32
	sampled   []bool
	published float64
	changedAt time.Time
	nbrs      []geo.Cell
}

// Surge tracks demand and supply per cell over a sliding window and turns
// their ratio into a price multiplier. Safe for concurrent use; time comes
// from the caller (now), so tests drive it deterministically.
type Surge struct {
	cfg     SurgeConfig
	width   time.Duration
	mu      sync.Mutex
	cells   map[geo.Cell]*surgeCell
	foreign map[geo.Cell]foreignReading
}

// foreignReading is a cell's raw multiplier as another tracker (the owner of
// the cell) computed it, used until its expiry.
type foreignReading struct {
	raw   float64
	until time.Time
}

// NewSurge builds an empty tracker.
func NewSurge(cfg SurgeConfig) (*Surge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Surge{cfg: cfg, width: cfg.Window / time.Duration(cfg.Buckets), cells: map[geo.Cell]*surgeCell{}, foreign: map[geo.Cell]foreignReading{}}, nil
}

func (s *Surge) check(c geo.Cell) error {
	if c.Resolution() != s.cfg.Resolution || !c.IsValid() {
		return fmt.Errorf("%w: cell %v, surge resolution %d", ErrResolution, c, s.cfg.Resolution)
	}
	return nil
}

func (s *Surge) cell(c geo.Cell) *surgeCell {
	sc := s.cells[c]
	if sc == nil {
		b := s.cfg.Buckets
		sc = &surgeCell{epoch: make([]int64, b), demand: make([]int32, b), supply: make([]int32, b), sampled: make([]bool, b)}
		for i := range sc.epoch {
			sc.epoch[i] = math.MinInt64
		}
		s.cells[c] = sc
	}
	return sc
}

func (s *Surge) slot(sc *surgeCell, now time.Time) int {
	n := now.UnixNano() / int64(s.width)
	i := int(((n % int64(len(sc.epoch))) + int64(len(sc.epoch))) % int64(len(sc.epoch)))
	if sc.epoch[i] != n {
		sc.epoch[i], sc.demand[i], sc.supply[i], sc.sampled[i] = n, 0, 0, false
	}
	return i
}

// RecordDemand counts one ride request (or quote) in cell c at now.
func (s *Surge) RecordDemand(c geo.Cell, now time.Time) error {
	if err := s.check(c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.cell(c)
	sc.demand[s.slot(sc, now)]++
	return nil
}

// RecordSupply records a sample of the available drivers in cell c (the
// latest sample in a time bucket wins; the window averages buckets).
func (s *Surge) RecordSupply(c geo.Cell, available int, now time.Time) error {
	if err := s.check(c); err != nil {
		return err
	}
	if available < 0 {
		return fmt.Errorf("%w: negative supply %d", ErrInvalidQuery, available)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.cell(c)
	i := s.slot(sc, now)
	sc.supply[i] = int32(min(available, math.MaxInt32))
	sc.sampled[i] = true
	return nil
}

// window returns demand and mean supply in the window ending at now.
func (s *Surge) window(sc *surgeCell, now time.Time) (int, float64) {
	cur := now.UnixNano() / int64(s.width)
	oldest := cur - int64(s.cfg.Buckets) + 1
	d, sup, ns := 0, 0.0, 0
	for i, e := range sc.epoch {
		if e < oldest || e > cur {
			continue
		}
		d += int(sc.demand[i])
		if sc.sampled[i] {
			sup += float64(sc.supply[i])
			ns++
		}
	}
	if ns > 0 {
		sup /= float64(ns)
	}
	return d, sup
}

func (s *Surge) raw(c geo.Cell, now time.Time) (int, float64, float64, float64) {
	sc := s.cells[c]
	if sc == nil {
		return 0, 0, 0, s.cfg.Min
	}
	d, sup := s.window(sc, now)
	ratio := float64(d) / math.Max(sup, 1)
	m := s.cfg.Min
	if ratio > s.cfg.Threshold {
		m = math.Min(s.cfg.Max, math.Max(s.cfg.Min, 1+s.cfg.Slope*(ratio-s.cfg.Threshold)))
	}
	return d, sup, ratio, m
}

// SetForeign records the raw multiplier of cell c as another tracker
// computed it from counts this one does not have (c lies in a partition
// another worker owns), valid before until. While valid, At blends it in
// wherever c is a neighbour, in place of this tracker's own counts for c;
// from until on, c reads from local counts again (for a cell owned
// elsewhere: none, the minimum). A cell's own multiplier never uses its
// foreign reading. raw is capped to [Min, Max].
func (s *Surge) SetForeign(c geo.Cell, raw float64, until time.Time) error {
	if err := s.check(c); err != nil {
		return err
	}
	if math.IsNaN(raw) || math.IsInf(raw, 0) {
		return fmt.Errorf("%w: foreign multiplier %v", ErrInvalidQuery, raw)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.foreign[c] = foreignReading{raw: math.Min(s.cfg.Max, math.Max(s.cfg.Min, raw)), until: until}
	return nil
}

// neighbourRaw is the raw multiplier of neighbour n at now: its valid
// foreign reading if any, else from local counts.
func (s *Surge) neighbourRaw(n geo.Cell, now time.Time) float64 {
	if f, ok := s.foreign[n]; ok && now.Before(f.until) {
		return f.raw
	}
	_, _, _, m := s.raw(n, now)
	return m
}

// Readings returns the raw reading (Demand, Supply, Ratio, Raw; no Target
// or Multiplier) at now of every cell this tracker counts, by cell: what
// it shares with the trackers of neighbouring cells. Foreign readings are
// not included.
func (s *Surge) Readings(now time.Time) []SurgeReading {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SurgeReading, 0, len(s.cells))
	for c := range s.cells {
		r := SurgeReading{Cell: c}
		r.Demand, r.Supply, r.Ratio, r.Raw = s.raw(c, now)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b SurgeReading) int { return cmp.Compare(a.Cell, b.Cell) })
	return out
}

// At returns the multiplier for cell c at now, updating the published value
// under the hysteresis rule.
func (s *Surge) At(c geo.Cell, now time.Time) (SurgeReading, error) {
	if err := s.check(c); err != nil {
		return SurgeReading{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.cell(c)
	if sc.nbrs == nil {
		nb, err := geo.Neighbors(c)
		if err != nil {
			return SurgeReading{}, err
		}
		sc.nbrs = nb
	}
	r := SurgeReading{Cell: c}
	r.Demand, r.Supply, r.Ratio, r.Raw = s.raw(c, now)
	blend := r.Raw
	if w := s.cfg.NeighborWeight; w > 0 && len(sc.nbrs) > 0 {
		sum := 0.0
		for _, n := range sc.nbrs {
			sum += s.neighbourRaw(n, now)
		}
		blend = (1-w)*r.Raw + w*sum/float64(len(sc.nbrs))
	}
	r.Target = math.Min(s.cfg.Max, math.Max(s.cfg.Min, math.Round(blend/s.cfg.Step)*s.cfg.Step))
	switch {
	case sc.published == 0:
		sc.published, sc.changedAt = r.Target, now
	case math.Abs(r.Target-sc.published) >= s.cfg.Hysteresis-1e-9 && now.Sub(sc.changedAt) >= s.cfg.MinHold:
		sc.published, sc.changedAt = r.Target, now
	}
	r.Multiplier = sc.published
	return r, nil
}

// Prune forgets cells with nothing in the window and no surge, and foreign
// readings past their expiry, bounding memory; the host calls it now and
// then. It returns how many it forgot.
func (s *Surge) Prune(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c, f := range s.foreign {
		if !now.Before(f.until) {
			delete(s.foreign, c)
			n++
		}
	}
	for c, sc := range s.cells {
		if d, sup := s.window(sc, now); d == 0 && sup == 0 && sc.published <= s.cfg.Min {
			delete(s.cells, c)
			n++
		}
	}
	return n
}

package console

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// activeStates are the states of a trip in flight: every state a trip can
// still leave (the trip service's vocabulary decides which).
var activeStates = func() []commonv1.TripState {
	var out []commonv1.TripState
	for v := range commonv1.TripState_name {
		if s := commonv1.TripState(v); s != commonv1.TripState_TRIP_STATE_UNSPECIFIED && !tripclient.IsTerminal(s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}()

// maxActiveTrips bounds the active trips a snapshot carries (the map's
// pickup → drop-off lines).
const maxActiveTrips = 500

// snapshot is the merged view of every matching worker at one moment.
type snapshot struct {
	Time                time.Time       `json:"time"`
	PartitionResolution int32           `json:"partition_resolution"`
	IndexResolution     int32           `json:"index_resolution"`
	Members             []memberJSON    `json:"members"`
	Partitions          []partitionJSON `json:"partitions"`
	Cells               []cellJSON      `json:"cells"`
	Drivers             []driverJSON    `json:"drivers"`
	DriversTruncated    bool            `json:"drivers_truncated"`
	// Flagged lists drivers whose samples their gateway refused as
	// implausible (asked of the gateways holding indexed drivers).
	Flagged     []flaggedJSON `json:"flagged"`
	ActiveTrips []*tripJSON   `json:"active_trips"`
	KPIs        kpisJSON      `json:"kpis"`
	// Errors lists the workers (or services) that did not answer; the rest
	// of the snapshot is still good.
	Errors []string `json:"errors"`
}

// workerStats sums the counters of every worker.
type workerStats struct {
	DriversAvailable int64 `json:"drivers_available"`
	DriversBusy      int64 `json:"drivers_busy"`
	Dispatches       int64 `json:"dispatches"`
	OffersSent       int64 `json:"offers_sent"`
	OffersAccepted   int64 `json:"offers_accepted"`
	OffersDeclined   int64 `json:"offers_declined"`
	OffersExpired    int64 `json:"offers_expired"`
	NoDriver         int64 `json:"no_driver"`
	InFlight         int64 `json:"in_flight"`
}

func (s *workerStats) add(w *matchingv1.WorkerStats) {
	s.DriversAvailable += int64(w.GetDriversAvailable())
	s.DriversBusy += int64(w.GetDriversBusy())
	s.Dispatches += w.GetDispatches()
	s.OffersSent += w.GetOffersSent()
	s.OffersAccepted += w.GetOffersAccepted()
	s.OffersDeclined += w.GetOffersDeclined()
	s.OffersExpired += w.GetOffersExpired()
	s.NoDriver += w.GetNoDriver()
	s.InFlight += int64(w.GetInFlight())
}

// what a gather asks for.
type want struct{ partitions, cells, drivers, trips bool }

var wantAll = want{partitions: true, cells: true, drivers: true, trips: true}

type workerAnswer struct {
	addr       string
	partitions *matchingv1.PartitionsResponse
	cells      *matchingv1.CellStatsResponse
	drivers    *matchingv1.ListDriversResponse
	errs       []error
}

// gather asks every matching worker (and the trip service for active trips)
// in parallel and merges the answers. It fails only when no worker answers.
func (c *Console) gather(ctx context.Context, p auth.Principal, w want) (*snapshot, error) {
	ctx, cancel := c.callContext(ctx, p)
	defer cancel()
	members := c.deps.Matching.Members()
	answers := make([]workerAnswer, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		answers[i].addr = m.Address
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = c.askWorker(ctx, m.Address, w)
		}()
	}
	var (
		active  []*commonv1.Trip
		tripErr error
	)
	if w.trips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.deps.Trips.ListTrips(ctx, &tripv1.ListTripsRequest{States: activeStates, PageSize: maxActiveTrips})
			active, tripErr = resp.GetTrips(), err
		}()
	}
	wg.Wait()

	s := &snapshot{Time: c.now().UTC(), Members: []memberJSON{}, Partitions: []partitionJSON{}, Cells: []cellJSON{},
		Drivers: []driverJSON{}, ActiveTrips: []*tripJSON{}, Errors: []string{}, Flagged: []flaggedJSON{}}
	var stats workerStats
	seenMember := map[string]bool{}
	seenDriver := map[string]bool{}
	answered := 0
	var firstErr error
	for _, a := range answers {
		if len(a.errs) > 0 {
			for _, err := range a.errs {
				s.Errors = append(s.Errors, fmt.Sprintf("%s: %s", a.addr, errorMessage(err)))
			}
			firstErr = cmp.Or(firstErr, a.errs[0])
		}
		if a.partitions == nil && a.cells == nil && a.drivers == nil {
			continue
		}
		answered++
		if pr := a.partitions; pr != nil {
			s.PartitionResolution, s.IndexResolution = pr.GetPartitionResolution(), pr.GetIndexResolution()
			for _, m := range pr.GetMembers() {
				if !seenMember[m.GetId()] {
					seenMember[m.GetId()] = true
					s.Members = append(s.Members, memberJSON{ID: m.GetId(), Address: m.GetAddress()})
				}
			}
			for _, po := range pr.GetPartitions() {
				s.Partitions = append(s.Partitions, partitionJSON{
					ID: po.GetPartition(), Owner: memberJSON{ID: po.GetOwner().GetId(), Address: po.GetOwner().GetAddress()},
					Drivers: po.GetIndexedDrivers(), Boundary: c.bounds.get(po.GetPartition()),
				})
			}
			stats.add(pr.GetStats())
		}
		for _, cs := range a.cells.GetCells() {
			s.Cells = append(s.Cells, cellJSON{
				ID: cs.GetCell(), SupplyAvailable: cs.GetSupplyAvailable(), SupplyBusy: cs.GetSupplyBusy(),
				Demand: cs.GetDemand(), Surge: cs.GetSurgeMultiplier(), Boundary: c.bounds.get(cs.GetCell()),
			})
		}
		s.DriversTruncated = s.DriversTruncated || a.drivers.GetTruncated()
		for _, d := range a.drivers.GetDrivers() {
			dj := driverOf(d)
			// A driver crossing a border may show on two workers for a moment.
			if seenDriver[dj.ID] {
				continue
			}
			seenDriver[dj.ID] = true
			s.Drivers = append(s.Drivers, dj)
		}
	}
	if answered == 0 && len(members) > 0 {
		return nil, firstErr
	}
	if len(members) == 0 {
		s.Errors = append(s.Errors, "no matching worker is known")
	}
	if tripErr != nil {
		s.Errors = append(s.Errors, "trips: "+errorMessage(tripErr))
	}
	slices.SortFunc(s.Members, func(a, b memberJSON) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Partitions, func(a, b partitionJSON) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Cells, func(a, b cellJSON) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Drivers, func(a, b driverJSON) int { return cmp.Compare(a.ID, b.ID) })
	if w.drivers {
		c.addFlagged(ctx, s)
	}
	s.ActiveTrips = append(s.ActiveTrips, tripsOf(active)...)
	s.KPIs = c.kpis.compute(c.now())
	s.KPIs.Workers = stats
	s.KPIs.DriversOnline = stats.DriversAvailable + stats.DriversBusy
	s.KPIs.DriversBusy = stats.DriversBusy
	return s, nil
}

func (c *Console) askWorker(ctx context.Context, addr string, w want) workerAnswer {
	a := workerAnswer{addr: addr}
	mc, err := c.deps.Matching.At(addr)
	if err != nil {
		a.errs = append(a.errs, err)
		return a
	}
	// Partitions carries the counters the KPIs need: always ask.
	if a.partitions, err = mc.Partitions(ctx, &matchingv1.PartitionsRequest{}); err != nil {
		a.errs = append(a.errs, err)
	}
	if w.cells {
		if a.cells, err = mc.CellStats(ctx, &matchingv1.CellStatsRequest{}); err != nil {
			a.errs = append(a.errs, err)
		}
	}
	if w.drivers {
		if a.drivers, err = mc.ListDrivers(ctx, &matchingv1.ListDriversRequest{Limit: int32(c.cfg.MaxDrivers)}); err != nil {
			a.errs = append(a.errs, err)
		}
	}
	return a
}

// boundaryCache keeps cell boundaries (they never change) up to a bound.
type boundaryCache struct {
	mu    sync.Mutex
	max   int
	rings map[string][][2]float64
}

func newBoundaryCache(max int) *boundaryCache {
	return &boundaryCache{max: max, rings: map[string][][2]float64{}}
}

// get returns the closed ring of [lat, lng] pairs of an H3 cell (nil for a
// string that is not one).
func (b *boundaryCache) get(cell string) [][2]float64 {
	b.mu.Lock()
	r, ok := b.rings[cell]
	b.mu.Unlock()
	if ok {
		return r
	}
	r = boundaryOf(cell)
	b.mu.Lock()
	if len(b.rings) >= b.max {
		clear(b.rings)
	}
	b.rings[cell] = r
	b.mu.Unlock()
	return r
}

func boundaryOf(cell string) [][2]float64 {
	c, err := geo.ParseCell(cell)
	if err != nil || !c.IsValid() {
		return nil
	}
	pts, err := c.Boundary()
	if err != nil || len(pts) == 0 {
		return nil
	}
	ring := make([][2]float64, 0, len(pts)+1)
	for _, p := range pts {
		ring = append(ring, [2]float64{round6(p.Lat), round6(p.Lng)})
	}
	return append(ring, ring[0])
}

// addFlagged asks every gateway holding an indexed driver for the drivers
// it flagged, and marks them on the map.
func (c *Console) addFlagged(ctx context.Context, s *snapshot) {
	gateways := map[string]bool{}
	for _, d := range s.Drivers {
		if d.Gateway != "" {
			gateways[d.Gateway] = true
		}
	}
	flagged := map[string]bool{}
	for addr := range gateways {
		drivers, err := c.deps.Drivers.ListFlagged(ctx, addr, 200)
		if err != nil {
			s.Errors = append(s.Errors, fmt.Sprintf("gateway %s: %s", addr, errorMessage(err)))
			continue
		}
		for _, f := range drivers {
			flagged[f.GetDriverId()] = true
			s.Flagged = append(s.Flagged, flaggedJSON{ID: f.GetDriverId(), Refused: f.GetRefusedSamples(),
				Reason: f.GetLastReason(), At: tsPtr(f.GetLastRefusedAt()), Gateway: addr})
		}
	}
	slices.SortFunc(s.Flagged, func(a, b flaggedJSON) int { return cmp.Compare(a.ID, b.ID) })
	for i := range s.Drivers {
		s.Drivers[i].Flagged = flagged[s.Drivers[i].ID]
	}
}

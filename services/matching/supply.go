package matching

import (
	"sync"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// supply owns this worker's live supply: the index of its drivers and the
// offers out to them. It is the only writer of a driver's position and
// status (TestSupplyOwnsTheIndex holds the rest of the package to that):
// the gateways' location batches and departures, an offer going out and
// coming back, an assignment, silence, and partitions moving away. Since
// one place decides a driver's status, a location update cannot put a
// driver with an offer out back into other searches.
type supply struct {
	index        *dispatch.Index
	partitionRes int

	// mu orders the writes that decide a driver's status: an offer going
	// out (reserve) and a location batch (apply) cannot interleave, so a
	// batch that read "no offer out" cannot index the driver available
	// after reserve marked it busy.
	mu       sync.Mutex
	offering map[string]string // driver id → trip id of the offer out to it

	// chain (nil: chained supply off) indexes the finishing drivers, those
	// carrying a rider with no next trip, at the dropoffs of their rides:
	// a search near a pickup finds the rides that end near it. rides says
	// which ride each is finishing. Both change under mu with the index.
	chain *dispatch.Index
	rides map[string]finishingRide
	// followed holds, per driver given its next trip here, the ride that
	// trip follows, until the driver's gateway reports it busy: a
	// finishing location sent before the assignment must not put the
	// driver back into the chained searches.
	followed map[string]string
}

// finishingRide is the ride a finishing driver is on.
type finishingRide struct {
	tripID  string
	dropoff geo.LatLng
}

// newSupply builds an empty supply: an index with indexCfg on clock, whose
// drivers fall in partitions of resolution partitionRes.
func newSupply(indexCfg dispatch.IndexConfig, partitionRes int, clock dispatch.Clock, chained bool) (*supply, error) {
	index, err := dispatch.NewIndex(indexCfg, clock)
	if err != nil {
		return nil, err
	}
	s := &supply{index: index, partitionRes: partitionRes, offering: map[string]string{}}
	if chained {
		if s.chain, err = dispatch.NewIndex(indexCfg, clock); err != nil {
			return nil, err
		}
		s.rides, s.followed = map[string]finishingRide{}, map[string]string{}
	}
	return s, nil
}

// apply records a batch from a gateway: locs are its locations in
// partitions this worker owns (the caller routes the rest to their
// owners), departures the drivers that left a partition. It returns how
// many locations the index took.
func (s *supply) apply(locs []*matchingv1.DriverLocation, departures []*matchingv1.DriverDeparture) int {
	accepted := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, loc := range locs {
		st := statusOf(loc.GetStatus())
		if st == dispatch.StatusOffline {
			s.index.Remove(loc.GetDriverId())
			s.unchain(loc.GetDriverId())
			delete(s.followed, loc.GetDriverId())
			continue
		}
		_, offered := s.offering[loc.GetDriverId()]
		if st == dispatch.StatusAvailable && offered {
			// An offer is out to this driver: keep it out of other searches.
			st = dispatch.StatusBusy
		}
		err := s.index.Upsert(dispatch.Location{
			DriverID: loc.GetDriverId(),
			Pos:      latLng(loc.GetPosition()),
			Heading:  float64(loc.GetHeadingDeg()),
			Speed:    float64(loc.GetSpeedMps()),
			Product:  loc.GetProduct().Key(),
			Status:   st,
			Gateway:  loc.GetGatewayAddress(),
			At:       loc.GetRecordedAt().AsTime(),
		})
		if err != nil {
			continue
		}
		accepted++
		if s.chain == nil {
			continue
		}
		finishing := loc.GetStatus() == matchingv1.DriverStatus_DRIVER_STATUS_FINISHING && loc.GetDropoff() != nil && loc.GetRideTripId() != ""
		if !finishing {
			delete(s.followed, loc.GetDriverId())
		}
		if !finishing || s.followed[loc.GetDriverId()] == loc.GetRideTripId() {
			s.unchain(loc.GetDriverId())
			continue
		}
		ride := finishingRide{tripID: loc.GetRideTripId(), dropoff: latLng(loc.GetDropoff())}
		chainSt := dispatch.StatusAvailable
		if offered {
			chainSt = dispatch.StatusBusy
		}
		if s.chain.Upsert(dispatch.Location{
			DriverID: loc.GetDriverId(), Pos: ride.dropoff, Heading: -1, Product: loc.GetProduct().Key(),
			Status: chainSt, Gateway: loc.GetGatewayAddress(), At: loc.GetRecordedAt().AsTime(),
		}) == nil {
			s.rides[loc.GetDriverId()] = ride
		} else {
			s.unchain(loc.GetDriverId())
		}
	}
	for _, dep := range departures {
		partition, err := matchingapi.ParsePartition(dep.GetPartition())
		if err != nil {
			continue
		}
		// Remove only if the indexed entry is still in the partition left; a
		// newer location in another partition of ours must stay.
		if d, ok := s.index.Get(dep.GetDriverId()); ok {
			if p, err := matchingapi.PartitionOfCell(d.Cell, s.partitionRes); err == nil && p == partition {
				s.index.Remove(dep.GetDriverId())
				s.unchain(dep.GetDriverId())
			}
		}
	}
	return accepted
}

// reserve holds the driver for trip's offer: no other dispatch on this
// worker offers it meanwhile, and it is busy to searches (its next
// location update keeps it so). errDriverBusy if another trip holds it.
func (s *supply) reserve(driverID, tripID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, busy := s.offering[driverID]; busy && other != tripID {
		return errDriverBusy
	}
	s.offering[driverID] = tripID
	_ = s.index.SetStatus(driverID, dispatch.StatusBusy)
	if s.chain != nil {
		_ = s.chain.SetStatus(driverID, dispatch.StatusBusy)
	}
	return nil
}

// release ends the reservation of a driver; available puts it back into
// searches at once (otherwise its next location update does).
func (s *supply) release(driverID string, available bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.offering, driverID)
	if !available {
		return
	}
	if _, finishing := s.rides[driverID]; finishing {
		// Still carrying its rider: free for another next trip only.
		_ = s.chain.SetStatus(driverID, dispatch.StatusAvailable)
		return
	}
	_ = s.index.SetStatus(driverID, dispatch.StatusAvailable)
}

// assigned marks a driver busy once a trip is committed to it, without
// waiting for its next location update; a finishing driver has its next
// trip now and leaves the chained searches.
func (s *supply) assigned(driverID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.index.SetStatus(driverID, dispatch.StatusBusy)
	if ride, ok := s.rides[driverID]; ok {
		s.followed[driverID] = ride.tripID
	}
	s.unchain(driverID)
}

// unchain drops a driver from the chained searches. s.mu held.
func (s *supply) unchain(driverID string) {
	if s.chain == nil {
		return
	}
	if _, ok := s.rides[driverID]; ok {
		delete(s.rides, driverID)
		s.chain.Remove(driverID)
	}
}

// finishingNear returns the finishing drivers not on offer whose rides end
// nearest q.Pos (q as for nearest; its statuses are ignored), where they
// are now and their rides. None when chained supply is off.
func (s *supply) finishingNear(q dispatch.Query) ([]dispatch.Finishing, error) {
	if s.chain == nil {
		return nil, nil
	}
	q.AnyStatus = false
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.chain.Nearest(q)
	if err != nil {
		return nil, err
	}
	out := make([]dispatch.Finishing, 0, len(cs))
	for _, c := range cs {
		ride, ok := s.rides[c.ID]
		d, indexed := s.index.Get(c.ID)
		if !ok || !indexed {
			s.unchain(c.ID) // expired or moved away since
			continue
		}
		out = append(out, dispatch.Finishing{
			Candidate: dispatch.Candidate{Driver: d, Distance: geo.Distance(d.Pos, ride.dropoff)},
			Dropoff:   ride.dropoff,
			Ride:      ride.tripID,
		})
	}
	return out, nil
}

// expire drops the drivers silent for longer than the index's TTL as of
// now, in place (no copy of the index).
func (s *supply) expire(now time.Time) int {
	n := s.index.Expire(now)
	if s.chain != nil {
		s.mu.Lock()
		s.chain.Expire(now)
		for id := range s.rides {
			if _, ok := s.chain.Get(id); !ok {
				delete(s.rides, id)
			}
		}
		for id := range s.followed {
			if _, ok := s.index.Get(id); !ok {
				delete(s.followed, id)
			}
		}
		s.mu.Unlock()
	}
	return n
}

// dropForeign removes the drivers of partitions this worker no longer owns
// (owned says which it does) after a membership change; their new owners
// refill from the next samples. It returns how many drivers and partitions
// it dropped. It walks the cells holding drivers (no copy of the index)
// and removes whole cells of the partitions that moved away.
func (s *supply) dropForeign(owned func(matchingapi.Partition) bool) (int, int) {
	var foreign []geo.Cell
	moved := map[matchingapi.Partition]bool{}
	s.index.EachCellSupply(func(c geo.Cell, _ dispatch.SupplyCount) {
		p, err := matchingapi.PartitionOfCell(c, s.partitionRes)
		if err != nil || owned(p) {
			return
		}
		moved[p] = true
		foreign = append(foreign, c)
	})
	if len(foreign) == 0 {
		return 0, 0
	}
	return s.index.RemoveCells(foreign), len(moved)
}

// nearest searches the local index.
func (s *supply) nearest(q dispatch.Query) ([]dispatch.Candidate, error) {
	return s.index.Nearest(q)
}

// driver returns an indexed driver.
func (s *supply) driver(id string) (dispatch.Driver, bool) {
	return s.index.Get(id)
}

// cellSupply counts the drivers per status in a cell (index resolution or
// coarser) from the per-cell counters.
func (s *supply) cellSupply(c geo.Cell, product string) (dispatch.SupplyCount, error) {
	return s.index.CellSupply(c, product)
}

// eachCellSupply calls fn for every index cell holding drivers, with its
// counts; no driver is visited.
func (s *supply) eachCellSupply(fn func(c geo.Cell, n dispatch.SupplyCount)) {
	s.index.EachCellSupply(fn)
}

// driversByID returns the limit indexed drivers with the smallest ids and
// whether there are more.
func (s *supply) driversByID(limit int) ([]dispatch.Driver, bool) {
	return s.index.DriversByID(limit)
}

package matching

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// search finds the drivers nearest a point across partition borders: this
// worker's supply answers for the partitions it owns, their owners (asked
// in parallel, local only) for the others. It owns the cache of partition
// shapes the border walk reads.
type search struct {
	supply      localSupply
	owners      ownership
	peers       *dial.Pool    // dials the other partitions' owners
	ttl         time.Duration // drivers silent longer are not candidates
	callTimeout time.Duration
	logger      *slog.Logger

	shapes sync.Map // matchingapi.Partition → *partitionShape
}

// localSupply is what search reads of this worker's supply.
type localSupply interface {
	// nearest searches the local index.
	nearest(q dispatch.Query) ([]dispatch.Candidate, error)
	// driver returns an indexed driver.
	driver(id string) (dispatch.Driver, bool)
}

var _ localSupply = (*supply)(nil)

// nearbyQuery is a search for candidates around a point.
type nearbyQuery struct {
	centre geo.LatLng
	// partition holds centre (computed once by the caller; zero: compute).
	partition   matchingapi.Partition
	radius      float64
	limit       int
	product     string
	includeBusy bool
	exclude     map[string]struct{}
	driverIDs   []string
	localOnly   bool
}

// find answers a search from the local supply and, unless localOnly, from
// the owners of every other partition within the radius; the answer is the
// nearest limit drivers overall (ties by id), as if one index held them all.
func (s *search) find(ctx context.Context, q nearbyQuery) ([]dispatch.Candidate, error) {
	local, err := s.local(q)
	if err != nil {
		return nil, err
	}
	if q.localOnly || s.owners.alone() {
		return local, nil
	}
	var targets []string
	if len(q.driverIDs) > 0 {
		r, _ := s.owners.membership.Ring()
		for _, m := range r.Members() {
			if m.ID != s.owners.self.ID {
				targets = append(targets, m.Address)
			}
		}
	} else {
		if q.partition == 0 {
			if q.partition, err = s.owners.partitionOf(q.centre); err != nil {
				return nil, err
			}
		}
		partitions, err := s.partitionsWithin(q.centre, q.partition, q.radius)
		if err != nil {
			return nil, err
		}
		for _, p := range partitions {
			if m, found, mine := s.owners.owner(p); found && !mine && !slices.Contains(targets, m.Address) {
				targets = append(targets, m.Address)
			}
		}
	}
	if len(targets) == 0 {
		return local, nil
	}
	req := &matchingv1.NearbyDriversRequest{
		Center:       toProtoLatLng(q.centre),
		RadiusMeters: q.radius,
		Limit:        int32(q.limit),
		Product:      commonv1.ProductOfKey(q.product),
		IncludeBusy:  q.includeBusy,
		LocalOnly:    true,
		DriverIds:    q.driverIDs,
	}
	type answer struct {
		drivers []*matchingv1.NearbyDriver
		err     error
	}
	answers := make(chan answer, len(targets))
	for _, addr := range targets {
		go func() {
			cc, err := s.peers.Get(addr)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
			defer cancel()
			resp, err := matchingv1.NewMatchingServiceClient(cc).NearbyDrivers(cctx, req)
			answers <- answer{drivers: resp.GetDrivers(), err: err}
		}()
	}
	merged := local
	for range targets {
		a := <-answers
		if a.err != nil {
			// A neighbour that cannot answer shrinks the pool; it must not
			// fail the search.
			s.logger.WarnContext(ctx, "neighbour search failed", "err", a.err)
			continue
		}
		for _, d := range a.drivers {
			if _, skip := q.exclude[d.GetPosition().GetDriverId()]; skip {
				continue
			}
			merged = append(merged, candidateOf(d))
		}
	}
	return mergeCandidates(merged, q.limit), nil
}

// mergeCandidates de-duplicates by driver (the fresher entry wins: a driver
// may linger on an old owner for a moment) and keeps the nearest limit.
func mergeCandidates(cs []dispatch.Candidate, limit int) []dispatch.Candidate {
	best := map[string]dispatch.Candidate{}
	for _, c := range cs {
		if old, ok := best[c.ID]; !ok || c.Seen.After(old.Seen) {
			best[c.ID] = c
		}
	}
	out := make([]dispatch.Candidate, 0, len(best))
	for _, c := range best {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b dispatch.Candidate) int {
		switch {
		case a.Distance < b.Distance:
			return -1
		case a.Distance > b.Distance:
			return 1
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func candidateOf(d *matchingv1.NearbyDriver) dispatch.Candidate {
	p := d.GetPosition()
	return dispatch.Candidate{
		Driver: dispatch.Driver{
			ID:      p.GetDriverId(),
			Pos:     latLng(p.GetPosition()),
			Heading: float64(p.GetHeadingDeg()),
			Speed:   float64(p.GetSpeedMps()),
			Product: d.GetProduct().Key(),
			Status:  statusOf(d.GetStatus()),
			Gateway: d.GetGatewayAddress(),
			Seen:    p.GetRecordedAt().AsTime(),
		},
		Distance: d.GetDistanceMeters(),
	}
}

// local answers a search from this worker's supply alone: the drivers
// named, or the nearest within the radius (any status and age for the
// console's includeBusy view).
func (s *search) local(q nearbyQuery) ([]dispatch.Candidate, error) {
	if len(q.driverIDs) > 0 {
		var out []dispatch.Candidate
		for _, id := range q.driverIDs {
			if d, ok := s.supply.driver(id); ok {
				out = append(out, dispatch.Candidate{Driver: d, Distance: geo.Distance(q.centre, d.Pos)})
			}
		}
		return mergeCandidates(out, q.limit), nil
	}
	query := dispatch.Query{
		Pos:       q.centre,
		K:         q.limit,
		MaxRadius: q.radius,
		Product:   q.product,
		MaxAge:    s.ttl,
		Exclude:   q.exclude,
	}
	if q.includeBusy {
		// The console's view: every status, however recent the last
		// update; the same cell search, so only cells within the radius
		// are read.
		query.AnyStatus, query.MaxAge = true, 0
	}
	cs, err := s.supply.nearest(query)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidSearch, err)
	}
	return cs, nil
}

// partitionsWithin returns the partitions that have a point within radius
// metres of centre (breadth-first over neighbours, pruned by the exact
// minimum distance to each partition cell).
func (s *search) partitionsWithin(centre geo.LatLng, start matchingapi.Partition, radius float64) ([]matchingapi.Partition, error) {
	seen := map[matchingapi.Partition]bool{start: true}
	out := []matchingapi.Partition{start}
	for queue := []matchingapi.Partition{start}; len(queue) > 0; queue = queue[1:] {
		shape, err := s.shapeOf(queue[0])
		if err != nil {
			return nil, err
		}
		for _, n := range shape.neighbours {
			if seen[n] {
				continue
			}
			seen[n] = true
			g, err := s.shapeOf(n)
			if err != nil {
				return nil, err
			}
			if g.geometry.MinDistance(centre) <= radius {
				out = append(out, n)
				queue = append(queue, n)
			}
		}
	}
	return out, nil
}

// partitionShape is a partition's geometry and neighbours, computed once
// (each is an H3 call through cgo; a search walks several per query).
type partitionShape struct {
	geometry   geo.CellGeometry
	neighbours []matchingapi.Partition
}

// shapeOf returns p's shape from the cache, computing it on first use. The
// cache holds the partitions searches reach: those of the area served.
func (s *search) shapeOf(p matchingapi.Partition) (*partitionShape, error) {
	if v, ok := s.shapes.Load(p); ok {
		return v.(*partitionShape), nil
	}
	g, err := geo.Geometry(p.Cell())
	if err != nil {
		return nil, err
	}
	cells, err := geo.Neighbors(p.Cell())
	if err != nil {
		return nil, err
	}
	shape := &partitionShape{geometry: g, neighbours: make([]matchingapi.Partition, len(cells))}
	for i, c := range cells {
		shape.neighbours[i] = matchingapi.Partition(c)
	}
	v, _ := s.shapes.LoadOrStore(p, shape)
	return v.(*partitionShape), nil
}

package matching

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/ring"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// Engine is one matching worker, behind the gRPC handler: the composition
// of its parts, each the one owner of its facts. supply owns the drivers'
// positions and statuses and the offers out to them; search finds drivers
// across partition borders, reading supply through localSupply; the
// dispatch host (host) runs the per-trip and per-window state machines on
// the injected clock and asks Engine for their I/O (hostIO); recovery
// finds orphaned trips and hands them to the host (redispatcher). Engine
// itself answers the RPCs, does the host's I/O, samples surge and runs the
// background loops.
type Engine struct {
	cfg       Config
	ownership // who owns which partition, as the membership says
	supply    *supply
	nearby    *search
	recovery  *recovery

	peers      *dial.Pool
	drivers    *driverclient.Client
	trips      *tripclient.Client
	logger     *slog.Logger
	clock      dispatch.TimerClock
	roads      dispatch.RoadETA
	scorer     *dispatch.ETAScorer
	surge      *dispatch.Surge
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	metrics    engineMetrics

	stats counters

	border  surgeBorder // border surge cells' neighbouring partitions
	sharing atomic.Bool // a tick's surge readings are on their way to peers

	wg      sync.WaitGroup  // the dispatch host's I/O in flight
	mu      sync.Mutex      // guards baseCtx
	baseCtx context.Context // dispatches run under it; cancelled by Run's end

	host *host // the dispatches in flight, greedy or batched
}

// Deps are the engine's collaborators.
type Deps struct {
	Membership ring.Membership
	// Peers dials other matching workers (by the addresses membership
	// lists) for searches that cross partition borders.
	Peers *dial.Pool
	// Drivers pushes offers to the gateway holding each driver's stream.
	Drivers *driverclient.Client
	Trips   *tripclient.Client
	Logger  *slog.Logger
	// Clock tells the time and runs the dispatch timers (offer timeouts,
	// batch windows, deadlines); nil: the wall clock.
	Clock dispatch.TimerClock
	// Roads gives pickup drive times from the road network (nil: the
	// straight-line estimate); ranking and NearbyDrivers' ETAs use it.
	Roads dispatch.RoadETA
	// Tracer, Meter and Propagator are the process's telemetry (nil: none).
	Tracer     trace.TracerProvider
	Meter      metric.MeterProvider
	Propagator propagation.TextMapPropagator
}

// NewEngine builds a worker. Run must be running for dispatches, recovery,
// expiry and partition hand-over to happen.
func NewEngine(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withTopology()
	if deps.Clock == nil {
		deps.Clock = dispatch.SystemClock{}
	}
	supply, err := newSupply(cfg.Index, cfg.Topology.PartitionResolution, deps.Clock, cfg.ChainWithin > 0)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:       cfg,
		ownership: ownership{membership: deps.Membership, self: cfg.Self, partitionRes: cfg.Topology.PartitionResolution},
		supply:    supply,
		peers:     deps.Peers,
		drivers:   deps.Drivers,
		trips:     deps.Trips,
		logger:    deps.Logger,
		clock:     deps.Clock,
		roads:     deps.Roads,
		baseCtx:   context.Background(),
	}
	e.nearby = &search{
		supply: supply, owners: e.ownership, peers: deps.Peers, ttl: cfg.Index.TTL,
		callTimeout: cfg.CallTimeout, logger: deps.Logger,
	}
	e.recovery = &recovery{
		cfg: recoveryConfigOf(cfg), owners: e.ownership, trips: deps.Trips, dispatches: e,
		clock: e.clock, logger: deps.Logger,
	}
	if err := e.initDispatch(); err != nil {
		return nil, err
	}
	e.host = newHost(e, e.clock, e.goJob, hostConfig{
		mode: cfg.Mode, window: cfg.BatchWindow, offerTimeout: cfg.OfferTimeout,
		maxRadius: cfg.MaxSearchRadiusM, candidates: cfg.BatchCandidates, followUp: cfg.BatchFollowUp,
		windowMax: cfg.BatchWindowMax, windowLoad: cfg.BatchWindowLoad,
		holdPickup: cfg.BatchHoldPickup, holdMax: cfg.BatchHoldMax, longPickup: cfg.BatchLongPickup,
		cascade: e.cascadeConfig,
	})
	if err := e.initTelemetry(deps); err != nil {
		return nil, err
	}
	return e, nil
}

// goJob runs one of the dispatch host's I/O jobs; Run waits for them.
func (e *Engine) goJob(job func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		job()
	}()
}

// baseContext is the context dispatches run under.
func (e *Engine) baseContext() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.baseCtx
}

// Ingest applies one batch: supply takes the locations in owned partitions
// and the departures, the rest come back grouped by owner.
func (e *Engine) Ingest(req *matchingv1.IngestLocationsRequest) *matchingv1.IngestLocationsResponse {
	resp := &matchingv1.IngestLocationsResponse{BatchSeq: req.GetBatchSeq()}
	notOwned := map[string]*matchingv1.NotOwnedLocations{}
	owned := make([]*matchingv1.DriverLocation, 0, len(req.GetLocations()))
	for _, loc := range req.GetLocations() {
		pos := latLng(loc.GetPosition())
		partition, err := e.partitionOf(pos)
		if err != nil {
			continue
		}
		m, found, mine := e.owner(partition)
		if !mine {
			if !found {
				continue
			}
			group, ok := notOwned[m.ID]
			if !ok {
				group = &matchingv1.NotOwnedLocations{Owner: &commonv1.NotOwner{Partition: partition.String(), OwnerId: m.ID, OwnerAddress: m.Address}}
				notOwned[m.ID] = group
			}
			group.Locations = append(group.Locations, loc)
			continue
		}
		owned = append(owned, loc)
	}
	resp.Accepted = int32(e.supply.apply(owned, req.GetDepartures()))
	for _, g := range notOwned {
		resp.NotOwned = append(resp.NotOwned, g)
	}
	return resp
}

// NearbyDrivers answers a search for drivers around a point. It must come
// to the point's owner, unless it names the drivers or is a peer's
// local-only part of a search that crosses partition borders.
func (e *Engine) NearbyDrivers(ctx context.Context, req *matchingv1.NearbyDriversRequest) (*matchingv1.NearbyDriversResponse, error) {
	centre := latLng(req.GetCenter())
	if !req.GetLocalOnly() && len(req.GetDriverIds()) == 0 {
		if _, err := e.checkOwner(centre); err != nil {
			return nil, err
		}
	}
	cs, err := e.nearby.find(ctx, nearbyQuery{
		centre:      centre,
		radius:      req.GetRadiusMeters(),
		limit:       int(req.GetLimit()),
		product:     req.GetProduct().Key(),
		includeBusy: req.GetIncludeBusy(),
		driverIDs:   req.GetDriverIds(),
		localOnly:   req.GetLocalOnly(),
	})
	if err != nil {
		return nil, err
	}
	return &matchingv1.NearbyDriversResponse{Drivers: e.nearbyToProto(centre, cs)}, nil
}

// nearbyToProto renders candidates for the API.
func (e *Engine) nearbyToProto(centre geo.LatLng, cs []dispatch.Candidate) []*matchingv1.NearbyDriver {
	out := make([]*matchingv1.NearbyDriver, len(cs))
	etas := e.etas(centre, cs)
	for i, c := range cs {
		out[i] = driverToProto(c.Driver)
		out[i].DistanceMeters = c.Distance
		out[i].Eta = durationpb.New(etas[i].Parts.ETA)
	}
	return out
}

// driverToProto renders an indexed driver (no distance or ETA).
func driverToProto(d dispatch.Driver) *matchingv1.NearbyDriver {
	return &matchingv1.NearbyDriver{
		Position: &commonv1.DriverPosition{
			DriverId:   d.ID,
			Position:   toProtoLatLng(d.Pos),
			HeadingDeg: headingOrZero(d.Heading),
			SpeedMps:   float32(d.Speed),
			RecordedAt: timestamppb.New(d.Seen),
		},
		Status:         statusToProto(d.Status),
		Product:        commonv1.ProductOfKey(d.Product),
		GatewayAddress: d.Gateway,
	}
}

func headingOrZero(h float64) float32 {
	if h != h || h < 0 {
		return 0
	}
	return float32(h)
}

// Partitions reports the partition map as this worker sees it.
func (e *Engine) Partitions() *matchingv1.PartitionsResponse {
	r, _ := e.membership.Ring()
	resp := &matchingv1.PartitionsResponse{
		PartitionResolution: int32(e.cfg.Topology.PartitionResolution),
		IndexResolution:     int32(e.cfg.Index.Resolution),
		Self:                &matchingv1.Member{Id: e.cfg.Self.ID, Address: e.cfg.Self.Address},
		DriverTtl:           durationpb.New(e.cfg.Index.TTL),
	}
	perPartition, total := e.partitionSupply()
	resp.Stats = e.workerStats(total)
	for _, m := range r.Members() {
		resp.Members = append(resp.Members, &matchingv1.Member{Id: m.ID, Address: m.Address})
	}
	for p, n := range perPartition {
		owner, _ := r.Owner(p.RoutingKey())
		resp.Partitions = append(resp.Partitions, &matchingv1.PartitionOwner{
			Partition:      p.String(),
			Owner:          &matchingv1.Member{Id: owner.ID, Address: owner.Address},
			IndexedDrivers: int32(n),
		})
	}
	slices.SortFunc(resp.Partitions, func(a, b *matchingv1.PartitionOwner) int {
		if a.Partition < b.Partition {
			return -1
		}
		if a.Partition > b.Partition {
			return 1
		}
		return 0
	})
	return resp
}

// Run runs the worker's background loops until ctx ends, then waits for the
// dispatches in flight to stop.
func (e *Engine) Run(ctx context.Context) {
	e.mu.Lock()
	e.baseCtx = ctx
	e.mu.Unlock()
	if e.cfg.Mode == ModeBatched {
		e.logger.Info("dispatching in batches", "mode", e.cfg.Mode, "window", e.cfg.BatchWindow.String(), "window_max", e.cfg.BatchWindowMax.String(), "follow_up", e.cfg.BatchFollowUp.String(), "candidates", e.cfg.BatchCandidates, "hold_pickup", e.cfg.BatchHoldPickup.String(), "hold_max", e.cfg.BatchHoldMax.String(), "long_pickup", e.cfg.BatchLongPickup.String(), "offer_timeout", e.cfg.OfferTimeout.String())
	} else {
		e.logger.Info("dispatching one trip at a time", "mode", e.cfg.Mode, "offer_timeout", e.cfg.OfferTimeout.String())
	}
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); <-ctx.Done(); e.host.stop() }()
	go func() { defer wg.Done(); e.watchMembership(ctx) }()
	go func() { defer wg.Done(); e.expireLoop(ctx) }()
	go func() { defer wg.Done(); e.recovery.run(ctx) }()
	wg.Wait()
	e.wg.Wait()
}

func (e *Engine) watchMembership(ctx context.Context) {
	for {
		r, changed := e.membership.Ring()
		if n, moved := e.supply.dropForeign(e.ownedFunc()); n > 0 {
			e.metrics.moves.Add(ctx, int64(moved))
			e.logger.Info("partitions moved away", "members", r.Len(), "partitions", moved, "dropped_drivers", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (e *Engine) expireLoop(ctx context.Context) {
	for sleep(ctx, e.clock, e.cfg.ExpireInterval) == nil {
		e.tick(e.clock.Now())
	}
}

// tick is one round of the expiry loop: drop silent drivers, then sample
// supply for surge. Neither copies the index: expiry removes in place and
// the sample reads per-cell counters, so a tick allocates O(cells).
func (e *Engine) tick(now time.Time) {
	e.supply.expire(now)
	e.sampleSupply(now)
}

// CellStats reports supply per cell (index resolution or coarser) for cells
// whose partitions this worker owns; others are NotOwner.
func (e *Engine) CellStats(cells []geo.Cell) (*matchingv1.CellStatsResponse, error) {
	resp := &matchingv1.CellStatsResponse{}
	if len(cells) == 0 {
		cells = e.ownedCellsWithSupply()
	}
	for _, c := range cells {
		p, err := e.partitionOfCell(c)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", errCellTooCoarse, c)
		}
		if err := e.ownsPartition(p); err != nil {
			return nil, err
		}
		supply, err := e.supply.cellSupply(c, "")
		if err != nil {
			return nil, fmt.Errorf("%w: %s", errCellTooFine, c)
		}
		stat := &matchingv1.CellStat{
			Cell:            c.String(),
			SupplyAvailable: int32(supply.Available),
			SupplyBusy:      int32(supply.Busy),
			SurgeMultiplier: 1,
		}
		if sc, ok := e.surgeCell(c); ok {
			if reading, err := e.surge.At(sc, e.clock.Now()); err == nil {
				stat.Demand, stat.SurgeMultiplier = int32(reading.Demand), reading.Multiplier
			}
		}
		resp.Cells = append(resp.Cells, stat)
	}
	return resp, nil
}

// surgeCell is the surge cell containing c (c at the surge resolution or
// finer); false for cells coarser than surge cells.
func (e *Engine) surgeCell(c geo.Cell) (geo.Cell, bool) {
	res := e.cfg.Surge.Resolution
	if c.Resolution() < res {
		return 0, false
	}
	p, err := c.Parent(res)
	return p, err == nil
}

// sampleSupply feeds the surge tracker the available drivers per surge
// cell, sends the readings of border cells to the owners of the
// neighbouring partitions (in the background), and lets the tracker forget
// idle cells. It reads the index's per-cell counters (O(cells)), never the
// drivers.
func (e *Engine) sampleSupply(now time.Time) {
	e.recordSupply(now)
	if !e.alone() {
		// Before Prune: a cell whose counts just left the window is sent
		// once more, at the minimum, so its neighbours' owners see it drop.
		e.startSurgeShare(e.borderReadings(e.surge.Readings(now), now))
	}
	e.surge.Prune(now)
}

// recordSupply records the available drivers per surge cell.
func (e *Engine) recordSupply(now time.Time) {
	counts := map[geo.Cell]int{}
	e.supply.eachCellSupply(func(c geo.Cell, n dispatch.SupplyCount) {
		if n.Available == 0 {
			return
		}
		if sc, ok := e.surgeCell(c); ok {
			counts[sc] += n.Available
		}
	})
	for c, n := range counts {
		_ = e.surge.RecordSupply(c, n, now)
	}
}

// counters are the worker's dispatch counters since it started.
type counters struct {
	dispatches, offersSent, accepted, declined, expired, noDriver atomic.Int64
}

// workerStats reports the dispatch counters and total, the index's
// drivers per status.
func (e *Engine) workerStats(total dispatch.SupplyCount) *matchingv1.WorkerStats {
	st := &matchingv1.WorkerStats{
		Dispatches:       e.stats.dispatches.Load(),
		OffersSent:       e.stats.offersSent.Load(),
		OffersAccepted:   e.stats.accepted.Load(),
		OffersDeclined:   e.stats.declined.Load(),
		OffersExpired:    e.stats.expired.Load(),
		NoDriver:         e.stats.noDriver.Load(),
		DriversAvailable: int32(total.Available),
		DriversBusy:      int32(total.Busy),
	}
	st.InFlight = int32(e.host.inFlight())
	return st
}

// ownedCellsWithSupply lists the index cells holding drivers in partitions
// this worker owns (the console's "every cell" view).
func (e *Engine) ownedCellsWithSupply() []geo.Cell {
	owned := e.ownedFunc()
	var out []geo.Cell
	e.supply.eachCellSupply(func(c geo.Cell, _ dispatch.SupplyCount) {
		if p, err := e.partitionOfCell(c); err == nil && owned(p) {
			out = append(out, c)
		}
	})
	slices.Sort(out)
	return out
}

// ListDrivers returns up to limit indexed drivers, by id. The index keeps
// only the first limit ids while walking its records: no copy of the index.
func (e *Engine) ListDrivers(limit int) *matchingv1.ListDriversResponse {
	drivers, more := e.supply.driversByID(limit)
	resp := &matchingv1.ListDriversResponse{Truncated: more}
	resp.Drivers = make([]*matchingv1.NearbyDriver, len(drivers))
	for i, d := range drivers {
		resp.Drivers[i] = driverToProto(d)
	}
	return resp
}

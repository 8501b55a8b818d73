package matching

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching/matchingapi"
)

// recovery finds the REQUESTED trips in partitions this worker owns that no
// worker is dispatching, and hands them to the dispatch host. It keeps no
// state between sweeps: the trip store and the host say what is orphaned.
type recovery struct {
	cfg        recoveryConfig
	owners     ownership
	trips      tripReader
	dispatches redispatcher
	clock      dispatch.TimerClock
	logger     *slog.Logger
}

// recoveryConfig is what recovery takes of the worker's Config.
type recoveryConfig struct {
	interval, age    time.Duration // RecoveryInterval, RecoveryAge
	callTimeout      time.Duration
	dispatchDeadline time.Duration // the topology's
	regions          *dispatch.RegionMap
	selfRegion       string
}

func recoveryConfigOf(c Config) recoveryConfig {
	return recoveryConfig{
		interval: c.RecoveryInterval, age: c.RecoveryAge, callTimeout: c.CallTimeout,
		dispatchDeadline: c.Topology.DispatchDeadline, regions: c.Regions, selfRegion: c.Self.Region,
	}
}

// tripReader is what recovery reads of the trip store.
type tripReader interface {
	ListTrips(ctx context.Context, req *tripv1.ListTripsRequest, opts ...grpc.CallOption) (*tripv1.ListTripsResponse, error)
	GetTrip(ctx context.Context, tripID string, opts ...grpc.CallOption) (*commonv1.Trip, error)
}

// redispatcher is what recovery needs of the dispatch host.
type redispatcher interface {
	// running reports whether the trip's dispatch runs on this worker.
	running(tripID string) bool
	// start starts dispatching the trip unless it runs already; parent is
	// the span to continue (none for a recovered trip).
	start(trip *commonv1.Trip, pickup geo.LatLng, partition matchingapi.Partition, deadline time.Time, parent trace.SpanContext) bool
}

// run sweeps every RecoveryInterval until ctx ends, re-dispatching the
// REQUESTED trips in partitions this worker owns that no worker is
// dispatching: their worker died or left, their Dispatch call was lost, or
// their driver withdrew.
func (rc *recovery) run(ctx context.Context) {
	for sleep(ctx, rc.clock, rc.cfg.interval) == nil {
		if err := rc.sweep(ctx); err != nil && ctx.Err() == nil {
			rc.logger.Warn("recovery sweep failed", "err", err)
		}
	}
}

// sweep scans for orphaned REQUESTED trips. The scan is a follower read
// (a few seconds stale on CockroachDB) of only the regions this worker can
// own, so it stays in the worker's own region and off the leaseholders; a
// trip it finds is confirmed with a current read before it is dispatched,
// so a stale row never sends an offer for a trip already assigned or
// cancelled.
func (rc *recovery) sweep(ctx context.Context) error {
	now := rc.clock.Now()
	regions, ok := rc.sweptRegions()
	if !ok {
		return nil
	}
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, rc.cfg.callTimeout)
		resp, err := rc.trips.ListTrips(cctx, &tripv1.ListTripsRequest{
			States:        []commonv1.TripState{commonv1.TripState_TRIP_STATE_REQUESTED},
			CreatedBefore: timestamppb.New(now.Add(-rc.cfg.age)),
			PageSize:      500,
			PageToken:     token,
			Regions:       regions,
			AllowStale:    true,
		})
		cancel()
		if err != nil {
			return err
		}
		for _, stale := range resp.GetTrips() {
			pickup := latLng(stale.GetPickup())
			partition, err := rc.owners.partitionOf(pickup)
			if err != nil {
				continue
			}
			if _, _, mine := rc.owners.owner(partition); !mine || rc.dispatches.running(stale.GetId()) {
				continue
			}
			trip, err := rc.currentTrip(ctx, stale.GetId())
			if err != nil {
				return err
			}
			if trip == nil {
				continue
			}
			deadline := trip.GetCreatedAt().AsTime().Add(rc.cfg.dispatchDeadline)
			if floor := now.Add(rc.cfg.dispatchDeadline / 3); deadline.Before(floor) {
				// A trip back from a withdrawn driver, or one whose worker
				// died late: give it a fair search of its own.
				deadline = floor
			}
			if rc.dispatches.start(trip, pickup, partition, deadline, trace.SpanContext{}) {
				rc.logger.Info("recovered dispatch", "trip", trip.GetId(), "partition", partition.String())
			}
		}
		token = resp.GetNextPageToken()
		if token == "" {
			return nil
		}
	}
}

// currentTrip re-reads a trip the stale sweep found: nil when it has left
// REQUESTED since (or is gone).
func (rc *recovery) currentTrip(ctx context.Context, tripID string) (*commonv1.Trip, error) {
	cctx, cancel := context.WithTimeout(ctx, rc.cfg.callTimeout)
	defer cancel()
	trip, err := rc.trips.GetTrip(cctx, tripID)
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if trip.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED {
		return nil, nil
	}
	return trip, nil
}

// sweptRegions returns the regions whose trips the recovery sweep reads:
// with a region map, every region whose partitions fall to this worker's
// region under the current membership (its own while it has workers, and
// those whose own workers are all gone and that fall back to it); false
// when there is none. Without a map: no filter (nil, true).
func (rc *recovery) sweptRegions() ([]string, bool) {
	m := rc.cfg.regions
	if m == nil {
		return nil, true
	}
	r, _ := rc.owners.membership.Ring()
	live := map[string]bool{}
	for _, mem := range r.Members() {
		live[mem.Region] = true
	}
	var out []string
	for _, region := range m.Regions() {
		for _, c := range m.FallbackChain(region) {
			if live[c] {
				if c == rc.cfg.selfRegion {
					out = append(out, region)
				}
				break
			}
		}
	}
	return out, len(out) > 0
}

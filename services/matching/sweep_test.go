package matching

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// sweepRegions is a three-region map around Wilmington: us-east homes a
// res-3 cell and falls back to us-west, us-west falls back to eu-west (the
// primary, homing the rest), eu-west to us-east.
func sweepRegions(t *testing.T, top dispatch.Topology) (*dispatch.RegionMap, geo.LatLng) {
	t.Helper()
	wilmington := geo.LatLng{Lat: 39.7447, Lng: -75.5484}
	part, _ := geo.CellAt(wilmington, top.PartitionResolution)
	cell, _ := part.Parent(3)
	m, err := dispatch.ParseRegionMap(fmt.Appendf(nil, `{"primary":"eu-west","regions":[
		{"name":"eu-west","fallback":"us-east"},
		{"name":"us-west","fallback":"eu-west"},
		{"name":"us-east","fallback":"us-west","cells":[%q]}]}`, cell), top.PartitionResolution)
	if err != nil {
		t.Fatal(err)
	}
	return m, wilmington
}

// TestSweptRegions: the sweep reads the regions whose partitions fall to
// the worker's region under the current membership, following fallback
// chains past regions with no workers.
func TestSweptRegions(t *testing.T) {
	top := dispatch.DefaultTopology()
	regions, _ := sweepRegions(t, top)
	tests := []struct {
		name  string
		self  string
		live  []string // regions with workers besides self's
		want  []string
		sweep bool
	}{
		{"all regions up", "us-east", []string{"us-west", "eu-west"}, []string{"us-east"}, true},
		{"fallback of a dead region", "us-west", []string{"eu-west"}, []string{"us-east", "us-west"}, true},
		{"two hops", "eu-west", nil, []string{"eu-west", "us-east", "us-west"}, true},
		{"primary alone keeps its own", "eu-west", []string{"us-east", "us-west"}, []string{"eu-west"}, true},
		{"nothing falls to a region with no map entry", "ap-south", []string{"us-east", "us-west", "eu-west"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			members := []ring.Member{{ID: "self", Address: "127.0.0.1:1", Region: tt.self}}
			for i, r := range tt.live {
				members = append(members, ring.Member{ID: fmt.Sprintf("w%d", i), Address: fmt.Sprintf("127.0.0.1:%d", 2+i), Region: r})
			}
			cfg := DefaultConfig(members[0], top)
			cfg.Regions = regions
			e, err := NewEngine(cfg, Deps{Membership: ring.NewPlacedStatic(matchingclient.Placement(regions), members...), Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			got, sweep := e.recovery.sweptRegions()
			slices.Sort(got)
			if sweep != tt.sweep || !slices.Equal(got, tt.want) {
				t.Fatalf("sweptRegions() = %v, %v; want %v, %v", got, sweep, tt.want, tt.sweep)
			}
		})
	}
}

// staleTrips serves a follower-read page that is out of date: it still
// lists trips as REQUESTED that GetTrip (a current read) shows assigned.
type staleTrips struct {
	tripv1.UnimplementedTripServiceServer
	mu      sync.Mutex
	listed  []*commonv1.Trip          // what ListTrips returns
	current map[string]*commonv1.Trip // what GetTrip returns
	lists   []*tripv1.ListTripsRequest
}

func (s *staleTrips) ListTrips(_ context.Context, req *tripv1.ListTripsRequest) (*tripv1.ListTripsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists = append(s.lists, proto.Clone(req).(*tripv1.ListTripsRequest))
	return &tripv1.ListTripsResponse{Trips: s.listed}, nil
}

func (s *staleTrips) GetTrip(_ context.Context, req *tripv1.GetTripRequest) (*tripv1.GetTripResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.current[req.GetTripId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such trip")
	}
	return &tripv1.GetTripResponse{Trip: t}, nil
}

// TestRecoverySweepStaleRegional: the sweep asks for a stale read of its
// regions only, and dispatches only the trips a current read still shows
// REQUESTED: one assigned or cancelled since the follower's snapshot, or
// deleted, is left alone.
func TestRecoverySweepStaleRegional(t *testing.T) {
	top := dispatch.DefaultTopology()
	regions, wilmington := sweepRegions(t, top)
	created := timestamppb.New(time.Now().Add(-time.Minute))
	trip := func(id string, state commonv1.TripState) *commonv1.Trip {
		return &commonv1.Trip{Id: id, State: state, Region: "us-east", CreatedAt: created,
			Pickup: &commonv1.LatLng{Lat: wilmington.Lat, Lng: wilmington.Lng}}
	}
	requested := commonv1.TripState_TRIP_STATE_REQUESTED
	srv := &staleTrips{current: map[string]*commonv1.Trip{
		"orphan":    trip("orphan", requested),
		"assigned":  trip("assigned", commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED),
		"cancelled": trip("cancelled", commonv1.TripState_TRIP_STATE_CANCELLED),
	}}
	for _, id := range []string{"orphan", "assigned", "cancelled", "deleted"} {
		srv.listed = append(srv.listed, trip(id, requested))
	}
	conn, err := grpc.NewClient(serve(t, func(s *grpc.Server) { tripv1.RegisterTripServiceServer(s, srv) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.HeaderCredentials{Principal: auth.Principal{Role: auth.RoleService, Subject: "test"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	self := ring.Member{ID: "east-1", Address: "127.0.0.1:1", Region: "us-east"}
	cfg := DefaultConfig(self, top)
	cfg.Regions, cfg.RecoveryInterval = regions, time.Hour
	e, err := NewEngine(cfg, Deps{
		Membership: ring.NewPlacedStatic(matchingclient.Placement(regions), self, ring.Member{ID: "eu-1", Address: "127.0.0.1:2", Region: "eu-west"}),
		Trips:      tripclient.New(conn), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := e.recovery.sweep(ctx); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	lists := srv.lists
	srv.mu.Unlock()
	// us-west has no worker and falls back to eu-west, which has one: this
	// worker sweeps us-east alone.
	if len(lists) != 1 || !slices.Equal(lists[0].GetRegions(), []string{"us-east"}) || !lists[0].GetAllowStale() {
		t.Fatalf("sweep asked %v, want one stale read of [us-east]", lists)
	}
	for id, want := range map[string]bool{"orphan": true, "assigned": false, "cancelled": false, "deleted": false} {
		if got := e.host.running(id); got != want {
			t.Errorf("trip %s dispatched = %v, want %v", id, got, want)
		}
	}
}

package trip_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/admission"
	"github.com/hexride/hexride/infra/postgres"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip"
	"github.com/hexride/hexride/services/trip/lifecycle"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/tripapi"
	"github.com/hexride/hexride/services/trip/tripclient"
)

func TestToStatus(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("sqlstore: assign: %w", err) }
	tests := []struct {
		name string
		err  error
		code codes.Code
		is   error // what tripclient.FromStatus must give back
	}{
		{"not found", wrap(tripapi.ErrNotFound), codes.NotFound, tripclient.ErrNotFound},
		{"lost CAS", wrap(store.NotRequested(uuid.New(), lifecycle.StateDriverAssigned, nil)), codes.FailedPrecondition, tripclient.ErrTripNotRequested},
		{"driver busy", wrap(tripapi.ErrDriverBusy), codes.FailedPrecondition, tripclient.ErrDriverBusy},
		{"invalid transition", wrap(&lifecycle.TransitionError{Err: lifecycle.ErrInvalidTransition}), codes.FailedPrecondition, tripclient.ErrInvalidTransition},
		{"actor not allowed", wrap(&lifecycle.TransitionError{Err: lifecycle.ErrActorNotAllowed}), codes.PermissionDenied, tripclient.ErrActorNotAllowed},
		{"not completed", wrap(tripapi.ErrNotCompleted), codes.FailedPrecondition, tripclient.ErrNotCompleted},
		{"key reused", wrap(tripapi.ErrIdempotencyKeyReused), codes.AlreadyExists, tripclient.ErrIdempotencyKeyReused},
		{"invalid argument", wrap(tripapi.ErrInvalidArgument), codes.InvalidArgument, tripclient.ErrInvalidArgument},
		{"invalid command", wrap(&lifecycle.TransitionError{Err: lifecycle.ErrInvalidCommand}), codes.InvalidArgument, tripclient.ErrInvalidArgument},
		{"retries exhausted", wrap(fmt.Errorf("%w: x", postgres.ErrMaxRetries)), codes.Aborted, tripclient.ErrRetriesExhausted},
		{"a serialization failure outside a retry loop", wrap(fmt.Errorf("get trip: %w", postgres.SerializationFailure("could not serialize access"))), codes.Aborted, tripclient.ErrRetriesExhausted},
		{"cancelled", wrap(context.Canceled), codes.Canceled, nil},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded, nil},
		{"unknown", errors.New("disk on fire"), codes.Internal, nil},
		{"trip changed", wrap(tripapi.ErrTripChanged), codes.FailedPrecondition, tripapi.ErrTripChanged},
		{"store gate full", wrap(fmt.Errorf("postgres: transaction: %w", admission.ErrOverloaded)), codes.ResourceExhausted, nil},
		{"commit outcome unknown", wrap(fmt.Errorf("commit: %w: %w", postgres.ErrCommitUnknown, io.ErrUnexpectedEOF)), codes.Unavailable, tripclient.ErrStoreUnavailable},
		{"status passes through", status.Error(codes.Unavailable, "x"), codes.Unavailable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := trip.ToStatus(tt.err)
			if got := status.Code(st); got != tt.code {
				t.Fatalf("code = %v, want %v", got, tt.code)
			}
			back := tripclient.FromStatus(st)
			if tt.is != nil && !errors.Is(back, tt.is) {
				t.Fatalf("FromStatus(%v) does not match %v", st, tt.is)
			}
			if status.Code(back) != tt.code {
				t.Fatalf("FromStatus lost the code")
			}
		})
	}
	if trip.ToStatus(nil) != nil {
		t.Fatal("nil error became a status")
	}
}

func TestServerOverGRPC(t *testing.T) {
	c := serve(t, memstore.New())
	ctx := ctxT(t, 20*time.Second)

	// Requests failing their protovalidate rules are InvalidArgument.
	invalid := []struct {
		name string
		call func() error
	}{
		{"create without key", func() error {
			req := createReq("r")
			req.IdempotencyKey = ""
			_, _, err := c.CreateTrip(ctx, req)
			return err
		}},
		{"create with bad currency", func() error {
			req := createReq("r")
			req.QuotedFare.Currency = "usd"
			_, _, err := c.CreateTrip(ctx, req)
			return err
		}},
		{"get with bad id", func() error { _, err := c.GetTrip(ctx, "not-a-uuid"); return err }},
		{"assign without driver", func() error { _, err := c.AssignDriver(ctx, uuid.NewString(), "", "", "k"); return err }},
		{"transition CREATED", func() error {
			_, _, err := c.Transition(ctx, &tripv1.TransitionRequest{TripId: uuid.NewString(), Event: commonv1.TripEventType_TRIP_EVENT_TYPE_CREATED,
				Actor: commonv1.Actor_ACTOR_SYSTEM, IdempotencyKey: "k"})
			return err
		}},
		{"list page too large", func() error {
			_, err := c.ListTrips(ctx, &tripv1.ListTripsRequest{PageSize: 501})
			return err
		}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != codes.InvalidArgument || !errors.Is(err, tripclient.ErrInvalidArgument) {
				t.Fatalf("err = %v, want InvalidArgument", err)
			}
		})
	}
	if _, err := c.GetTrip(ctx, uuid.NewString()); status.Code(err) != codes.NotFound || !errors.Is(err, tripclient.ErrNotFound) {
		t.Fatalf("unknown trip: %v", err)
	}

	// A whole ride.
	tr, _, err := c.CreateTrip(ctx, createReq("rider-1"))
	if err != nil {
		t.Fatal(err)
	}
	id := tr.GetId()
	if _, _, err := c.Transition(ctx, &tripv1.TransitionRequest{TripId: id, Event: commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED,
		Actor: commonv1.Actor_ACTOR_DRIVER, ActorId: "d1", IdempotencyKey: "early"}); !errors.Is(err, tripclient.ErrInvalidTransition) ||
		status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("start while requested: %v", err)
	}
	if _, err := c.AssignDriver(ctx, id, "d1", "", "assign"); err != nil {
		t.Fatal(err)
	}
	step := func(ev commonv1.TripEventType, key string) *commonv1.Trip {
		t.Helper()
		got, e, err := c.Transition(ctx, &tripv1.TransitionRequest{TripId: id, Event: ev, Actor: commonv1.Actor_ACTOR_DRIVER, ActorId: "d1", IdempotencyKey: key})
		if err != nil {
			t.Fatalf("%v: %v", ev, err)
		}
		if e.GetType() != ev || e.GetTrip().GetVersion() != got.GetVersion() {
			t.Fatalf("event %v for %v", e, ev)
		}
		return got
	}
	step(commonv1.TripEventType_TRIP_EVENT_TYPE_ARRIVED, "arrive")
	step(commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED, "start")
	done := step(commonv1.TripEventType_TRIP_EVENT_TYPE_COMPLETED, "complete")
	if done.GetState() != commonv1.TripState_TRIP_STATE_COMPLETED || done.GetFinalFare().GetAmountMinor() != 2350 ||
		done.GetCompletedAt() == nil || done.GetProduct() != commonv1.Product_PRODUCT_STANDARD || done.GetRegion() != "us-east1" {
		t.Fatalf("completed = %v", done)
	}
	rated, err := c.RateTrip(ctx, &tripv1.RateTripRequest{TripId: id, RiderId: "rider-1", Stars: 5})
	if err != nil || rated.GetRating() != 5 {
		t.Fatalf("rate: %v %v", rated, err)
	}
	if _, err := c.RateTrip(ctx, &tripv1.RateTripRequest{TripId: id, RiderId: "rider-2", Stars: 1}); !errors.Is(err, tripclient.ErrActorNotAllowed) {
		t.Fatalf("rate by another rider: %v", err)
	}
	evs, err := c.Events(ctx, id)
	if err != nil || len(evs) != 5 {
		t.Fatalf("events: %d, %v", len(evs), err)
	}

	// Paging over gRPC.
	for range 4 {
		if _, _, err := c.CreateTrip(ctx, createReq("rider-p")); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	token := ""
	for {
		resp, err := c.ListTrips(ctx, &tripv1.ListTripsRequest{RiderId: "rider-p", PageSize: 3, PageToken: token,
			States: []commonv1.TripState{commonv1.TripState_TRIP_STATE_REQUESTED}})
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range resp.GetTrips() {
			seen[tr.GetId()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("paged %d trips, want 4", len(seen))
	}
}

func TestWatchFiltersAndShutdown(t *testing.T) {
	for _, m := range watchModes {
		t.Run(m.name, func(t *testing.T) { testWatchFiltersAndShutdown(t, newWatchEnv(t, m)) })
	}
}

func testWatchFiltersAndShutdown(t *testing.T, env *watchEnv) {
	srv := env.server(env.memStore(), trip.WithWatchPoll(20*time.Millisecond, time.Second))
	c := serveServer(t, srv)
	ctx := ctxT(t, 20*time.Second)

	riderEvents := make(chan *commonv1.TripEvent, 16)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- c.Watch(ctx, &tripv1.WatchTripsRequest{RiderId: "rider-x"}, func(ev *commonv1.TripEvent) error {
			riderEvents <- ev
			return nil
		})
	}()
	// Wait until the watch is subscribed: create trips until one shows up.
	deadline := time.After(5 * time.Second)
	var mine *commonv1.Trip
	for mine == nil {
		if _, _, err := c.CreateTrip(ctx, createReq("rider-other")); err != nil {
			t.Fatal(err)
		}
		tr, _, err := c.CreateTrip(ctx, createReq("rider-x"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-riderEvents:
			if ev.GetTrip().GetRiderId() != "rider-x" {
				t.Fatalf("filter let through %v", ev)
			}
			if ev.GetTripId() == tr.GetId() {
				mine = tr
			}
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("watch never delivered")
		}
	}
	// Closing the server ends the watch with Unavailable.
	srv.Close()
	select {
	case err := <-watchErr:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("watch ended with %v, want Unavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running after Close")
	}
}

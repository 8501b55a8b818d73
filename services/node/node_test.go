package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/telemetry"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testKey = []byte(strings.Repeat("q", 32))

// startNode runs the given services in-process on a loopback port.
func startNode(t *testing.T, services ...string) (*Node, *grpc.ClientConn) {
	t.Helper()
	return startNodeWith(t, nil, services...)
}

// startNodeWith runs the services with the given telemetry (nil: none).
func startNodeWith(t *testing.T, tel *telemetry.Providers, services ...string) (*Node, *grpc.ClientConn) {
	t.Helper()
	var opts []Option
	if tel != nil {
		opts = append(opts, WithTelemetry(tel))
	}
	return startNodeConfig(t, testConfig(services...), opts...)
}

// testConfig is a node on a free loopback port with short offer and
// dispatch times, dev header authentication and no drain wait.
func testConfig(services ...string) Config {
	cfg := DefaultConfig()
	cfg.Services = services
	cfg.Addr = "127.0.0.1:0"
	cfg.OfferTimeout = 2 * time.Second
	cfg.Topology.DispatchDeadline = 6 * time.Second
	cfg.DrainWait = 0
	cfg.StopTimeout = 2 * time.Second
	cfg.QuoteKey = testKey
	cfg.Security.DevHeader, cfg.Security.Audit = true, io.Discard
	return cfg
}

// startNodeConfig starts a node with cfg and a client of it; both stop
// when the test ends.
func startNodeConfig(t *testing.T, cfg Config, opts ...Option) (*Node, *grpc.ClientConn) {
	t.Helper()
	n, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n, cc
}

func as(role auth.Role, id string) context.Context {
	return auth.OutgoingContext(context.Background(), auth.Principal{Role: role, Subject: id})
}

var (
	sfPickup  = &commonv1.LatLng{Lat: 37.7749, Lng: -122.4194}
	sfDropoff = &commonv1.LatLng{Lat: 37.7849, Lng: -122.4094}
)

func TestConfigValidate(t *testing.T) {
	base := DefaultConfig()
	base.QuoteKey = testKey
	base.Security.DevHeader = true
	tests := []struct {
		name   string
		mutate func(*Config)
		want   error
	}{
		{"defaults", func(*Config) {}, nil},
		{"no services", func(c *Config) { c.Services = nil }, ErrNoServices},
		{"unknown service", func(c *Config) { c.Services = []string{"billing"} }, ErrUnknownService},
		{"bad addr", func(c *Config) { c.Addr = "nope" }, ErrBadAddr},
		{"wildcard advertise", func(c *Config) { c.Addr = "0.0.0.0:7070" }, ErrBadAddr},
		{"rider alone without consul", func(c *Config) { c.Services = []string{Rider} }, ErrNeedsDiscovery},
		{"rider alone with consul", func(c *Config) { c.Services = []string{Rider}; c.ConsulAddr = "127.0.0.1:8500" }, nil},
		{"short quote key", func(c *Config) { c.QuoteKey = []byte("short") }, ErrShortQuoteKey},
		{"zero offer timeout", func(c *Config) { c.OfferTimeout = 0 }, ErrBadDuration},
		{"batched", func(c *Config) { c.DispatchMode, c.BatchWindow = "batched", 3*time.Second }, nil},
		{"unknown dispatch mode", func(c *Config) { c.DispatchMode = "auction" }, matching.ErrBadMode},
		{"no dispatch mode", func(c *Config) { c.DispatchMode = "" }, matching.ErrBadMode},
		{"batch window under 1s", func(c *Config) { c.BatchWindow = 999 * time.Millisecond }, matching.ErrBadWindow},
		{"batch window over 3s", func(c *Config) { c.BatchWindow = 3*time.Second + 1 }, matching.ErrBadWindow},
		{"partition res too fine", func(c *Config) { c.Topology.PartitionResolution = 9 }, dispatch.ErrInvalidTopology},
		{"no authentication", func(c *Config) { c.Security = Security{} }, ErrNoAuth},
		{"jwt without audience", func(c *Config) { c.Security = Security{JWKSFile: "k.json", Issuer: "i", ServiceKeyDir: "d"} }, ErrNoAuth},
		{"jwt without a service identity", func(c *Config) { c.Security = Security{JWKSFile: "k.json", Issuer: "i", Audience: "a"} }, ErrNoServiceIDs},
		{"tls without ca", func(c *Config) { c.Security.CertFile, c.Security.KeyFile = "c.pem", "k.pem" }, ErrPartialTLS},
		{"no admission", func(c *Config) { c.MaxInFlight = 0 }, ErrBadLimit},
		{"negative overload latency", func(c *Config) { c.OverloadLatency = -time.Second }, ErrBadLimit},
		{"negative pool", func(c *Config) { c.DBMaxConns = -1 }, ErrBadLimit},
		{"negative db waiting", func(c *Config) { c.DBMaxWaiting = -1 }, ErrBadLimit},
		{"no silent-driver timeout", func(c *Config) { c.Watchdog.SilentDriver = 0 }, ErrBadDuration},
		{"watchdog only checked where trip runs", func(c *Config) {
			c.Watchdog.Interval, c.Services, c.ConsulAddr = 0, []string{Matching}, "127.0.0.1:8500"
		}, nil},
		{"client cert without tls", func(c *Config) { c.Security.ClientCertFile, c.Security.ClientKeyFile = "c.pem", "k.pem" }, ErrPartialTLS},
		{"no region map, any region", func(c *Config) { c.Region = "us-east" }, nil},
		{"no region map, no region", func(c *Config) { c.Region = "" }, ErrBadRegion},
		{"region of the region map", func(c *Config) { c.Region, c.Regions = "us-west", sfRegions(t) }, nil},
		{"region not in the region map", func(c *Config) { c.Regions = sfRegions(t) }, ErrBadRegion},
		{"region map for other partitions", func(c *Config) {
			c.Region, c.Regions, c.Topology.PartitionResolution = "us-west", sfRegions(t), 5
		}, dispatch.ErrInvalidRegionMap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestBadInput checks every public and internal RPC's answer to bad input
// and to callers without the right role, over a real socket.
func TestBadInput(t *testing.T) {
	_, cc := startNode(t, AllServices...)
	rider := riderv1.NewRiderServiceClient(cc)
	drv := driverv1.NewDriverServiceClient(cc)
	gw := driverv1.NewDriverGatewayServiceClient(cc)
	match := matchingv1.NewMatchingServiceClient(cc)
	trips := tripv1.NewTripServiceClient(cc)
	riderCtx, driverCtx, svcCtx := as(auth.RoleRider, "r1"), as(auth.RoleDriver, "d1"), as(auth.RoleService, "test")
	unknownTrip := "0b8f3f2e-6f43-4a4e-9a52-3b8f0c1d2e3f"

	// A real trip to act on wrongly.
	created, err := trips.CreateTrip(svcCtx, &tripv1.CreateTripRequest{IdempotencyKey: "bad-input", RiderId: "r1", Pickup: sfPickup, Dropoff: sfDropoff,
		Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1000, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	tripID := created.GetTrip().GetId()

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"rider quote without credentials", func() error {
			_, err := rider.GetQuote(context.Background(), &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
			return err
		}, codes.Unauthenticated},
		{"rider quote as driver", func() error {
			_, err := rider.GetQuote(driverCtx, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
			return err
		}, codes.PermissionDenied},
		{"rider quote lat out of range", func() error {
			_, err := rider.GetQuote(riderCtx, &riderv1.GetQuoteRequest{Pickup: &commonv1.LatLng{Lat: 91}, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
			return err
		}, codes.InvalidArgument},
		{"rider quote antipodal drop-off", func() error {
			_, err := rider.GetQuote(riderCtx, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: &commonv1.LatLng{Lat: -sfPickup.GetLat(), Lng: sfPickup.GetLng() + 180}, Product: commonv1.Product_PRODUCT_STANDARD})
			if err != nil && !strings.HasPrefix(status.Convert(err).Message(), "drop-off is ") {
				return fmt.Errorf("message %q does not say why", status.Convert(err).Message())
			}
			return err
		}, codes.InvalidArgument},
		{"rider quote no product", func() error {
			_, err := rider.GetQuote(riderCtx, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff})
			return err
		}, codes.InvalidArgument},
		{"rider request forged quote", func() error {
			_, err := rider.RequestRide(riderCtx, &riderv1.RequestRideRequest{QuoteId: "forged", IdempotencyKey: "k"})
			return err
		}, codes.InvalidArgument},
		{"rider request missing key", func() error {
			_, err := rider.RequestRide(riderCtx, &riderv1.RequestRideRequest{QuoteId: "q"})
			return err
		}, codes.InvalidArgument},
		{"rider get unknown trip", func() error {
			_, err := rider.GetTrip(riderCtx, &riderv1.GetTripRequest{TripId: unknownTrip})
			return err
		}, codes.NotFound},
		{"rider get someone else's trip", func() error {
			_, err := rider.GetTrip(as(auth.RoleRider, "r2"), &riderv1.GetTripRequest{TripId: tripID})
			return err
		}, codes.PermissionDenied},
		{"rider get bad id", func() error {
			_, err := rider.GetTrip(riderCtx, &riderv1.GetTripRequest{TripId: "x"})
			return err
		}, codes.InvalidArgument},
		{"rider rate requested trip", func() error {
			_, err := rider.RateTrip(riderCtx, &riderv1.RateTripRequest{TripId: tripID, Stars: 5})
			return err
		}, codes.FailedPrecondition},
		{"rider rate six stars", func() error {
			_, err := rider.RateTrip(riderCtx, &riderv1.RateTripRequest{TripId: tripID, Stars: 6})
			return err
		}, codes.InvalidArgument},
		{"rider cancel bad id", func() error {
			_, err := rider.CancelRide(riderCtx, &riderv1.CancelRideRequest{TripId: "x", IdempotencyKey: "k"})
			return err
		}, codes.InvalidArgument},
		{"rider watch unknown trip", func() error {
			s, err := rider.WatchTrip(riderCtx, &riderv1.WatchTripRequest{TripId: unknownTrip})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.NotFound},
		{"driver arrive on unassigned trip", func() error {
			_, err := drv.ArriveAtPickup(driverCtx, &driverv1.ArriveAtPickupRequest{TripId: tripID, IdempotencyKey: "k"})
			return err
		}, codes.FailedPrecondition},
		{"driver start unknown trip", func() error {
			_, err := drv.StartTrip(driverCtx, &driverv1.StartTripRequest{TripId: unknownTrip, IdempotencyKey: "k"})
			return err
		}, codes.NotFound},
		{"driver complete bad id", func() error {
			_, err := drv.CompleteTrip(driverCtx, &driverv1.CompleteTripRequest{TripId: "x", IdempotencyKey: "k"})
			return err
		}, codes.InvalidArgument},
		{"driver cancel without reason", func() error {
			_, err := drv.CancelTrip(driverCtx, &driverv1.CancelTripRequest{TripId: tripID, IdempotencyKey: "k"})
			return err
		}, codes.InvalidArgument},
		{"driver action as rider", func() error {
			_, err := drv.ArriveAtPickup(riderCtx, &driverv1.ArriveAtPickupRequest{TripId: tripID, IdempotencyKey: "k"})
			return err
		}, codes.PermissionDenied},
		{"driver connect as rider", func() error {
			s, err := drv.Connect(riderCtx)
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.PermissionDenied},
		{"gateway push from a driver", func() error {
			_, err := gw.PushToDriver(driverCtx, &driverv1.PushToDriverRequest{DriverId: "d2", Message: &driverv1.ConnectResponse{}})
			return err
		}, codes.PermissionDenied},
		{"gateway push to unknown driver", func() error {
			_, err := gw.PushToDriver(svcCtx, &driverv1.PushToDriverRequest{DriverId: "nobody", Message: &driverv1.ConnectResponse{}})
			return err
		}, codes.NotFound},
		{"matching from a rider", func() error {
			_, err := match.Partitions(riderCtx, &matchingv1.PartitionsRequest{})
			return err
		}, codes.PermissionDenied},
		{"matching nearby radius too big", func() error {
			_, err := match.NearbyDrivers(svcCtx, &matchingv1.NearbyDriversRequest{Center: sfPickup, RadiusMeters: 60000, Limit: 5})
			return err
		}, codes.InvalidArgument},
		{"matching dispatch without trip", func() error {
			_, err := match.Dispatch(svcCtx, &matchingv1.DispatchRequest{})
			return err
		}, codes.InvalidArgument},
		{"matching dispatch trip without id", func() error {
			_, err := match.Dispatch(svcCtx, &matchingv1.DispatchRequest{Trip: &commonv1.Trip{Pickup: sfPickup, State: commonv1.TripState_TRIP_STATE_REQUESTED}})
			return err
		}, codes.InvalidArgument},
		{"matching dispatch completed trip", func() error {
			_, err := match.Dispatch(svcCtx, &matchingv1.DispatchRequest{Trip: &commonv1.Trip{Id: unknownTrip, Pickup: sfPickup, State: commonv1.TripState_TRIP_STATE_COMPLETED}})
			return err
		}, codes.FailedPrecondition},
		{"matching cell stats bad cell", func() error {
			_, err := match.CellStats(svcCtx, &matchingv1.CellStatsRequest{Cells: []string{"zz"}})
			return err
		}, codes.InvalidArgument},
		{"matching reply bad decision", func() error {
			_, err := match.ReplyOffer(svcCtx, &matchingv1.ReplyOfferRequest{OfferId: "o", TripId: tripID, DriverId: "d1", Pickup: sfPickup})
			return err
		}, codes.InvalidArgument},
		{"matching ingest from a rider", func() error {
			s, err := match.IngestLocations(riderCtx)
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.PermissionDenied},
		{"trip create missing rider", func() error {
			_, err := trips.CreateTrip(svcCtx, &tripv1.CreateTripRequest{IdempotencyKey: "k", Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{Currency: "USD"}})
			return err
		}, codes.InvalidArgument},
		{"trip get unknown", func() error {
			_, err := trips.GetTrip(svcCtx, &tripv1.GetTripRequest{TripId: unknownTrip})
			return err
		}, codes.NotFound},
		{"trip start from requested", func() error {
			_, err := trips.Transition(svcCtx, &tripv1.TransitionRequest{TripId: tripID, Event: commonv1.TripEventType_TRIP_EVENT_TYPE_STARTED, Actor: commonv1.Actor_ACTOR_DISPATCHER, ActorId: "ops", IdempotencyKey: "k"})
			return err
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.want {
				t.Fatalf("code = %v, want %v", got, tt.want)
			}
		})
	}
}

// connect opens a driver stream, goes online and sends one sample.
func connect(t *testing.T, cc *grpc.ClientConn, id string, at *commonv1.LatLng) (driverv1.DriverService_ConnectClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(as(auth.RoleDriver, id))
	s, err := driverv1.NewDriverServiceClient(cc).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq uint64, m *driverv1.ConnectRequest) {
		m.Seq = seq
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	send(1, &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD}}})
	send(2, location(at, time.Now()))
	return s, cancel
}

func location(at *commonv1.LatLng, when time.Time) *driverv1.ConnectRequest {
	return &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: at, SpeedMps: 5, AccuracyM: 5, RecordedAt: timestamppb.New(when)}}}
}

// next reads stream messages until one matches.
func next[T any](t *testing.T, s driverv1.DriverService_ConnectClient, pick func(*driverv1.ConnectResponse) (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if v, ok := pick(m); ok {
			return v
		}
	}
	var zero T
	t.Fatal("message not received")
	return zero
}

func ackFor(seq uint64) func(*driverv1.ConnectResponse) (*driverv1.Ack, bool) {
	return func(m *driverv1.ConnectResponse) (*driverv1.Ack, bool) {
		a := m.GetAck()
		return a, a != nil && a.GetSeq() == seq
	}
}

// TestStreamRefusesBadSamples: a bad sample is refused in its Ack with a
// reason, and the stream stays up.
func TestStreamRefusesBadSamples(t *testing.T) {
	_, cc := startNode(t, AllServices...)
	s, cancel := connect(t, cc, "d-samples", sfPickup)
	defer cancel()
	if a := next(t, s, ackFor(2)); !a.GetAccepted() {
		t.Fatalf("first sample refused: %v", a.GetReason())
	}
	now := time.Now()
	tests := []struct {
		name   string
		msg    *driverv1.ConnectRequest
		reason string
	}{
		{"NaN latitude", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: &commonv1.LatLng{Lat: nan()}, RecordedAt: timestamppb.Now()}}}, "invalid"},
		{"teleport", location(&commonv1.LatLng{Lat: 40.7, Lng: -74.0}, now.Add(time.Second)), "implausible_motion"},
		{"from the future", location(sfPickup, now.Add(time.Hour)), "timestamp_out_of_range"},
		{"too old", location(sfPickup, now.Add(-time.Hour)), "timestamp_out_of_range"},
		{"empty message", &driverv1.ConnectRequest{}, "invalid"},
		{"reply to an unknown offer", &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: &driverv1.OfferReply{OfferId: "o", TripId: "0b8f3f2e-6f43-4a4e-9a52-3b8f0c1d2e3f", Decision: driverv1.OfferDecision_OFFER_DECISION_ACCEPT}}}, "unknown_offer"},
	}
	seq := uint64(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq++
			tt.msg.Seq = seq
			if err := s.Send(tt.msg); err != nil {
				t.Fatal(err)
			}
			a := next(t, s, ackFor(seq))
			if a.GetAccepted() || !strings.HasPrefix(a.GetReason(), tt.reason) {
				t.Fatalf("ack = %v, want refused for %s", a, tt.reason)
			}
		})
	}
	// Over the per-driver sample rate: refused at once, not queued. The
	// accepted ones are acknowledged cumulatively, at the latest ahead of
	// the next Ack the gateway sends.
	first := seq + 1
	for range 20 {
		seq++
		m := location(sfPickup, time.Now())
		m.Seq = seq
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	seq++
	if err := s.Send(&driverv1.ConnectRequest{Seq: seq, Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
		Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD}}}); err != nil {
		t.Fatal(err)
	}
	refused, acceptedThrough := 0, uint64(0)
	next(t, s, func(m *driverv1.ConnectResponse) (struct{}, bool) {
		a := m.GetAck()
		switch {
		case a == nil:
		case a.GetSeq() == seq:
			return struct{}{}, true
		case a.GetAccepted():
			acceptedThrough = a.GetSeq()
		case a.GetReason() == "rate_limited":
			refused++
		}
		return struct{}{}, false
	})
	if refused == 0 {
		t.Fatal("a burst of 20 samples was not rate limited")
	}
	if refused < 20 && acceptedThrough < first {
		t.Fatalf("%d of 20 samples accepted, but no Ack accepted them ahead of the next message's (last accepted seq %d)", 20-refused, acceptedThrough)
	}
}

func nan() float64 { return math.NaN() }

// TestConnectEndedByGateway: the gateway ends a driver's stream itself: a
// newer stream of the same driver replaces it (ABORTED), and a drain ends
// the rest (UNAVAILABLE, saying so).
func TestConnectEndedByGateway(t *testing.T) {
	n, cc := startNode(t, AllServices...)
	first, cancel1 := connect(t, cc, "d-twice", sfPickup)
	defer cancel1()
	next(t, first, ackFor(2))
	second, cancel2 := connect(t, cc, "d-twice", sfPickup)
	defer cancel2()
	if err := streamEnd(t, first); status.Code(err) != codes.Aborted {
		t.Fatalf("the replaced stream ended with %v, want ABORTED", err)
	}
	if a := next(t, second, ackFor(2)); !a.GetAccepted() {
		t.Fatalf("the newer stream's first sample: %v", a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); n.Shutdown(ctx) }()
	// A stream cut by the server's stop would end UNAVAILABLE too, but
	// without saying it drains.
	err := streamEnd(t, second)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "draining") {
		t.Fatalf("the stream ended with %v on a drain, want UNAVAILABLE draining", err)
	}
	<-done
}

// streamEnd reads s until it ends and returns why.
func streamEnd(t *testing.T, s driverv1.DriverService_ConnectClient) error {
	t.Helper()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("the stream did not end within 15 s")
		return nil
	}
}

package matching

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// offerBook is the drivers' side of a border test: it holds each driver's
// offer from the moment the gateway gets it until the driver answers or is
// told the offer ended, and counts a second offer reaching a driver that
// still holds one.
type offerBook struct {
	mu       sync.Mutex
	held     map[string]string // driver → offer id
	offers   int
	overlaps []string
	assigned map[string]string // driver → trip
	late     []string          // offers to drivers already on a trip
}

// take records an offer reaching its driver.
func (b *offerBook) take(driverID string, o *driverv1.Offer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offers++
	if other, ok := b.held[driverID]; ok {
		b.overlaps = append(b.overlaps, fmt.Sprintf("%s got %s (trip %s) while holding %s", driverID, o.GetOfferId(), o.GetTripId(), other))
	}
	if trip, ok := b.assigned[driverID]; ok {
		b.late = append(b.late, fmt.Sprintf("%s got trip %s while on %s", driverID, o.GetTripId(), trip))
	}
	b.held[driverID] = o.GetOfferId()
}

// busy reports whether the driver holds an offer other than offerID or is
// on a trip.
func (b *offerBook) busy(driverID, offerID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	held, holds := b.held[driverID]
	_, onTrip := b.assigned[driverID]
	return holds && held != offerID || onTrip
}

// drop ends the driver's hold of the offer (answered, or told it ended).
func (b *offerBook) drop(driverID, offerID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held[driverID] == offerID {
		delete(b.held, driverID)
	}
}

// fakeGateway is the driver gateway of a border test: it hands offers to
// simulated drivers who answer through matching after a random delay.
type fakeGateway struct {
	driverv1.UnimplementedDriverGatewayServiceServer
	book   *offerBook
	answer func(driverID string, o *driverv1.Offer)
}

func (g *fakeGateway) PushToDriver(_ context.Context, req *driverv1.PushToDriverRequest) (*driverv1.PushToDriverResponse, error) {
	msg := req.GetMessage()
	switch {
	case msg.GetOffer() != nil:
		// The gateway's contract (services/driver TestOneOfferAtATime):
		// an offer to a driver holding another, or on a trip, is refused.
		if g.book.busy(req.GetDriverId(), msg.GetOffer().GetOfferId()) {
			return nil, status.Error(codes.FailedPrecondition, "the driver holds another offer")
		}
		g.book.take(req.GetDriverId(), msg.GetOffer())
		g.answer(req.GetDriverId(), msg.GetOffer())
	case msg.GetOfferResult() != nil:
		g.book.drop(req.GetDriverId(), msg.GetOfferResult().GetOfferId())
	}
	return &driverv1.PushToDriverResponse{}, nil
}

// fakeTrips is the trip store of a border test: a trip takes one driver, a
// driver one trip.
type fakeTrips struct {
	tripv1.UnimplementedTripServiceServer
	mu       sync.Mutex
	trips    map[string]*commonv1.Trip
	drivers  map[string]string // driver → trip
	noDriver map[string]bool
	book     *offerBook
}

func (f *fakeTrips) AssignDriver(_ context.Context, req *tripv1.AssignDriverRequest) (*tripv1.AssignDriverResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.trips[req.GetTripId()]
	switch {
	case !ok:
		return nil, status.Error(codes.NotFound, "no such trip")
	case t.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED:
		return nil, status.Error(codes.FailedPrecondition, "trip not requested")
	case f.drivers[req.GetDriverId()] != "":
		return nil, status.Error(codes.FailedPrecondition, "driver busy")
	}
	t.State, t.DriverId = commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, req.GetDriverId()
	f.drivers[req.GetDriverId()] = t.GetId()
	f.book.mu.Lock()
	f.book.assigned[req.GetDriverId()] = t.GetId()
	f.book.mu.Unlock()
	return &tripv1.AssignDriverResponse{Trip: t}, nil
}

func (f *fakeTrips) GetTrip(_ context.Context, req *tripv1.GetTripRequest) (*tripv1.GetTripResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.trips[req.GetTripId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such trip")
	}
	return &tripv1.GetTripResponse{Trip: t}, nil
}

func (f *fakeTrips) Transition(_ context.Context, req *tripv1.TransitionRequest) (*tripv1.TransitionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.trips[req.GetTripId()]
	if !ok || t.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED {
		return nil, status.Error(codes.FailedPrecondition, "not requested")
	}
	t.State = commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND
	f.noDriver[t.GetId()] = true
	return &tripv1.TransitionResponse{Trip: t}, nil
}

func (f *fakeTrips) ListTrips(context.Context, *tripv1.ListTripsRequest) (*tripv1.ListTripsResponse, error) {
	return &tripv1.ListTripsResponse{}, nil
}

// ended counts trips no longer REQUESTED.
func (f *fakeTrips) ended() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.trips {
		if t.GetState() != commonv1.TripState_TRIP_STATE_REQUESTED {
			n++
		}
	}
	return n
}

// serve starts a gRPC server on an ephemeral port.
func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.HeaderAuthenticator{}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(authn)), grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(authn)))
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// borderPoint finds the midpoint of two neighbouring partitions (res 7)
// owned by different workers of r, near Wilmington.
func borderPoint(t *testing.T, r *ring.Ring, res int) geo.LatLng {
	t.Helper()
	p, err := geo.CellAt(geo.LatLng{Lat: 39.745, Lng: -75.55}, res)
	if err != nil {
		t.Fatal(err)
	}
	owner := func(c geo.Cell) string { m, _ := r.Owner(uint64(c)); return m.ID }
	cells, err := geo.GridDisk(p, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cells {
		ns, err := geo.Neighbors(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range ns {
			if owner(a) == owner(b) {
				continue
			}
			ca, _ := a.Center()
			cb, _ := b.Center()
			return geo.LatLng{Lat: (ca.Lat + cb.Lat) / 2, Lng: (ca.Lng + cb.Lng) / 2}
		}
	}
	t.Fatal("no border between two workers")
	return geo.LatLng{}
}

// TestBorderNoDoubleOffers: two batched matching workers on real sockets
// own the partitions either side of a border; requests and drivers crowd
// the border; drivers answer at random (accept, decline, or not at all).
// No driver ever holds two offers at once, and no driver gets an offer
// while on a trip: windows on both sides see the border's drivers, and the
// driver's gateway refuses a second offer (the fake gateway keeps the real
// one's contract), which returns the request to its next window.
func TestBorderNoDoubleOffers(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	if problems := borderRun(t, ModeBatched, seed); len(problems) > 0 {
		t.Fatalf("%d problems, e.g. %v", len(problems), problems[:min(len(problems), 5)])
	}
}

// TestBorderGreedyNoDoubleOffers is the same scenario in greedy mode, whose
// searches take drivers from the neighbouring worker's index too: the
// driver's gateway, which every offer passes, refuses one to a driver who
// holds another or is on a trip, and the worker moves on to its next
// candidate. Every trip still ends.
func TestBorderGreedyNoDoubleOffers(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	if problems := borderRun(t, ModeGreedy, seed); len(problems) > 0 {
		t.Fatalf("%d problems, e.g. %v", len(problems), problems[:min(len(problems), 5)])
	}
}

// borderRun runs the border scenario and returns its violations.
func borderRun(t *testing.T, mode DispatchMode, seed uint64) []string {
	const (
		res     = 7
		drivers = 24
		trips   = 40
	)
	rng := rand.New(rand.NewPCG(seed, 3))
	var rngMu sync.Mutex
	pool := dial.NewPool(
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.HeaderCredentials{Principal: auth.Principal{Role: auth.RoleService, Subject: "test"}}),
	)
	t.Cleanup(func() { pool.Close() })
	members := ring.NewStatic()
	client := matchingclient.New(members, pool, res)
	book := &offerBook{held: map[string]string{}, assigned: map[string]string{}}
	store := &fakeTrips{trips: map[string]*commonv1.Trip{}, drivers: map[string]string{}, noDriver: map[string]bool{}, book: book}

	ctx, cancel := context.WithCancel(context.Background())
	var answers sync.WaitGroup
	gw := &fakeGateway{book: book}
	gw.answer = func(driverID string, o *driverv1.Offer) {
		rngMu.Lock()
		p, delay := rng.Float64(), time.Duration(50+rng.IntN(900))*time.Millisecond
		rngMu.Unlock()
		if p < 0.3 {
			return // silent: the offer lapses
		}
		decision := driverv1.OfferDecision_OFFER_DECISION_DECLINE
		if p < 0.55 {
			decision = driverv1.OfferDecision_OFFER_DECISION_ACCEPT
		}
		answers.Add(1)
		go func() {
			defer answers.Done()
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			// From the driver's side the offer ends when it answers.
			book.drop(driverID, o.GetOfferId())
			_, _ = client.ReplyOffer(ctx, &matchingv1.ReplyOfferRequest{
				OfferId: o.GetOfferId(), TripId: o.GetTripId(), DriverId: driverID, Decision: decision, Pickup: o.GetPickup(),
			})
		}()
	}
	gwAddr := serve(t, func(s *grpc.Server) { driverv1.RegisterDriverGatewayServiceServer(s, gw) })
	tripAddr := serve(t, func(s *grpc.Server) { tripv1.RegisterTripServiceServer(s, store) })
	tripConn, err := pool.Get(tripAddr)
	if err != nil {
		t.Fatal(err)
	}

	var engines []*Engine
	var ms []ring.Member
	var running sync.WaitGroup
	for i := range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		self := ring.Member{ID: fmt.Sprintf("m%d", i), Address: lis.Addr().String()}
		ms = append(ms, self)
		top := dispatch.DefaultTopology()
		top.PartitionResolution = res
		top.DispatchDeadline = 8 * time.Second
		cfg := DefaultConfig(self, top)
		cfg.Mode, cfg.BatchWindow, cfg.OfferTimeout = mode, MinBatchWindow, 1500*time.Millisecond
		e, err := NewEngine(cfg, Deps{Membership: members, Peers: pool, Drivers: driverclient.New(pool), Trips: tripclient.New(tripConn), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		authn := auth.HeaderAuthenticator{}
		srv := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor(authn)), grpc.ChainStreamInterceptor(auth.StreamServerInterceptor(authn)))
		NewHandler(e, make(chan struct{})).Register(srv)
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		engines = append(engines, e)
		running.Add(1)
		go func() { defer running.Done(); e.Run(ctx) }()
	}
	members.Set(ms...)
	t.Cleanup(func() {
		cancel()
		running.Wait()
		answers.Wait()
	})
	r, _ := members.Ring()
	centre := borderPoint(t, r, res)
	near := func(maxM float64) geo.LatLng {
		rngMu.Lock()
		defer rngMu.Unlock()
		return geo.Destination(centre, rng.Float64()*360, rng.Float64()*maxM).ToE7().LatLng()
	}

	// Drivers either side of the border, each indexed by its owner.
	now := time.Now()
	perWorker := map[string]int{}
	for i := range drivers {
		loc := &matchingv1.DriverLocation{
			DriverId: fmt.Sprintf("d%02d", i), Position: toProtoLatLng(near(1500)),
			Product: commonv1.Product_PRODUCT_STANDARD, Status: matchingv1.DriverStatus_DRIVER_STATUS_AVAILABLE,
			GatewayAddress: gwAddr, RecordedAt: timestamppb.New(now),
		}
		resp := engines[0].Ingest(&matchingv1.IngestLocationsRequest{Locations: []*matchingv1.DriverLocation{loc}})
		owner := engines[0]
		for _, no := range resp.GetNotOwned() {
			i := slices.IndexFunc(engines, func(e *Engine) bool { return e.cfg.Self.ID == no.GetOwner().GetOwnerId() })
			owner = engines[i]
			owner.Ingest(&matchingv1.IngestLocationsRequest{Locations: no.GetLocations()})
		}
		perWorker[owner.cfg.Self.ID]++
	}
	if len(perWorker) != 2 {
		t.Fatalf("drivers per worker %v: the border has one side only", perWorker)
	}

	// Requests on the border, a few at a time, to whichever worker owns
	// each pickup.
	perOwner := map[string]int{}
	for i := range trips {
		pickup := near(800)
		trip := &commonv1.Trip{
			Id: uuid.NewString(), RiderId: fmt.Sprintf("r%02d", i), Pickup: toProtoLatLng(pickup), Dropoff: toProtoLatLng(near(3000)),
			State: commonv1.TripState_TRIP_STATE_REQUESTED, Product: commonv1.Product_PRODUCT_STANDARD, CreatedAt: timestamppb.Now(),
		}
		store.mu.Lock()
		store.trips[trip.GetId()] = trip
		store.mu.Unlock()
		resp, err := client.Dispatch(ctx, &matchingv1.DispatchRequest{Trip: trip})
		if err != nil || !resp.GetStarted() {
			t.Fatalf("dispatch %d: %v %v", i, resp, err)
		}
		m, _ := r.Owner(mustPartition(t, pickup, res))
		perOwner[m.ID]++
		if i%8 == 7 {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if len(perOwner) != 2 {
		t.Fatalf("requests per worker %v: want both sides of the border", perOwner)
	}
	deadline := time.Now().Add(30 * time.Second)
	for store.ended() < trips {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d trips ended", store.ended(), trips)
		}
		time.Sleep(100 * time.Millisecond)
	}
	book.mu.Lock()
	defer book.mu.Unlock()
	t.Logf("%s: drivers %v, requests %v: %d offers, %d assigned, %d no driver; %d double offers, %d offers to drivers on a trip",
		mode, perWorker, perOwner, book.offers, len(book.assigned), len(store.noDriver), len(book.overlaps), len(book.late))
	if book.offers == 0 || len(book.assigned) == 0 {
		t.Fatal("nothing was offered or assigned")
	}
	return append(slices.Clone(book.overlaps), book.late...)
}

func mustPartition(t *testing.T, p geo.LatLng, res int) uint64 {
	t.Helper()
	c, err := geo.CellAt(p, res)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(c)
}

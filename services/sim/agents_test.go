package sim

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/geo"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
)

func newTestDriver(seed uint64) *driverAgent {
	cfg := validConfig()
	return &driverAgent{id: "d1", cfg: cfg, rec: newRecorder(), rng: rand.New(rand.NewPCG(seed, 1))}
}

func TestDriverLocation(t *testing.T) {
	downtown := geo.LatLng{Lat: 37.7749, Lng: -122.4194}
	far := geo.LatLng{Lat: 37.80, Lng: -122.40}
	near := geo.Destination(downtown, 90, 5) // 5 m east: within one second at trip speed
	northEdge := geo.LatLng{Lat: SanFrancisco.MaxLat - 1e-6, Lng: -122.45}
	outside := geo.LatLng{Lat: SanFrancisco.MaxLat + 0.05, Lng: -122.45}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		pos       geo.LatLng
		target    *geo.LatLng
		lastSent  time.Time
		wantMoved float64 // metres, ±2 %
		wantSpeed float32
		wantAt    *geo.LatLng // exact destination, if any
	}{
		{"first sample does not move", downtown, nil, time.Time{}, 0, cruiseMPS, &downtown},
		{"cruising one second", downtown, nil, now.Add(-time.Second), cruiseMPS, cruiseMPS, nil},
		{"cruising two seconds", downtown, nil, now.Add(-2 * time.Second), 2 * cruiseMPS, cruiseMPS, nil},
		{"a stale sample does not teleport", downtown, nil, now.Add(-time.Minute), 0, cruiseMPS, &downtown},
		{"driving to a far target", downtown, &far, now.Add(-time.Second), driveMPS, driveMPS, nil},
		{"a target within reach is reached exactly", downtown, &near, now.Add(-time.Second), 5, driveMPS, &near},
		{"never leaves the city", northEdge, &outside, now.Add(-time.Second), 0, driveMPS, &northEdge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(3)
			d.pos, d.target, d.lastSent = tt.pos, tt.target, tt.lastSent
			var before float64
			if tt.target != nil {
				before = geo.Distance(tt.pos, *tt.target)
			}
			m := d.location(now).GetLocation()
			got := geo.LatLng{Lat: m.GetPosition().GetLat(), Lng: m.GetPosition().GetLng()}
			if got != d.pos {
				t.Errorf("reported %v, but the driver is at %v", got, d.pos)
			}
			if !d.cfg.City.Contains(got) {
				t.Errorf("position %v left the city", got)
			}
			if moved := geo.Distance(tt.pos, got); moved < tt.wantMoved*0.98-0.01 || moved > tt.wantMoved*1.02+0.01 {
				t.Errorf("moved %.3f m, want %.1f m", moved, tt.wantMoved)
			}
			if tt.wantAt != nil && geo.Distance(got, *tt.wantAt) > 0.01 {
				t.Errorf("at %v, want %v", got, *tt.wantAt)
			}
			if tt.target != nil && tt.wantMoved > 0 {
				if after := geo.Distance(got, *tt.target); after > before-tt.wantMoved*0.98 {
					t.Errorf("distance to target %.1f → %.1f m: not driving towards it", before, after)
				}
			}
			if m.GetSpeedMps() != tt.wantSpeed {
				t.Errorf("speed %v, want %v", m.GetSpeedMps(), tt.wantSpeed)
			}
			if h := m.GetHeadingDeg(); h < 0 || h >= 360 {
				t.Errorf("heading %v outside [0, 360)", h)
			}
			if !m.GetRecordedAt().AsTime().Equal(now) || m.GetAccuracyM() <= 0 {
				t.Errorf("recorded_at %v accuracy %v", m.GetRecordedAt().AsTime(), m.GetAccuracyM())
			}
			if !d.lastSent.Equal(now) {
				t.Errorf("lastSent = %v, want %v", d.lastSent, now)
			}
		})
	}
}

// A long random walk stays in the city and keeps a normalised heading.
func TestDriverWalkStaysInCity(t *testing.T) {
	d := newTestDriver(9)
	d.cfg.City = BBox{MinLat: 37.770, MinLng: -122.420, MaxLat: 37.772, MaxLng: -122.418} // ~200 m square
	d.pos = geo.LatLng{Lat: 37.771, Lng: -122.419}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d.lastSent = now
	for i := range 2000 {
		now = now.Add(2 * time.Second)
		m := d.location(now).GetLocation()
		p := geo.LatLng{Lat: m.GetPosition().GetLat(), Lng: m.GetPosition().GetLng()}
		if !d.cfg.City.Contains(p) {
			t.Fatalf("step %d: %v left the city", i, p)
		}
		if h := m.GetHeadingDeg(); h < 0 || h >= 360 {
			t.Fatalf("step %d: heading %v", i, h)
		}
	}
}

func TestDriverAnswer(t *testing.T) {
	tests := []struct {
		name   string
		accept float64
		onTrip string
		want   driverv1.OfferDecision
	}{
		{"always accepts", 1, "", driverv1.OfferDecision_OFFER_DECISION_ACCEPT},
		{"never accepts", 0, "", driverv1.OfferDecision_OFFER_DECISION_DECLINE},
		{"busy drivers decline", 1, "other-trip", driverv1.OfferDecision_OFFER_DECISION_DECLINE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(1)
			d.cfg.AcceptProbability, d.cfg.ReplyDelay, d.onTrip = tt.accept, time.Millisecond, tt.onTrip
			d.rec.requestedTrip("t1", time.Now(), 0)
			replies := make(chan *driverv1.OfferReply, 1)
			d.answer(context.Background(), &driverv1.Offer{OfferId: "o1", TripId: "t1"}, replies)
			var r *driverv1.OfferReply
			select {
			case r = <-replies:
			case <-time.After(10 * time.Second):
				t.Fatal("no reply")
			}
			if r.GetOfferId() != "o1" || r.GetTripId() != "t1" || r.GetDecision() != tt.want {
				t.Errorf("reply %v, want %v to o1/t1", r, tt.want)
			}
			s := d.rec.snapshot()
			accepted := tt.want == driverv1.OfferDecision_OFFER_DECISION_ACCEPT
			if s.OffersReceived != 1 || (s.OffersAccepted == 1) != accepted || s.OffersAccepted+s.OffersDeclined != 1 {
				t.Errorf("offers received %d accepted %d declined %d", s.OffersReceived, s.OffersAccepted, s.OffersDeclined)
			}
		})
	}
	t.Run("no reply once the session ended", func(t *testing.T) {
		d := newTestDriver(1)
		d.cfg.AcceptProbability, d.cfg.ReplyDelay = 1, time.Millisecond
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		replies := make(chan *driverv1.OfferReply) // nobody reads: the timer must give up
		d.answer(ctx, &driverv1.Offer{OfferId: "o1", TripId: "t1"}, replies)
		// Nothing to wait for: goleak (TestMain) fails the package if the
		// timer's goroutine stays blocked sending the reply.
	})
}

func TestDriveTime(t *testing.T) {
	d := newTestDriver(1)
	d.cfg.DriveTime = 0
	if got := d.driveTime(); got != 20*time.Second {
		t.Errorf("default drive time %v, want 20s", got)
	}
	d.cfg.DriveTime = 1500 * time.Millisecond
	if got := d.driveTime(); got != 1500*time.Millisecond {
		t.Errorf("drive time %v, want 1.5s", got)
	}
}

func TestRideTerminal(t *testing.T) {
	tests := []struct {
		state    commonv1.TripState
		reason   string
		terminal bool
		want     Stats
	}{
		{commonv1.TripState_TRIP_STATE_REQUESTED, "", false, Stats{InFlight: 1}},
		{commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, "", false, Stats{InFlight: 1}},
		{commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED, "", false, Stats{InFlight: 1}},
		{commonv1.TripState_TRIP_STATE_IN_PROGRESS, "", false, Stats{InFlight: 1}},
		{commonv1.TripState_TRIP_STATE_COMPLETED, "", true, Stats{Completed: 1}},
		{commonv1.TripState_TRIP_STATE_CANCELLED, "rider_cancelled", true, Stats{Cancelled: 1, CancelReasons: map[string]int{"rider_cancelled": 1}}},
		{commonv1.TripState_TRIP_STATE_NO_DRIVER_FOUND, "no_candidates", true, Stats{NoDriver: 1, NoDriverReasons: map[string]int{"no_candidates": 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			r := &ride{rec: newRecorder()}
			r.rec.do(func(s *Stats) { s.InFlight = 1 })
			if got := r.terminal(&commonv1.Trip{Id: "t1", State: tt.state, EndReason: tt.reason}); got != tt.terminal {
				t.Errorf("terminal = %v, want %v", got, tt.terminal)
			}
			s := r.rec.snapshot()
			if s.Completed != tt.want.Completed || s.Cancelled != tt.want.Cancelled || s.NoDriver != tt.want.NoDriver || s.InFlight != tt.want.InFlight {
				t.Errorf("stats %+v, want %+v", s, tt.want)
			}
			for k, v := range tt.want.CancelReasons {
				if s.CancelReasons[k] != v {
					t.Errorf("cancel reasons %v, want %v", s.CancelReasons, tt.want.CancelReasons)
				}
			}
			for k, v := range tt.want.NoDriverReasons {
				if s.NoDriverReasons[k] != v {
					t.Errorf("no-driver reasons %v, want %v", s.NoDriverReasons, tt.want.NoDriverReasons)
				}
			}
		})
	}
}

// stubRiders answers GetTrip; any other call panics (nil embedded client).
type stubRiders struct {
	riderv1.RiderServiceClient
	trip  *commonv1.Trip
	err   error
	calls int
}

func (s *stubRiders) GetTrip(context.Context, *riderv1.GetTripRequest, ...grpc.CallOption) (*riderv1.GetTripResponse, error) {
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	return &riderv1.GetTripResponse{Trip: s.trip}, nil
}

// A refused cancel is no error only when the ride really moved on.
func TestTooLateToCancel(t *testing.T) {
	denied := status.Error(codes.PermissionDenied, "trip IN_PROGRESS: cancel by rider: actor not allowed")
	tests := []struct {
		name      string
		cancelErr error
		state     commonv1.TripState
		getErr    error
		want      bool
		wantCalls int
	}{
		{"trip already ended", status.Error(codes.FailedPrecondition, "invalid transition"), 0, nil, true, 0},
		{"refused: the ride started", denied, commonv1.TripState_TRIP_STATE_IN_PROGRESS, nil, true, 1},
		{"refused: the ride finished since", denied, commonv1.TripState_TRIP_STATE_COMPLETED, nil, true, 1},
		{"refused while waiting for a driver", denied, commonv1.TripState_TRIP_STATE_REQUESTED, nil, false, 1},
		{"refused while the driver comes", denied, commonv1.TripState_TRIP_STATE_DRIVER_ASSIGNED, nil, false, 1},
		{"refused while the driver waits", denied, commonv1.TripState_TRIP_STATE_DRIVER_ARRIVED, nil, false, 1},
		{"refused and the trip cannot be read", denied, 0, status.Error(codes.NotFound, "no trip"), false, 1},
		{"platform unavailable", status.Error(codes.Unavailable, "down"), 0, nil, false, 0},
		{"internal error", status.Error(codes.Internal, "bug"), 0, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := &stubRiders{trip: &commonv1.Trip{Id: "t1", State: tt.state}, err: tt.getErr}
			r := &ride{client: stub, rec: newRecorder()}
			if got := r.tooLateToCancel(context.Background(), "t1", tt.cancelErr); got != tt.want {
				t.Errorf("tooLateToCancel = %v, want %v", got, tt.want)
			}
			if stub.calls != tt.wantCalls {
				t.Errorf("%d GetTrip calls, want %d", stub.calls, tt.wantCalls)
			}
		})
	}
}

// TestDriverCountsCumulativeAcks: an accepted location Ack settles every
// pending sample up to its seq; a refusal only its own.
func TestDriverCountsCumulativeAcks(t *testing.T) {
	d := newTestDriver(1)
	d.locSeqs = map[uint64]bool{2: true, 3: true, 4: true, 6: true}
	d.ackLocations(&driverv1.Ack{Seq: 3, Accepted: false, Reason: "rate_limited"})
	d.ackLocations(&driverv1.Ack{Seq: 5, Accepted: true}) // an availability change's
	d.ackLocations(&driverv1.Ack{Seq: 4, Accepted: true})
	if got := d.rec.snapshot().LocationUpdates; got != 2 {
		t.Errorf("LocationUpdates = %d, want 2 (seqs 2 and 4)", got)
	}
	if len(d.locSeqs) != 1 || !d.locSeqs[6] {
		t.Errorf("pending %v, want only seq 6", d.locSeqs)
	}
}

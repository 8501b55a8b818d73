package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// offerGateway is a gateway with no peers whose clock is *now, and one
// driver session on it.
func offerGateway(t *testing.T, now *time.Time) (*Gateway, *session) {
	t.Helper()
	pool := dial.NewPool()
	t.Cleanup(func() { pool.Close() })
	cfg := DefaultConfig("127.0.0.1:1")
	cfg.SendQueue = 1024
	cfg.MessageBurst = 1024
	mc := matchingclient.New(ring.NewStatic(), pool, dispatch.DefaultTopology().PartitionResolution)
	g, err := NewGateway(cfg, mc, nil, slog.New(slog.DiscardHandler), Telemetry{})
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return *now }
	return g, g.attach("d1", func() {})
}

func pushOffer(t *testing.T, g *Gateway, id, tripID string, expires time.Time) {
	t.Helper()
	offer := &driverv1.Offer{OfferId: id, TripId: tripID, ExpiresAt: timestamppb.New(expires)}
	if err := g.push("d1", &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Offer{Offer: offer}}); err != nil {
		t.Fatal(err)
	}
}

// pushEndedOffer pushes an offer and then the worker's result for it, so
// that it no longer binds the driver (the next offer is accepted) but still
// waits for a reply, as after a worker withdrew it.
func pushEndedOffer(t *testing.T, g *Gateway, id, tripID string, expires time.Time) {
	t.Helper()
	pushOffer(t, g, id, tripID, expires)
	result := &driverv1.OfferResult{OfferId: id, TripId: tripID, Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED}
	if err := g.push("d1", &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_OfferResult{OfferResult: result}}); err != nil {
		t.Fatal(err)
	}
}

// TestOneOfferAtATime: the gateway holding a driver's stream refuses an
// offer while the driver holds another that still binds it, whichever
// worker made them; a reply, the worker's result or the offer's expiry
// frees the driver.
func TestOneOfferAtATime(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	offer := func(id string, expires time.Time) *driverv1.ConnectResponse {
		return &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Offer{Offer: &driverv1.Offer{OfferId: id, TripId: tripUUID(1), ExpiresAt: timestamppb.New(expires)}}}
	}
	for _, tc := range []struct {
		name string
		free func(g *Gateway, s *session, now *time.Time) // ends offer "a"
	}{
		{"the driver replies", func(g *Gateway, s *session, _ *time.Time) {
			s.mu.Lock()
			delete(s.offers, "a") // what reply does before asking matching
			s.mu.Unlock()
		}},
		{"the worker ends the offer", func(g *Gateway, _ *session, _ *time.Time) {
			_ = g.push("d1", &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_OfferResult{OfferResult: &driverv1.OfferResult{
				OfferId: "a", TripId: tripUUID(1), Outcome: driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED}}})
		}},
		{"the offer expires", func(_ *Gateway, _ *session, now *time.Time) { *now = start.Add(10 * time.Second) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := start
			g, s := offerGateway(t, &now)
			if err := g.push("d1", offer("a", start.Add(10*time.Second))); err != nil {
				t.Fatal(err)
			}
			if err := g.push("d1", offer("a", start.Add(10*time.Second))); err != nil {
				t.Fatalf("the same offer pushed again: %v", err)
			}
			err := g.push("d1", offer("b", start.Add(10*time.Second)))
			if !errors.Is(err, errOfferOutstanding) {
				t.Fatalf("a second offer while the first binds: %v, want %v", err, errOfferOutstanding)
			}
			if st, _ := status.FromError(toStatus(err)); st.Code() != codes.FailedPrecondition {
				t.Fatalf("status %v, want FailedPrecondition", st)
			}
			tc.free(g, s, &now)
			if err := g.push("d1", offer("b", now.Add(10*time.Second))); err != nil {
				t.Fatalf("after %s: %v", tc.name, err)
			}
		})
	}
}

func tripUUID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func heldOffers(s *session) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offers)
}

// TestLapsedOffersLeaveTheSession: offers nobody answers leave the session
// once they lapse (on the driver's next message, or the next offer), with
// no timer per offer.
func TestLapsedOffersLeaveTheSession(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const n = 500
	for _, tc := range []struct {
		name string
		// after lapsing, what the session sees next
		next func(t *testing.T, g *Gateway, s *session, now time.Time)
		want int // offers held afterwards
	}{
		{"a location sample", func(t *testing.T, g *Gateway, s *session, now time.Time) {
			g.handle(context.Background(), s, &driverv1.ConnectRequest{Seq: 1, Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
				Position: &commonv1.LatLng{Lat: 37.77, Lng: -122.41}, AccuracyM: 5, RecordedAt: timestamppb.New(now)}}})
		}, 0},
		{"an availability change", func(t *testing.T, g *Gateway, s *session, now time.Time) {
			g.handle(context.Background(), s, &driverv1.ConnectRequest{Seq: 1, Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
				Availability: driverv1.Availability_AVAILABILITY_OFFLINE}}})
		}, 0},
		{"a new offer", func(t *testing.T, g *Gateway, s *session, now time.Time) {
			pushOffer(t, g, "fresh", tripUUID(777777), now.Add(15*time.Second))
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := start
			g, s := offerGateway(t, &now)
			for i := range n {
				// Expiries spread over a minute: a few lapse at a time.
				pushEndedOffer(t, g, fmt.Sprintf("o%d", i), tripUUID(i), start.Add(time.Duration(i)*60*time.Second/n))
			}
			if got := heldOffers(s); got != n {
				t.Fatalf("%d offers held, want %d", got, n)
			}
			// Expired but within the grace matching's clock gets: kept.
			now = start.Add(time.Second)
			tc.next(t, g, s, now)
			if got := heldOffers(s); got < n {
				t.Fatalf("%d offers held 1 s in, want the %d not yet lapsed", got, n)
			}
			// Half of them lapsed.
			now = start.Add(30*time.Second + offerGrace)
			tc.next(t, g, s, now)
			if got := heldOffers(s); got <= tc.want || got >= n {
				t.Fatalf("%d offers held halfway, want fewer than %d", got, n)
			}
			// All of them.
			now = start.Add(time.Minute + offerGrace + time.Second)
			tc.next(t, g, s, now)
			if got := heldOffers(s); got != tc.want {
				t.Fatalf("%d offers held after every one lapsed, want %d", got, tc.want)
			}
		})
	}
}

// TestReplyToLapsedOffer: a late reply to a lapsed offer is answered
// EXPIRED (what matching answers), once; ids the session never offered, or
// a lapsed offer named with another trip, are unknown_offer as before.
func TestReplyToLapsedOffer(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now := start
	g, s := offerGateway(t, &now)
	for i := range 3 * lapsedOffers {
		pushEndedOffer(t, g, fmt.Sprintf("o%d", i), tripUUID(i), start.Add(15*time.Second))
	}
	now = start.Add(15*time.Second + offerGrace + time.Second)
	seq := uint64(0)
	reply := func(offerID, tripID string) []*driverv1.ConnectResponse {
		seq++
		return g.handle(context.Background(), s, &driverv1.ConnectRequest{Seq: seq, Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: &driverv1.OfferReply{
			OfferId: offerID, TripId: tripID, Decision: driverv1.OfferDecision_OFFER_DECISION_ACCEPT}}})
	}
	// Which offers the session remembers depends on map order; find one.
	var remembered int
	for i := range 3 * lapsedOffers {
		if out := reply(fmt.Sprintf("o%d", i), tripUUID(999999)); out[0].GetAck().GetReason() != errUnknownOffer.Error() {
			t.Fatalf("reply naming another trip: %v", out)
		}
	}
	for i := range 3 * lapsedOffers {
		out := reply(fmt.Sprintf("o%d", i), tripUUID(i))
		switch {
		case len(out) == 2 && out[0].GetAck().GetAccepted():
			r := out[1].GetOfferResult()
			if r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_EXPIRED || r.GetOfferId() != fmt.Sprintf("o%d", i) || r.GetTripId() != tripUUID(i) {
				t.Fatalf("late reply answered %v", r)
			}
			remembered++
			// Answered once, like a held offer.
			if again := reply(fmt.Sprintf("o%d", i), tripUUID(i)); again[0].GetAck().GetReason() != errUnknownOffer.Error() {
				t.Fatalf("second late reply: %v", again)
			}
		case len(out) == 1 && out[0].GetAck().GetReason() == errUnknownOffer.Error():
		default:
			t.Fatalf("late reply answered %v", out)
		}
	}
	if remembered != lapsedOffers {
		t.Fatalf("%d lapsed offers remembered, want %d", remembered, lapsedOffers)
	}
	if out := reply("never-offered", tripUUID(0)); len(out) != 1 || out[0].GetAck().GetReason() != errUnknownOffer.Error() {
		t.Fatalf("reply to an unknown offer: %v", out)
	}
}

// TestPushQueueBound: pushes wait in the session's queue for its stream;
// once SendQueue are waiting the app is taken as not reading and its
// stream is cut.
func TestPushQueueBound(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	g, _ := offerGateway(t, &now)
	g.cfg.SendQueue = 3
	kicked := 0
	s := g.attach("d2", func() { kicked++ })
	msg := &driverv1.ConnectResponse{Msg: &driverv1.ConnectResponse_Availability{Availability: &driverv1.AvailabilityChange{}}}
	for i := range 3 {
		if err := g.push("d2", msg); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if err := g.push("d2", msg); !errors.Is(err, errNotReading) || kicked != 1 {
		t.Fatalf("push beyond the queue: %v, kicked %d times; want errNotReading and the stream cut", err, kicked)
	}
	if q := s.takeQueue(); len(q) != 3 {
		t.Fatalf("queue held %d, want 3", len(q))
	}
	select {
	case <-s.wake:
	default:
		t.Fatal("the stream was not woken for its pushes")
	}
}

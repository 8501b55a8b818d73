package driver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// FuzzConnectMessages drives one driver session with a fuzzed tape of
// stream messages: whatever arrives, the gateway must not panic, must answer
// every message with exactly one Ack for its seq (an accepted location
// sample with at most one: those are acknowledged cumulatively), and must
// refuse what protovalidate refuses.
func FuzzConnectMessages(f *testing.F) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	seed := func(msgs ...*driverv1.ConnectRequest) {
		var tape []byte
		for _, m := range msgs {
			b, err := proto.Marshal(m)
			if err != nil {
				f.Fatal(err)
			}
			tape = append(tape, byte(len(b)))
			tape = append(tape, b...)
		}
		f.Add(tape)
	}
	loc := func(lat, lng float64, at time.Time) *driverv1.ConnectRequest {
		return &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
			Position: &commonv1.LatLng{Lat: lat, Lng: lng}, SpeedMps: 10, AccuracyM: 5, RecordedAt: timestamppb.New(at)}}}
	}
	online := &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
		Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD}}}
	seed(online, loc(37.77, -122.41, now), loc(37.771, -122.41, now.Add(time.Second)))
	seed(loc(89.9999, 179.9999, now), loc(-89.9999, -180, now.Add(time.Second)))
	seed(online, loc(37.77, -122.41, now), loc(40.7, -74, now.Add(time.Second)))
	seed(&driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_OfferReply{OfferReply: &driverv1.OfferReply{OfferId: "o", TripId: "0b8f3f2e-6f43-4a4e-9a52-3b8f0c1d2e3f", Decision: driverv1.OfferDecision_OFFER_DECISION_ACCEPT}}})
	seed(&driverv1.ConnectRequest{})

	f.Fuzz(func(t *testing.T, tape []byte) {
		pool := dial.NewPool()
		defer pool.Close()
		cfg := DefaultConfig("127.0.0.1:1")
		mc := matchingclient.New(ring.NewStatic(), pool, dispatch.DefaultTopology().PartitionResolution)
		g, err := NewGateway(cfg, mc, nil, slog.New(slog.DiscardHandler), Telemetry{})
		if err != nil {
			t.Fatal(err)
		}
		g.now = func() time.Time { return now }
		s := g.attach("fuzz-driver", func() {})
		seq := uint64(0)
		for len(tape) > 0 {
			n := int(tape[0])
			tape = tape[1:]
			if n > len(tape) {
				n = len(tape)
			}
			var req driverv1.ConnectRequest
			if proto.Unmarshal(tape[:n], &req) != nil {
				tape = tape[n:]
				continue
			}
			tape = tape[n:]
			seq++
			req.Seq = seq
			valid := g.validator.Validate(&req) == nil
			replies := g.handle(context.Background(), s, &req)
			acks := 0
			for _, r := range replies {
				if a := r.GetAck(); a != nil {
					acks++
					if a.GetSeq() != seq {
						t.Fatalf("ack for seq %d, want %d", a.GetSeq(), seq)
					}
					if !valid && a.GetAccepted() {
						t.Fatalf("invalid message %v accepted", &req)
					}
				}
			}
			// An accepted sample may wait for a later cumulative Ack: then
			// it is owed.
			owed := acks == 0 && req.GetLocation() != nil && s.owedAck(func() time.Time { return now }).GetAck().GetSeq() == seq
			if acks != 1 && !owed {
				t.Fatalf("%d acks for one message", acks)
			}
		}
	})
}

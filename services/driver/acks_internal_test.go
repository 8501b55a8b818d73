package driver

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
)

// TestSampleAcksAreCumulative: the first accepted sample is acknowledged at
// once, later ones together once SampleAckInterval has passed (or ahead of
// the next message the gateway sends); refusals are never delayed.
func TestSampleAcksAreCumulative(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	g, s := offerGateway(t, &now)
	g.cfg.SampleAckInterval = 30 * time.Second
	lat := 37.77
	sample := func(seq uint64, at time.Time) []*driverv1.ConnectResponse {
		lat += 0.0001
		return g.handle(context.Background(), s, &driverv1.ConnectRequest{Seq: seq, Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
			Position: &commonv1.LatLng{Lat: lat, Lng: -122.41}, SpeedMps: 10, AccuracyM: 5, RecordedAt: timestamppb.New(at)}}})
	}
	wantAck := func(out []*driverv1.ConnectResponse, seq uint64, accepted bool) {
		t.Helper()
		if len(out) != 1 || out[0].GetAck().GetSeq() != seq || out[0].GetAck().GetAccepted() != accepted {
			t.Fatalf("replies %v, want one Ack for seq %d (accepted %v)", out, seq, accepted)
		}
	}

	wantAck(sample(1, now), 1, true)
	for seq := uint64(2); seq <= 5; seq++ {
		now = now.Add(4 * time.Second)
		if out := sample(seq, now); len(out) != 0 {
			t.Fatalf("sample %d: replies %v, want none yet", seq, out)
		}
	}
	// A refusal is answered at once; the accepted samples before it are
	// still owed, and owed first.
	now = now.Add(4 * time.Second)
	wantAck(sample(6, now.Add(time.Hour)), 6, false)
	if a := s.owedAck(func() time.Time { return now }).GetAck(); a.GetSeq() != 5 || !a.GetAccepted() {
		t.Fatalf("owed %v, want accepted through seq 5", a)
	}
	if a := s.owedAck(func() time.Time { return now }); a != nil {
		t.Fatalf("owed twice: %v", a)
	}
	// Once the last acknowledgement is SampleAckInterval old, the next
	// accepted sample is acknowledged (covering any before it).
	now = now.Add(4 * time.Second)
	if out := sample(7, now); len(out) != 0 {
		t.Fatalf("sample 7: replies %v, want none yet", out)
	}
	now = now.Add(30 * time.Second)
	wantAck(sample(8, now), 8, true)
	if a := s.owedAck(func() time.Time { return now }); a != nil {
		t.Fatalf("owed %v after a cumulative Ack", a)
	}
}

package driver

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/dial"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/matching/ring"
)

// BenchmarkHandleLocation is the gateway's work for one location sample
// of an online driver, from the decoded message to its place in the next
// batch (validation, rate limits, plausibility, partition, the ack
// decision): what Connect does per sample besides gRPC and the runtime.
// Samples rotate over 1,000 drivers on a clock that gives each one per
// 1.1 s, so none is rate limited.
func BenchmarkHandleLocation(b *testing.B) {
	pool := dial.NewPool()
	defer pool.Close()
	mc := matchingclient.New(ring.NewStatic(), pool, dispatch.DefaultTopology().PartitionResolution)
	g, err := NewGateway(DefaultConfig("127.0.0.1:1"), mc, nil, slog.New(slog.DiscardHandler), Telemetry{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	const drivers = 1000
	sessions := make([]*session, drivers)
	reqs := make([]*driverv1.ConnectRequest, drivers)
	ctx := context.Background()
	for i := range sessions {
		sessions[i] = g.attach(fmt.Sprintf("d%d", i), func() {})
		online := &driverv1.ConnectRequest{Seq: 1, Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{
			Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD}}}
		if out := g.handle(ctx, sessions[i], online); !out[0].GetAck().GetAccepted() {
			b.Fatal(out)
		}
		reqs[i] = &driverv1.ConnectRequest{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
			Position: &commonv1.LatLng{Lat: 37.70 + float64(i%100)*0.001, Lng: -122.45 + float64(i/100)*0.001},
			SpeedMps: 5, AccuracyM: 5, HeadingDeg: 90,
		}}}
	}
	step := 1100 * time.Millisecond / drivers
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		i := n % drivers
		now = now.Add(step)
		req := reqs[i]
		req.Seq = uint64(n + 2)
		loc := req.GetLocation()
		loc.Position.Lng += 1e-6 // ~0.1 m: a car creeping
		loc.RecordedAt = timestamppb.New(now)
		for _, r := range g.handle(ctx, sessions[i], req) {
			if !r.GetAck().GetAccepted() {
				b.Fatalf("sample refused: %v", r)
			}
		}
	}
}

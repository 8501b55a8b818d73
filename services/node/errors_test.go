package node

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rawCodec puts message bytes on the wire as they are (named "proto", so
// the server sees an ordinary call).
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// leakMarkers are things a status message must never carry: store
// package prefixes, connection-string fields, SQL, driver internals.
var leakMarkers = []string{"sqlstore", "user=", "dbname", "postgres://", "host=", "SQLSTATE", "pgx", "pgconn", "SELECT", "INSERT", "grpc:", "unmarshal", "failed to connect"}

// checkTruthful fails when an app-facing status is Internal or Unknown,
// or its message leaks internals or the database's address.
func checkTruthful(t *testing.T, what string, err error, dbAddr string, want codes.Code) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() == codes.Internal || st.Code() == codes.Unknown || st.Code() != want {
		t.Errorf("%s: %s %q, want %s", what, st.Code(), st.Message(), want)
	}
	for _, m := range append(leakMarkers, dbAddr) {
		if strings.Contains(st.Message(), m) {
			t.Errorf("%s: status message %q carries %q", what, st.Message(), m)
		}
	}
}

// TestTruthfulErrors sends what a broken or hostile app sends (bytes that
// are no protobuf message, strings that are not UTF-8) to every service,
// then takes the trip store's PostgreSQL down under a running platform:
// no app sees Internal or Unknown, and no status message carries SQL, store
// names, DSN fields or the database's address.
func TestTruthfulErrors(t *testing.T) {
	db := pgtest.NewServer(t)
	u, err := url.Parse(db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	dbAddr := u.Host
	ctx := context.Background()
	pool := newTestPool(t, db.DSN())
	if _, err := sqlstore.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	cfg := testConfig(AllServices...)
	cfg.DatabaseURL = db.DSN()
	_, cc := startNodeConfig(t, cfg)

	rider, driver, svc := as(auth.RoleRider, "rider-1"), as(auth.RoleDriver, "driver-1"), as(auth.RoleService, "matching")
	garbage := []byte{0xff, 0xff, 0xff, 0x01, 0x02}
	// Field 1 of every request below is a string (an id): not UTF-8 here.
	badUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe})
	for _, c := range []struct {
		ctx    context.Context
		method string
	}{
		{rider, "/hexride.rider.v1.RiderService/GetTrip"},
		{rider, "/hexride.rider.v1.RiderService/RequestRide"},
		{driver, "/hexride.driver.v1.DriverService/ArriveAtPickup"},
		{svc, "/hexride.trip.v1.TripService/GetTrip"},
		{svc, "/hexride.matching.v1.MatchingService/CancelDispatch"},
		{svc, "/hexride.driver.v1.DriverGatewayService/TakeOffline"},
	} {
		for name, body := range map[string][]byte{"garbage": garbage, "invalid UTF-8": badUTF8} {
			var out []byte
			err := cc.Invoke(c.ctx, c.method, body, &out, grpc.ForceCodecV2(rawCodec{}))
			checkTruthful(t, c.method+" "+name, err, dbAddr, codes.InvalidArgument)
		}
	}
	// A stream: the driver app's Connect, sent garbage as its first message.
	sctx, cancel := context.WithTimeout(driver, 5*time.Second)
	defer cancel()
	stream, err := cc.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/hexride.driver.v1.DriverService/Connect", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(garbage); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for err == nil {
		err = stream.RecvMsg(&out)
	}
	checkTruthful(t, "Connect garbage", err, dbAddr, codes.InvalidArgument)

	// A ride exists; then the database goes away under the platform.
	trip := request(t, cc, "rider-1", "before-outage")
	rc, dc, tc := riderv1.NewRiderServiceClient(cc), driverv1.NewDriverServiceClient(cc), tripv1.NewTripServiceClient(cc)
	q, err := rc.GetQuote(rider, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
	if err != nil {
		t.Fatal(err)
	}
	db.Stop(t)
	during := []struct {
		what string
		call func(ctx context.Context) error
	}{
		{"RequestRide", func(ctx context.Context) error {
			_, err := rc.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: q.GetQuote().GetQuoteId(), IdempotencyKey: "during-outage"})
			return err
		}},
		{"rider GetTrip", func(ctx context.Context) error {
			_, err := rc.GetTrip(ctx, &riderv1.GetTripRequest{TripId: trip.GetId()})
			return err
		}},
		{"rider ListTrips", func(ctx context.Context) error {
			_, err := rc.ListTrips(ctx, &riderv1.ListTripsRequest{})
			return err
		}},
		{"rider CancelRide", func(ctx context.Context) error {
			_, err := rc.CancelRide(ctx, &riderv1.CancelRideRequest{TripId: trip.GetId(), IdempotencyKey: "cancel-1"})
			return err
		}},
		{"driver ArriveAtPickup", func(context.Context) error {
			_, err := dc.ArriveAtPickup(driver, &driverv1.ArriveAtPickupRequest{TripId: trip.GetId(), IdempotencyKey: "arrive-1"})
			return err
		}},
		{"trip GetTrip", func(context.Context) error {
			_, err := tc.GetTrip(svc, &tripv1.GetTripRequest{TripId: trip.GetId()})
			return err
		}},
	}
	for _, c := range during {
		err := c.call(rider)
		checkTruthful(t, c.what+" during outage", err, dbAddr, codes.Unavailable)
		if !hasRetryDelay(err) {
			t.Errorf("%s during outage: %v carries no RetryInfo", c.what, err)
		}
	}
	// Back up: the same requests succeed (the pool reconnects by itself).
	db.Start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := rc.GetTrip(rider, &riderv1.GetTripRequest{TripId: trip.GetId()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetTrip after the database came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hasRetryDelay reports whether err's status tells the app when to retry.
func hasRetryDelay(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return true
		}
	}
	return false
}

func newTestPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

package node

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

// TestSameKeyRequestsShareOneTrip sends 50 concurrent RequestRide calls
// with one idempotency key under the default rate limits (RequestRide: 6
// a minute, burst 3) to a node on PostgreSQL: every call gets the same
// trip, and the store holds one.
func TestSameKeyRequestsShareOneTrip(t *testing.T) {
	db := pgtest.NewServer(t)
	pool := newTestPool(t, db.DSN())
	if _, err := sqlstore.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	cfg := testConfig(AllServices...)
	cfg.DatabaseURL = db.DSN()
	cfg.Security.RateLimit = true
	_, cc := startNodeConfig(t, cfg)
	rc := riderv1.NewRiderServiceClient(cc)
	ctx := as(auth.RoleRider, "r-same-key")
	q, err := rc.GetQuote(ctx, &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := rc.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: q.GetQuote().GetQuoteId(), IdempotencyKey: "one-ride"})
			ids[i], errs[i] = resp.GetTrip().GetId(), err
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("call %d got trip %s, call 0 got %s", i, ids[i], ids[0])
		}
	}
	conn, err := pgx.Connect(context.Background(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var trips int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM trips WHERE rider_id = $1`, "r-same-key").Scan(&trips); err != nil {
		t.Fatal(err)
	}
	if trips != 1 {
		t.Fatalf("store holds %d trips for the rider, want 1", trips)
	}
	// The limit still holds for new requests: burst 3, one spent.
	codesSeen := map[codes.Code]int{}
	for i := range 4 {
		_, err := rc.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: q.GetQuote().GetQuoteId(), IdempotencyKey: "other-" + string(rune('a'+i))})
		codesSeen[status.Code(err)]++
	}
	if codesSeen[codes.ResourceExhausted] != 2 {
		t.Fatalf("4 new keys after the burst: %v, want 2 refused", codesSeen)
	}
}

package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/ratelimit"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

// lockedBuffer collects the audit log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSecurity runs the services with token authentication, the role
// policy and rate limits on, over a real socket, and checks what each kind
// of caller gets.
func TestSecurity(t *testing.T) {
	key, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	auditLog := &lockedBuffer{}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DrainWait, cfg.StopTimeout = 0, 2*time.Second
	cfg.QuoteKey = testKey
	cfg.Security = Security{JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience,
		ServiceKeyDir: key.Dir, RateLimit: true, Audit: auditLog}
	n, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}()
	cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	mint := func(k *auth.DevKey, role auth.Role, sub string, ttl time.Duration, at time.Time, audience string) string {
		tok, err := auth.Mint(k.Private, k.Kid, auth.DevIssuer, audience, role, sub, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	as := func(role auth.Role, sub string) context.Context {
		return auth.BearerContext(context.Background(), mint(key, role, sub, time.Hour, time.Now(), auth.DevAudience))
	}
	rider := riderv1.NewRiderServiceClient(cc)
	drv := driverv1.NewDriverServiceClient(cc)
	trips := tripv1.NewTripServiceClient(cc)
	svc := as(auth.RoleService, "test")

	// A trip of rider B, assigned to driver D1.
	created, err := trips.CreateTrip(svc, &tripv1.CreateTripRequest{IdempotencyKey: "sec-1", RiderId: "rider-b", Pickup: sfPickup, Dropoff: sfDropoff,
		Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 900, Currency: "USD"}})
	if err != nil {
		t.Fatal(err)
	}
	tripID := created.GetTrip().GetId()
	if _, err := trips.AssignDriver(svc, &tripv1.AssignDriverRequest{TripId: tripID, DriverId: "driver-1", IdempotencyKey: "sec-a"}); err != nil {
		t.Fatal(err)
	}
	quote := &riderv1.GetQuoteRequest{Pickup: sfPickup, Dropoff: sfDropoff, Product: commonv1.Product_PRODUCT_STANDARD}
	expired := mint(key, auth.RoleRider, "rider-a", time.Hour, time.Now().Add(-3*time.Hour), auth.DevAudience)
	forged := mint(other, auth.RoleRider, "rider-a", time.Hour, time.Now(), auth.DevAudience)
	wrongAudience := mint(key, auth.RoleRider, "rider-a", time.Hour, time.Now(), "someone-else")

	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"no token", func() error { _, err := rider.GetQuote(context.Background(), quote); return err }, codes.Unauthenticated},
		{"expired token", func() error {
			_, err := rider.GetQuote(auth.BearerContext(context.Background(), expired), quote)
			return err
		}, codes.Unauthenticated},
		{"token signed by another key", func() error {
			_, err := rider.GetQuote(auth.BearerContext(context.Background(), forged), quote)
			return err
		}, codes.Unauthenticated},
		{"token for another audience", func() error {
			_, err := rider.GetQuote(auth.BearerContext(context.Background(), wrongAudience), quote)
			return err
		}, codes.Unauthenticated},
		{"garbage token", func() error {
			_, err := rider.GetQuote(auth.BearerContext(context.Background(), "not.a.jwt"), quote)
			return err
		}, codes.Unauthenticated},
		{"development header is not accepted", func() error {
			_, err := rider.GetQuote(auth.OutgoingContext(context.Background(), auth.Principal{Role: auth.RoleRider, Subject: "rider-a"}), quote)
			return err
		}, codes.Unauthenticated},
		{"valid rider token", func() error { _, err := rider.GetQuote(as(auth.RoleRider, "rider-a"), quote); return err }, codes.OK},
		{"rider A reads rider B's trip", func() error {
			_, err := rider.GetTrip(as(auth.RoleRider, "rider-a"), &riderv1.GetTripRequest{TripId: tripID})
			return err
		}, codes.PermissionDenied},
		{"rider A cancels rider B's trip", func() error {
			_, err := rider.CancelRide(as(auth.RoleRider, "rider-a"), &riderv1.CancelRideRequest{TripId: tripID, IdempotencyKey: "x"})
			return err
		}, codes.PermissionDenied},
		{"rider B reads its trip", func() error {
			_, err := rider.GetTrip(as(auth.RoleRider, "rider-b"), &riderv1.GetTripRequest{TripId: tripID})
			return err
		}, codes.OK},
		{"driver acts on another driver's trip", func() error {
			_, err := drv.ArriveAtPickup(as(auth.RoleDriver, "driver-2"), &driverv1.ArriveAtPickupRequest{TripId: tripID, IdempotencyKey: "x"})
			return err
		}, codes.PermissionDenied},
		{"rider calls an internal RPC", func() error {
			_, err := matchingv1.NewMatchingServiceClient(cc).Partitions(as(auth.RoleRider, "rider-a"), &matchingv1.PartitionsRequest{})
			return err
		}, codes.PermissionDenied},
		{"rider creates a trip directly", func() error {
			_, err := trips.CreateTrip(as(auth.RoleRider, "rider-a"), &tripv1.CreateTripRequest{IdempotencyKey: "k", RiderId: "rider-a", Pickup: sfPickup, Dropoff: sfDropoff,
				Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1, Currency: "USD"}})
			return err
		}, codes.PermissionDenied},
		{"driver calls the rider API", func() error { _, err := rider.GetQuote(as(auth.RoleDriver, "driver-1"), quote); return err }, codes.PermissionDenied},
		{"dispatcher reads any trip", func() error {
			_, err := trips.GetTrip(as(auth.RoleDispatcher, "ops"), &tripv1.GetTripRequest{TripId: tripID})
			return err
		}, codes.OK},
		{"dispatcher cannot assign drivers", func() error {
			_, err := trips.AssignDriver(as(auth.RoleDispatcher, "ops"), &tripv1.AssignDriverRequest{TripId: tripID, DriverId: "d", IdempotencyKey: "k"})
			return err
		}, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.want {
				t.Fatalf("code = %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("burst over the RequestRide limit", func(t *testing.T) {
		ctx := as(auth.RoleRider, "rider-burst")
		var last error
		// Distinct keys: retries of one key pass free (TestSameKeyRequestsShareOneTrip).
		for i := range 10 {
			_, last = rider.RequestRide(ctx, &riderv1.RequestRideRequest{QuoteId: "q", IdempotencyKey: fmt.Sprint("k", i)})
			if status.Code(last) == codes.ResourceExhausted {
				break
			}
		}
		if status.Code(last) != codes.ResourceExhausted {
			t.Fatalf("10 requests in a burst: last %v", last)
		}
		if d, ok := ratelimit.RetryDelay(last); !ok || d <= 0 {
			t.Fatalf("no retry info on %v", last)
		}
		// Another rider is not affected.
		if _, err := rider.GetQuote(as(auth.RoleRider, "rider-calm"), quote); err != nil {
			t.Fatalf("another rider limited: %v", err)
		}
	})

	t.Run("teleporting driver", func(t *testing.T) {
		ctx, cancel := context.WithCancel(as(auth.RoleDriver, "driver-teleport"))
		defer cancel()
		s, err := drv.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i, m := range []*driverv1.ConnectRequest{location(sfPickup, now), location(&commonv1.LatLng{Lat: 51.5, Lng: -0.12}, now.Add(2*time.Second))} {
			m.Seq = uint64(i + 1)
			if err := s.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		if a := next(t, s, ackFor(2)); a.GetAccepted() || a.GetReason() != "implausible_motion" {
			t.Fatalf("San Francisco to London in 2 s: %v", a)
		}
		// The dispatcher sees the driver flagged; a rider may not look.
		gw := driverv1.NewDriverGatewayServiceClient(cc)
		if _, err := gw.ListFlaggedDrivers(as(auth.RoleRider, "rider-a"), &driverv1.ListFlaggedDriversRequest{Limit: 10}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("rider listing flagged drivers: %v", err)
		}
		resp, err := gw.ListFlaggedDrivers(as(auth.RoleDispatcher, "ops"), &driverv1.ListFlaggedDriversRequest{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetDrivers()) != 1 || resp.GetDrivers()[0].GetDriverId() != "driver-teleport" ||
			resp.GetDrivers()[0].GetLastReason() != "implausible_motion" || resp.GetDrivers()[0].GetLastPosition().GetLat() != sfPickup.GetLat() {
			t.Fatalf("flagged drivers: %v", resp.GetDrivers())
		}
	})

	log := auditLog.String()
	if !strings.Contains(log, `"outcome":"denied"`) || !strings.Contains(log, `"outcome":"unauthenticated"`) {
		t.Errorf("audit log lacks denials:\n%s", log)
	}
	for _, tok := range []string{expired, forged, wrongAudience} {
		if strings.Contains(log, tok) {
			t.Error("audit log contains a token")
		}
	}
}

// TestSecurityTokenCache runs a node with mutual TLS and JWT verification
// over a real socket and counts signature checks: a peer with a service
// certificate is authenticated from its connection (no token verified,
// even one it sends); a peer without one, identified by its service-key
// token, and an app re-sending its token pay one verification for many
// calls.
func TestSecurityTokenCache(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.IssueServer("127.0.0.1", "localhost", "hexride")
	if err != nil {
		t.Fatal(err)
	}
	nodePair, _ := ca.IssueClient("node")
	peerPair, _ := ca.IssueClient("matching-7")
	key, err := auth.GenerateDevKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(Trip)
	cfg.Security = Security{JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience,
		CertFile: srvPair.CertFile, KeyFile: srvPair.KeyFile, CAFile: srvPair.CAFile,
		ClientCertFile: nodePair.CertFile, ClientKeyFile: nodePair.KeyFile, Audit: &lockedBuffer{}}
	n, _ := startNodeConfig(t, cfg)
	if n.sec.jwt == nil {
		t.Fatal("node has no JWT authenticator")
	}
	verifications := func() uint64 { return n.sec.jwt.CacheStats().Verifications }

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	peerCert, err := tls.LoadX509KeyPair(peerPair.CertFile, peerPair.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(certs ...tls.Certificate) tripv1.TripServiceClient {
		cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, ServerName: "hexride", RootCAs: pool, Certificates: certs})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return tripv1.NewTripServiceClient(cc)
	}
	mint := func(role auth.Role, sub string, ttl time.Duration, at time.Time) context.Context {
		tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, role, sub, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return auth.BearerContext(context.Background(), tok)
	}
	const calls = 20
	const noSuchTrip = "00000000-0000-4000-8000-00000000c0de"

	t.Run("service certificate, no verification", func(t *testing.T) {
		trips := connect(peerCert)
		// AssignDriver is for services only: a dispatcher's token would be
		// refused, so getting past authorization shows the certificate
		// decided, and the counter shows the token was not verified.
		ctx := mint(auth.RoleDispatcher, "ops", time.Hour, time.Now())
		before := verifications()
		for i := range calls {
			_, err := trips.AssignDriver(ctx, &tripv1.AssignDriverRequest{TripId: noSuchTrip, DriverId: "d", IdempotencyKey: "k"})
			if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated || c == codes.OK {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if v := verifications() - before; v != 0 {
			t.Fatalf("%d calls with a service certificate: %d token verifications", calls, v)
		}
	})

	t.Run("service-key token, one verification", func(t *testing.T) {
		// What a node with --service-key-dir and no client certificate sends.
		minter, err := auth.NewMinter(auth.MinterConfig{Key: key.Private, Kid: key.Kid, Issuer: auth.DevIssuer, Audience: auth.DevAudience})
		if err != nil {
			t.Fatal(err)
		}
		trips := connect()
		self := minter.CallCredentials(auth.Principal{Role: auth.RoleService, Subject: "hexride-matching"})
		before := verifications()
		for i := range calls {
			_, err := trips.AssignDriver(context.Background(), &tripv1.AssignDriverRequest{TripId: noSuchTrip, DriverId: "d", IdempotencyKey: "k"}, self)
			if c := status.Code(err); c == codes.PermissionDenied || c == codes.Unauthenticated || c == codes.OK {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if v := verifications() - before; v != 1 {
			t.Fatalf("%d calls with one service token: %d verifications, want 1", calls, v)
		}
	})

	t.Run("app token, one verification; expired refused", func(t *testing.T) {
		trips := connect()
		ctx := mint(auth.RoleDispatcher, "ops", time.Hour, time.Now())
		before := verifications()
		for i := range calls {
			if _, err := trips.GetTrip(ctx, &tripv1.GetTripRequest{TripId: noSuchTrip}); status.Code(err) != codes.NotFound {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if v := verifications() - before; v != 1 {
			t.Fatalf("%d calls with one token: %d verifications, want 1", calls, v)
		}
		expired := mint(auth.RoleDispatcher, "ops", time.Hour, time.Now().Add(-2*time.Hour))
		for range 2 {
			if _, err := trips.GetTrip(expired, &tripv1.GetTripRequest{TripId: noSuchTrip}); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("expired token: %v", err)
			}
		}
	})
}

package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/tlsconfig"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// testClock is a settable clock for the verifier.
type testClock struct{ t atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.t.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *testClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

// cachedSetup is a dev key, its JWKS as the key source and a verifier
// with the default configuration (cache on) on clk.
func cachedSetup(t testing.TB, clk *testClock, cacheSize int) (*auth.DevKey, *auth.JWTAuthenticator) {
	t.Helper()
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src, err := auth.NewJWKSSource(context.Background(), auth.JWKSConfig{File: key.JWKSPath()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.DefaultJWTConfig(auth.DevIssuer, auth.DevAudience)
	cfg.Now, cfg.CacheSize = clk.Now, cacheSize
	a, err := auth.NewJWTAuthenticator(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	return key, a
}

func mintAt(t testing.TB, key *auth.DevKey, p auth.Principal, ttl time.Duration, at time.Time) string {
	t.Helper()
	tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, p.Role, p.Subject, ttl, at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// echoDrivers answers each Connect message with one response, as the
// driver it authenticated as.
type echoDrivers struct {
	driverv1.UnimplementedDriverServiceServer
}

func (echoDrivers) Connect(s grpc.BidiStreamingServer[driverv1.ConnectRequest, driverv1.ConnectResponse]) error {
	if _, err := auth.Require(s.Context(), auth.RoleDriver); err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if err := s.Send(&driverv1.ConnectResponse{}); err != nil {
			return err
		}
	}
}

// startCacheServer serves whoami (TripService) and echoDrivers behind the
// Authorizer on a loopback socket.
func startCacheServer(t testing.TB, authn auth.Authenticator, opts ...grpc.ServerOption) string {
	t.Helper()
	authz, err := auth.NewAuthorizer(auth.AuthorizerConfig{Authenticator: authn})
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, grpc.UnaryInterceptor(authz.UnaryServerInterceptor()), grpc.StreamInterceptor(authz.StreamServerInterceptor()))
	s := grpc.NewServer(opts...)
	tripv1.RegisterTripServiceServer(s, whoami{})
	driverv1.RegisterDriverServiceServer(s, echoDrivers{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// TestTokenCacheOverGRPC: over a real socket, N unary calls with one token
// cost one signature check; a stream is verified once when it opens, not
// per message; a cached token is refused once it expires.
func TestTokenCacheOverGRPC(t *testing.T) {
	clk := newTestClock()
	key, jwtAuth := cachedSetup(t, clk, 0)
	addr := startCacheServer(t, jwtAuth)
	conn := dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	svc := auth.Principal{Role: auth.RoleService, Subject: "matching"}
	tok := mintAt(t, key, svc, 10*time.Minute, clk.Now())
	ctx := auth.BearerContext(context.Background(), tok)

	const n = 50
	for i := range n {
		if got, code := caller(ctx, conn); code != codes.OK || got != svc.String() {
			t.Fatalf("call %d: %q %v", i, got, code)
		}
	}
	if st := jwtAuth.CacheStats(); st.Verifications != 1 || st.Hits != n-1 {
		t.Fatalf("%d unary calls with one token: %+v, want 1 verification and %d hits", n, st, n-1)
	}

	t.Run("stream verified once", func(t *testing.T) {
		before := jwtAuth.CacheStats()
		drv := auth.Principal{Role: auth.RoleDriver, Subject: "d-1"}
		sctx, cancel := context.WithTimeout(auth.BearerContext(context.Background(), mintAt(t, key, drv, time.Hour, clk.Now())), 10*time.Second)
		defer cancel()
		st, err := driverv1.NewDriverServiceClient(conn).Connect(sctx)
		if err != nil {
			t.Fatal(err)
		}
		const msgs = 20
		for i := range msgs {
			if err := st.Send(&driverv1.ConnectRequest{Seq: uint64(i + 1)}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Recv(); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		st.CloseSend()
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("end of stream: %v", err)
		}
		after := jwtAuth.CacheStats()
		if v := after.Verifications - before.Verifications; v != 1 {
			t.Fatalf("a stream of %d messages cost %d verifications, want 1", msgs, v)
		}
		if h := after.Hits - before.Hits; h != 0 {
			t.Fatalf("%d cache lookups during the stream, want none after the open", h)
		}
	})

	t.Run("expired token refused although cached", func(t *testing.T) {
		clk.Advance(10*time.Minute + 29*time.Second) // exp + leeway − 1 s: still good, from the cache
		before := jwtAuth.CacheStats()
		if got, code := caller(ctx, conn); code != codes.OK || got != svc.String() {
			t.Fatalf("within the leeway: %q %v", got, code)
		}
		if jwtAuth.CacheStats().Verifications != before.Verifications {
			t.Fatal("a cached token within its validity was verified again")
		}
		clk.Advance(time.Second) // exp + leeway
		_, err := tripv1.NewTripServiceClient(conn).GetTrip(ctx, &tripv1.GetTripRequest{})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "token expired") {
			t.Fatalf("expired cached token: %v", err)
		}
		if st := jwtAuth.CacheStats(); st.Stale != 1 || st.Entries != 1 { // the driver's token stays
			t.Fatalf("after expiry: %+v", st)
		}
		if _, code := caller(ctx, conn); code != codes.Unauthenticated {
			t.Fatalf("expired token, again: %v", code)
		}
	})
}

// TestPeerCertCallsSkipTokenVerification: over mutual TLS, a service
// presenting its certificate is authenticated from the connection and no
// token it carries is verified; a service without a certificate, sending
// its service-key token, pays one verification for many calls.
func TestPeerCertCallsSkipTokenVerification(t *testing.T) {
	ca, err := testpki.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvPair, _ := ca.IssueServer()
	svcPair, _ := ca.IssueClient("matching-7")
	reload := func(p testpki.Pair) *tlsconfig.Reloader {
		r, err := tlsconfig.NewReloader(context.Background(), tlsconfig.Config{CertFile: p.CertFile, KeyFile: p.KeyFile, CAFile: p.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	clk := newTestClock()
	key, jwtAuth := cachedSetup(t, clk, 0)
	combined, err := auth.NewCombinedAuthenticator(auth.CombinedConfig{PeerCerts: true, Bearer: jwtAuth})
	if err != nil {
		t.Fatal(err)
	}
	addr := startCacheServer(t, combined, grpc.Creds(reload(srvPair).ServerCredentials(tlsconfig.VerifyClientCertIfGiven)))
	const n = 30

	withCert := dial(t, addr, grpc.WithTransportCredentials(reload(svcPair).ClientCredentials("")))
	// A token too (a dispatcher's): the certificate decides, the token is
	// not even parsed.
	dctx := auth.BearerContext(context.Background(), mintAt(t, key, auth.Principal{Role: auth.RoleDispatcher, Subject: "ops"}, time.Hour, clk.Now()))
	for i := range n {
		if got, code := caller(dctx, withCert); code != codes.OK || got != "service:matching-7" {
			t.Fatalf("call %d with a service certificate: %q %v", i, got, code)
		}
	}
	if st := jwtAuth.CacheStats(); st.Verifications != 0 || st.Hits+st.Misses != 0 {
		t.Fatalf("service-certificate calls touched the token verifier: %+v", st)
	}

	// A service without a certificate, identified by its minted token (a
	// node with --service-key-dir): one Minter, the same token every call.
	minter, err := auth.NewMinter(auth.MinterConfig{Key: key.Private, Kid: key.Kid, Issuer: auth.DevIssuer, Audience: auth.DevAudience, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	noCert := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: reload(srvPair).Pool()})
	tokenConn := dial(t, addr, grpc.WithTransportCredentials(noCert), grpc.WithPerRPCCredentials(minter.PerRPCCredentials(auth.Principal{Role: auth.RoleService, Subject: "trip-2"})))
	for i := range n {
		if got, code := caller(context.Background(), tokenConn); code != codes.OK || got != "service:trip-2" {
			t.Fatalf("call %d with a service token: %q %v", i, got, code)
		}
	}
	if st := jwtAuth.CacheStats(); st.Verifications != 1 || st.Hits != n-1 {
		t.Fatalf("%d calls with a service-key token: %+v, want 1 verification", n, st)
	}
}

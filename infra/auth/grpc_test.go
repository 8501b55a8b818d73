package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/tlsconfig"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	riderv1 "github.com/hexride/hexride/proto/hexride/rider/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// whoami answers every trip read with the caller's principal in the id,
// so tests see what the server established.
type whoami struct {
	tripv1.UnimplementedTripServiceServer
}

func (whoami) GetTrip(ctx context.Context, _ *tripv1.GetTripRequest) (*tripv1.GetTripResponse, error) {
	p, _ := auth.FromContext(ctx)
	return nil, status.Error(codes.NotFound, p.String())
}

type riders struct {
	riderv1.UnimplementedRiderServiceServer
}
type drivers struct {
	driverv1.UnimplementedDriverServiceServer
}

func startServer(t *testing.T, authn auth.Authenticator, opts ...grpc.ServerOption) string {
	t.Helper()
	authz, err := auth.NewAuthorizer(auth.AuthorizerConfig{Authenticator: authn})
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, grpc.UnaryInterceptor(authz.UnaryServerInterceptor()), grpc.StreamInterceptor(authz.StreamServerInterceptor()))
	s := grpc.NewServer(opts...)
	tripv1.RegisterTripServiceServer(s, whoami{})
	riderv1.RegisterRiderServiceServer(s, riders{})
	driverv1.RegisterDriverServiceServer(s, drivers{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

func dial(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// caller returns the principal the server established, or the call's code.
func caller(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (string, codes.Code) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := tripv1.NewTripServiceClient(conn).GetTrip(ctx, &tripv1.GetTripRequest{}, opts...)
	st := status.Convert(err)
	if st.Code() == codes.NotFound {
		return st.Message(), codes.OK
	}
	return "", st.Code()
}

func devSetup(t *testing.T) (*auth.DevKey, *auth.Minter, *auth.JWTAuthenticator) {
	t.Helper()
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := auth.NewDevMinter(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src, err := auth.NewJWKSSource(context.Background(), auth.JWKSConfig{File: key.JWKSPath()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.NewJWTAuthenticator(auth.DefaultJWTConfig(auth.DevIssuer, auth.DevAudience), src)
	if err != nil {
		t.Fatal(err)
	}
	return key, m, a
}

// TestManyPrincipalsOverOneConnection is the simulator's shape: one
// plaintext loopback connection, a token per call.
func TestManyPrincipalsOverOneConnection(t *testing.T) {
	_, m, jwtAuth := devSetup(t)
	addr := startServer(t, jwtAuth)
	conn := dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	ctx := context.Background()

	for _, p := range []auth.Principal{{Role: auth.RoleService, Subject: "matching"}, {Role: auth.RoleDispatcher, Subject: "ops"}, {Role: auth.RoleService, Subject: "trip"}} {
		if got, code := caller(ctx, conn, m.CallCredentials(p)); code != codes.OK || got != p.String() {
			t.Fatalf("CallCredentials(%v): %q %v", p, got, code)
		}
		octx, err := m.OutgoingContext(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if got, code := caller(octx, conn); code != codes.OK || got != p.String() {
			t.Fatalf("OutgoingContext(%v): %q %v", p, got, code)
		}
	}
	// Roles still apply.
	if _, code := caller(ctx, conn, m.CallCredentials(auth.Principal{Role: auth.RoleRider, Subject: "r"})); code != codes.PermissionDenied {
		t.Fatalf("rider on TripService: %v", code)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := riderv1.NewRiderServiceClient(conn).GetQuote(rctx, &riderv1.GetQuoteRequest{}, m.CallCredentials(auth.Principal{Role: auth.RoleRider, Subject: "r"}))
	if status.Code(err) != codes.Unimplemented { // passed authz, reached the stub
		t.Fatalf("rider GetQuote: %v", err)
	}
	// Streams: a driver may open Connect, a rider may not.
	for _, c := range []struct {
		p    auth.Principal
		want codes.Code
	}{{auth.Principal{Role: auth.RoleDriver, Subject: "d"}, codes.Unimplemented}, {auth.Principal{Role: auth.RoleRider, Subject: "r"}, codes.PermissionDenied}} {
		st, err := driverv1.NewDriverServiceClient(conn).Connect(rctx, m.CallCredentials(c.p))
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != c.want {
			t.Fatalf("Connect as %v: %v, want %v", c.p, err, c.want)
		}
	}
	// No token: Unauthenticated; health needs none.
	if _, code := caller(ctx, conn); code != codes.Unauthenticated {
		t.Fatalf("no token: %v", code)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(rctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
	// Bearer credentials that demand TLS are not sent over plaintext.
	secureOnly := auth.BearerCredentials{Source: m.Source(auth.Principal{Role: auth.RoleService, Subject: "x"})}
	if _, code := caller(ctx, conn, grpc.PerRPCCredentials(secureOnly)); code == codes.OK {
		t.Fatal("TLS-only credentials were sent over plaintext")
	}
}

func TestCombinedAuthenticatorOverMutualTLS(t *testing.T) {
	ca, err := testpki.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srvPair, _ := ca.IssueServer()
	svcPair, _ := ca.IssueClient("matching-7")
	cnPair, _ := ca.IssueClientCN("cn", "service:trip-2")
	anonPair, _ := ca.IssueClientCN("anon", "laptop")
	reload := func(p testpki.Pair) *tlsconfig.Reloader {
		r, err := tlsconfig.NewReloader(context.Background(), tlsconfig.Config{CertFile: p.CertFile, KeyFile: p.KeyFile, CAFile: p.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	_, m, jwtAuth := devSetup(t)
	withDev, _ := auth.NewCombinedAuthenticator(auth.CombinedConfig{PeerCerts: true, Bearer: jwtAuth, AllowDevHeader: true})
	strict, _ := auth.NewCombinedAuthenticator(auth.CombinedConfig{PeerCerts: true, Bearer: jwtAuth})
	if _, err := auth.NewCombinedAuthenticator(auth.CombinedConfig{}); err == nil {
		t.Fatal("empty CombinedConfig accepted")
	}
	srvTLS := reload(srvPair).ServerCredentials(tlsconfig.VerifyClientCertIfGiven)
	strictAddr := startServer(t, strict, grpc.Creds(srvTLS))
	devAddr := startServer(t, withDev, grpc.Creds(srvTLS))

	noCert := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: reload(srvPair).Pool()})
	dispatcher := auth.Principal{Role: auth.RoleDispatcher, Subject: "ops"}
	devHeader := auth.HeaderCredentials{Principal: auth.Principal{Role: auth.RoleService, Subject: "forged"}}

	tests := []struct {
		name  string
		addr  string
		creds credentials.TransportCredentials
		call  []grpc.CallOption
		want  string
		code  codes.Code
		token string // sent via BearerContext
	}{
		{"service cert by SPIFFE URI", strictAddr, reload(svcPair).ClientCredentials(""), nil, "service:matching-7", codes.OK, ""},
		{"service cert by CN", strictAddr, reload(cnPair).ClientCredentials(""), nil, "service:trip-2", codes.OK, ""},
		{"service cert wins over a token", strictAddr, reload(svcPair).ClientCredentials(""), []grpc.CallOption{m.CallCredentials(dispatcher)}, "service:matching-7", codes.OK, ""},
		{"no cert, bearer token", strictAddr, noCert, []grpc.CallOption{m.CallCredentials(dispatcher)}, "dispatcher:ops", codes.OK, ""},
		{"cert without a service name falls to the token", strictAddr, reload(anonPair).ClientCredentials(""), []grpc.CallOption{m.CallCredentials(dispatcher)}, "dispatcher:ops", codes.OK, ""},
		{"cert without a service name and no token", strictAddr, reload(anonPair).ClientCredentials(""), nil, "", codes.Unauthenticated, ""},
		{"dev header refused unless enabled", strictAddr, noCert, []grpc.CallOption{grpc.PerRPCCredentials(devHeader)}, "", codes.Unauthenticated, ""},
		{"dev header accepted when enabled", devAddr, noCert, []grpc.CallOption{grpc.PerRPCCredentials(devHeader)}, "service:forged", codes.OK, ""},
		{"a bad token does not fall through to the dev header", devAddr, noCert, []grpc.CallOption{grpc.PerRPCCredentials(devHeader)}, "", codes.Unauthenticated, "eyJhbGciOiJFZERTQSJ9.e30.AAAA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dial(t, tt.addr, grpc.WithTransportCredentials(tt.creds))
			ctx := context.Background()
			if tt.token != "" {
				ctx = auth.BearerContext(ctx, tt.token)
			}
			got, code := caller(ctx, conn, tt.call...)
			if code != tt.code || got != tt.want {
				t.Fatalf("got %q %v, want %q %v", got, code, tt.want, tt.code)
			}
		})
	}
}

// listServices asks server reflection for the service list.
func listServices(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx, opts...)
	if err != nil {
		return nil, err
	}
	// A refused stream may end before the request goes out: Send says
	// io.EOF and Recv has the status.
	if err := info.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := info.Recv()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		out = append(out, s.GetName())
	}
	return out, info.CloseSend()
}

// TestReflectionNeedsCredentials: anonymous callers cannot list the
// services; any authenticated one can; health stays open (Consul and load
// balancers call it without credentials).
func TestReflectionNeedsCredentials(t *testing.T) {
	_, m, jwtAuth := devSetup(t)
	addr := startServer(t, jwtAuth)
	conn := dial(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		opts []grpc.CallOption
		want codes.Code
	}{
		{"no credentials", nil, codes.Unauthenticated},
		{"rider token", []grpc.CallOption{m.CallCredentials(auth.Principal{Role: auth.RoleRider, Subject: "r"})}, codes.OK},
		{"driver token", []grpc.CallOption{m.CallCredentials(auth.Principal{Role: auth.RoleDriver, Subject: "d"})}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			services, err := listServices(ctx, conn, tc.opts...)
			if status.Code(err) != tc.want {
				t.Fatalf("reflection: %v, want %v", err, tc.want)
			}
			if tc.want != codes.OK {
				if len(services) != 0 {
					t.Fatalf("refused reflection still listed %v", services)
				}
				return
			}
			if !slices.Contains(services, "hexride.rider.v1.RiderService") {
				t.Fatalf("reflection lists %v", services)
			}
		})
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if resp, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health without credentials: %v %v", resp, err)
	}
}

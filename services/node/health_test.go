package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/grpcserver"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
)

// TestHealthAddrWithTLS runs a node with TLS on its gRPC port and a
// --health-addr: a plaintext health client (the kubelet's gRPC probe) gets
// SERVING from the health port and nothing from the TLS port; the health
// port serves nothing but health; during a drain both ports report
// NOT_SERVING, and after it both are gone.
func TestHealthAddrWithTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := testpki.NewCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.IssueServer("127.0.0.1", "localhost", "hexride")
	if err != nil {
		t.Fatal(err)
	}
	nodePair, err := ca.IssueClient("node")
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.GenerateDevKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(Trip)
	cfg.Security = Security{JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience,
		CertFile: srvPair.CertFile, KeyFile: srvPair.KeyFile, CAFile: srvPair.CAFile,
		ClientCertFile: nodePair.CertFile, ClientKeyFile: nodePair.KeyFile, Audit: &lockedBuffer{}}
	cfg.HealthAddr = "127.0.0.1:0"
	// A drain wait long enough to look at both ports during it; the
	// shutdown context ends it once the test has.
	cfg.DrainWait = time.Minute
	n, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	shutdownCtx, endDrainWait := context.WithCancel(context.Background())
	shutdown := make(chan struct{})
	startShutdown := func() {
		go func() { n.Shutdown(shutdownCtx); close(shutdown) }()
	}
	t.Cleanup(func() {
		endDrainWait()
		n.Shutdown(shutdownCtx) // waits for a shutdown under way
	})
	if n.HealthAddr() == "" || n.HealthAddr() == n.Addr() {
		t.Fatalf("health address %q, gRPC address %q", n.HealthAddr(), n.Addr())
	}

	dial := func(addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	healthPort := dial(n.HealthAddr(), insecure.NewCredentials())
	plainProbe := healthpb.NewHealthClient(healthPort)
	plainMain := healthpb.NewHealthClient(dial(n.Addr(), insecure.NewCredentials()))
	// Health needs no client certificate or token on the TLS port either.
	tlsMain := healthpb.NewHealthClient(dial(n.Addr(), credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, ServerName: "hexride", RootCAs: pool})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	check := func(c healthpb.HealthClient, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
		r, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return r.GetStatus(), err
	}
	names := []string{"", grpcNames[Trip][0]}

	for _, name := range names {
		if st, err := check(plainProbe, name); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("plaintext probe of the health port, service %q: %v %v", name, st, err)
		}
		if st, err := check(tlsMain, name); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("TLS health check of the gRPC port, service %q: %v %v", name, st, err)
		}
		if _, err := check(plainMain, name); status.Code(err) != codes.Unavailable {
			t.Fatalf("plaintext probe of the TLS gRPC port, service %q: %v, want Unavailable", name, err)
		}
	}
	if r, err := plainProbe.List(ctx, &healthpb.HealthListRequest{}); err != nil || r.GetStatuses()[grpcNames[Trip][0]].GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("List on the health port: %v %v", r, err)
	}
	// Only health: the trip service (and reflection) are not on it.
	_, err = tripv1.NewTripServiceClient(healthPort).GetTrip(ctx, &tripv1.GetTripRequest{TripId: "00000000-0000-4000-8000-00000000c0de"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("trip service on the health port: %v, want Unimplemented", err)
	}
	err = healthPort.Invoke(ctx, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("reflection on the health port: %v, want Unimplemented", err)
	}

	// Drain: watchers on both ports hear NOT_SERVING, and checks agree.
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	watch := func(c healthpb.HealthClient) healthpb.Health_WatchClient {
		w, err := c.Watch(watchCtx, &healthpb.HealthCheckRequest{Service: grpcNames[Trip][0]})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("watch before the drain: %v %v", r, err)
		}
		return w
	}
	probeWatch, mainWatch := watch(plainProbe), watch(tlsMain)
	startShutdown()
	for port, w := range map[string]healthpb.Health_WatchClient{"health": probeWatch, "gRPC": mainWatch} {
		if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("%s port watch during the drain: %v %v", port, r, err)
		}
	}
	stopWatching()
	for _, name := range names {
		if st, err := check(plainProbe, name); err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health port during the drain, service %q: %v %v", name, st, err)
		}
		if st, err := check(tlsMain, name); err != nil || st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("gRPC port during the drain, service %q: %v %v", name, st, err)
		}
	}
	endDrainWait()
	<-shutdown
	if _, err := check(plainProbe, ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("health port after shutdown: %v, want Unavailable", err)
	}
	if _, err := check(tlsMain, ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC port after shutdown: %v, want Unavailable", err)
	}
}

// TestHealthAddrInUse: a health address that cannot be listened on fails
// Start, naming --health-addr.
func TestHealthAddrInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(Trip)
	cfg.HealthAddr = busy.Addr().String()
	n, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		n.Shutdown(context.Background())
		t.Fatal("Start listened on a port in use")
	}
	if !errors.Is(err, grpcserver.ErrHealthListen) || !strings.Contains(err.Error(), "--health-addr") {
		t.Fatalf("err = %v, want ErrHealthListen naming --health-addr", err)
	}
}

// TestHealthAddrValidate: a bad --health-addr is refused, naming the flag.
func TestHealthAddrValidate(t *testing.T) {
	cfg := testConfig(Trip)
	cfg.HealthAddr = "7071"
	if err := cfg.Validate(); !errors.Is(err, ErrBadAddr) || !strings.Contains(err.Error(), "--health-addr") {
		t.Fatalf("err = %v, want ErrBadAddr naming --health-addr", err)
	}
	cfg.HealthAddr = ":7071"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--health-addr :7071: %v", err)
	}
}

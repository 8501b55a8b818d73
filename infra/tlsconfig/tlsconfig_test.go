package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"errors"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/tlsconfig"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type pki struct {
	ca     *testpki.CA
	server testpki.Pair
	client testpki.Pair
}

func newPKI(t *testing.T) pki {
	t.Helper()
	ca, err := testpki.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient("matching")
	if err != nil {
		t.Fatal(err)
	}
	return pki{ca: ca, server: srv, client: cli}
}

func reloader(t *testing.T, p testpki.Pair, poll time.Duration) *tlsconfig.Reloader {
	t.Helper()
	r, err := tlsconfig.NewReloader(context.Background(), tlsconfig.Config{CertFile: p.CertFile, KeyFile: p.KeyFile, CAFile: p.CAFile, PollInterval: poll})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// serve starts a gRPC server with health over TCP on loopback.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// check calls health over a fresh connection and returns the serial of the
// certificate the server presented.
func check(t *testing.T, addr string, cfg *tls.Config) (*big.Int, error) {
	t.Helper()
	return checkCreds(t, addr, credentials.NewTLS(cfg))
}

func checkCreds(t *testing.T, addr string, creds credentials.TransportCredentials) (*big.Int, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return nil, err
	}
	info := p.AuthInfo.(credentials.TLSInfo)
	if info.State.Version != tls.VersionTLS13 {
		t.Errorf("negotiated version %x, want TLS 1.3", info.State.Version)
	}
	return info.State.PeerCertificates[0].SerialNumber, nil
}

func TestMutualTLSOverGRPC(t *testing.T) {
	p := newPKI(t)
	srv := reloader(t, p.server, 0)
	cli := reloader(t, p.client, 0)
	addr := serve(t, srv.ServerConfig(tlsconfig.RequireClientCert))

	other := newPKI(t) // a second, unrelated CA
	otherCli := reloader(t, other.client, 0)

	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.Pool(), ServerName: "localhost"}
	tls12 := cli.ClientConfig("localhost")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"client with a cert from the CA", cli.ClientConfig("localhost"), true},
		{"server name from the dialled address (IP SAN)", cli.ClientConfig(""), true},
		{"client without a cert is refused", noCert, false},
		{"client with a cert from another CA is refused", otherCli.ClientConfig("localhost"), false},
		{"wrong server name is refused by the client", cli.ClientConfig("matching.internal"), false},
		{"TLS 1.2 is refused", tls12, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := check(t, addr, tt.cfg)
			if tt.ok && err != nil {
				t.Fatalf("call failed: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("call succeeded, want refusal")
				}
				if c := status.Code(err); c != codes.Unavailable {
					t.Fatalf("code %v, want Unavailable (handshake failure): %v", c, err)
				}
			}
		})
	}
}

func TestClientRefusesServerFromAnotherCA(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	srv := reloader(t, other.server, 0) // server cert from the other CA, but trusts our clients
	srvCfg := srv.ServerConfig(tlsconfig.NoClientCert)
	addr := serve(t, srvCfg)
	cli := reloader(t, p.client, 0)
	if _, err := check(t, addr, cli.ClientConfig("localhost")); err == nil {
		t.Fatal("client accepted a server certificate from an unknown CA")
	}
}

func TestReloadServesNewCertToNextHandshake(t *testing.T) {
	p := newPKI(t)
	srv := reloader(t, p.server, 0)
	cli := reloader(t, p.client, 0)
	addr := serve(t, srv.ServerConfig(tlsconfig.RequireClientCert))

	first, err := check(t, addr, cli.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Fatalf("served serial %v, want %v", first, p.server.Cert.SerialNumber)
	}
	rotated, err := p.ca.IssueServer("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := check(t, addr, cli.ClientConfig("localhost")); got.Cmp(first) != 0 {
		t.Fatalf("certificate changed before Reload")
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	got, err := check(t, addr, cli.ClientConfig("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Cmp(rotated.Cert.SerialNumber) != 0 {
		t.Fatalf("after reload served %v, want the rotated %v", got, rotated.Cert.SerialNumber)
	}
}

func TestPollingReloadAndKeepLastGood(t *testing.T) {
	p := newPKI(t)
	r := reloader(t, p.server, 10*time.Millisecond)
	before := r.Certificate().Leaf.SerialNumber

	rotated, err := p.ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.Certificate().Leaf.SerialNumber.Cmp(rotated.Cert.SerialNumber) == 0 })
	if r.Certificate().Leaf.SerialNumber.Cmp(before) == 0 {
		t.Fatal("not rotated")
	}

	// A corrupt certificate file: reload fails, the last good stays.
	if err := os.WriteFile(p.server.CertFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a corrupt file succeeded")
	}
	time.Sleep(50 * time.Millisecond) // several poll ticks over the bad file
	if r.Certificate().Leaf.SerialNumber.Cmp(rotated.Cert.SerialNumber) != 0 {
		t.Fatal("last good certificate was dropped")
	}
	// Fixed again: the poller picks it up.
	fixed, err := p.ca.IssueServer()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return r.Certificate().Leaf.SerialNumber.Cmp(fixed.Cert.SerialNumber) == 0 })
}

func TestCloseStopsPollerAndIsIdempotent(t *testing.T) {
	p := newPKI(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := tlsconfig.NewReloader(ctx, tlsconfig.Config{CertFile: p.server.CertFile, KeyFile: p.server.KeyFile, CAFile: p.server.CAFile, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cancel() // ctx end stops it too
	r.Close()
	r.Close()
}

func TestConfigValidateAndLoadErrors(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name string
		cfg  tlsconfig.Config
		want error
	}{
		{"missing files", tlsconfig.Config{CertFile: p.server.CertFile}, tlsconfig.ErrMissingFile},
		{"negative poll", tlsconfig.Config{CertFile: p.server.CertFile, KeyFile: p.server.KeyFile, CAFile: p.server.CAFile, PollInterval: -1}, tlsconfig.ErrBadInterval},
		{"CA file without certificates", tlsconfig.Config{CertFile: p.server.CertFile, KeyFile: p.server.KeyFile, CAFile: p.server.KeyFile}, tlsconfig.ErrNoCACerts},
		{"key does not match cert", tlsconfig.Config{CertFile: p.server.CertFile, KeyFile: p.client.KeyFile, CAFile: p.server.CAFile}, nil},
		{"file missing", tlsconfig.Config{CertFile: "/nonexistent", KeyFile: p.client.KeyFile, CAFile: p.server.CAFile}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tlsconfig.NewReloader(context.Background(), tt.cfg)
			if err == nil {
				t.Fatal("want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClientCredentialsFollowCARotation(t *testing.T) {
	p := newPKI(t)
	srv := reloader(t, p.server, 0)
	addr := serve(t, srv.ServerConfig(tlsconfig.RequireClientCert))
	cli := reloader(t, p.client, 0)
	creds := cli.ClientCredentials("")
	if _, err := checkCreds(t, addr, creds); err != nil {
		t.Fatal(err)
	}

	// Rotate everything to a new CA: server first, then the client's files.
	next := newPKI(t)
	for _, cp := range [][2]string{
		{next.server.CertFile, p.server.CertFile}, {next.server.KeyFile, p.server.KeyFile},
		{next.client.CertFile, p.client.CertFile}, {next.client.KeyFile, p.client.KeyFile},
		{next.ca.CertFile, p.ca.CertFile},
	} {
		data, err := os.ReadFile(cp[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp[1], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := checkCreds(t, addr, creds); err == nil {
		t.Fatal("client trusted the new CA before reloading")
	}
	if err := cli.Reload(); err != nil {
		t.Fatal(err)
	}
	got, err := checkCreds(t, addr, creds)
	if err != nil {
		t.Fatalf("after both reloads: %v", err)
	}
	if got.Cmp(next.server.Cert.SerialNumber) != 0 {
		t.Fatal("server did not present the rotated certificate")
	}
	if creds.Info().SecurityProtocol != "tls" {
		t.Fatalf("Info = %+v", creds.Info())
	}
}

func TestVerifyClientCertIfGiven(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	srv := reloader(t, p.server, 0)
	addr := serve(t, srv.ServerConfig(tlsconfig.VerifyClientCertIfGiven))
	cli := reloader(t, p.client, 0)
	otherCli := reloader(t, other.client, 0)
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.Pool(), ServerName: "localhost"}
	if _, err := check(t, addr, noCert); err != nil {
		t.Fatalf("client without a cert refused: %v", err)
	}
	if _, err := checkCreds(t, addr, cli.ClientCredentials("localhost")); err != nil {
		t.Fatalf("client with a cert refused: %v", err)
	}
	bad := otherCli.ClientConfig("localhost")
	bad.RootCAs = srv.Pool()
	if _, err := check(t, addr, bad); err == nil {
		t.Fatal("a certificate from another CA was accepted")
	}
}

package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/tlsconfig/testpki"
)

// The process-level tests run `hexride serve` as separate OS processes on
// loopback ports, with a real Consul agent and a real PostgreSQL, the way
// the platform runs in production.

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// hexrideBinary builds the binary once per test run.
func hexrideBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hexride-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "hexride")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is one running hexride process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	addr   string
	log    *os.File
	done   chan error
	prefix []string // runs as prefix... hexride serve args (e.g. ip netns exec NS)
	args   []string // the serve flags, for a restart with the same ones
}

var servingLine = regexp.MustCompile(`hexride serving \S+ on (\S+)`)

// startProc starts `hexride serve` with args and waits until it serves.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, name, nil, args...)
}

// startProcIn is startProc run through a command prefix (e.g. `ip netns
// exec NS`, which execs hexride in place: the pid is hexride's).
func startProcIn(t *testing.T, name string, prefix []string, args ...string) *proc {
	t.Helper()
	argv := append(append(append([]string{}, prefix...), hexrideBinary(t), "serve"), args...)
	p := startCommand(t, name, argv, nil)
	p.prefix, p.args = prefix, args
	return p
}

// startCommand starts argv (which must exec `hexride serve` in place, so
// that its pid is hexride's) with env (nil: this process's) and waits until
// it serves.
func startCommand(t *testing.T, name string, argv, env []string) *proc {
	t.Helper()
	logFile, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan error, 1)}
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				addrCh <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			tail, _ := os.ReadFile(logFile.Name())
			if len(tail) > 4000 {
				tail = tail[len(tail)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, tail)
		}
		logFile.Close()
	})
	select {
	case p.addr = <-addrCh:
	case err := <-p.done:
		tail, _ := os.ReadFile(logFile.Name())
		t.Fatalf("%s exited before serving: %v\n%s", name, err, tail)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not start in time", name)
	}
	return p
}

// signal sends sig and waits for the exit; it returns the exit error.
func (p *proc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v of %v", p.name, timeout, sig)
		return nil
	}
}

// testQuoteKey is a fixed quote-signing key shared by the test's riders.
var testQuoteKey = hex.EncodeToString([]byte(strings.Repeat("k", 32)))

// testSecurity is a deployment's keys and certificates: a CA, one server
// certificate and one service client certificate shared by the processes,
// and a signing key for tokens.
type testSecurity struct {
	key              *auth.DevKey
	server, client   testpki.Pair
	appTransport     credentials.TransportCredentials // apps: verify the server, no certificate
	serviceTransport credentials.TransportCredentials // tools acting as a service: mTLS
}

func newTestSecurity(t *testing.T) *testSecurity {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	s := &testSecurity{}
	if s.server, err = ca.IssueServer("127.0.0.1", "localhost", "hexride"); err != nil {
		t.Fatal(err)
	}
	if s.client, err = ca.IssueClient("e2e"); err != nil {
		t.Fatal(err)
	}
	if s.key, err = auth.GenerateDevKey(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	s.appTransport = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: "hexride", RootCAs: pool})
	clientCert, err := tls.LoadX509KeyPair(s.client.CertFile, s.client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	s.serviceTransport = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: "hexride", RootCAs: pool, Certificates: []tls.Certificate{clientCert}})
	return s
}

// flags are the serve flags that turn JWT auth and mTLS on.
func (s *testSecurity) flags() []string {
	return []string{
		"--jwks-file", s.key.JWKSPath(), "--jwt-issuer", auth.DevIssuer, "--jwt-audience", auth.DevAudience,
		"--tls-cert", s.server.CertFile, "--tls-key", s.server.KeyFile, "--tls-ca", s.server.CAFile,
		"--tls-client-cert", s.client.CertFile, "--tls-client-key", s.client.KeyFile,
	}
}

// Package natstest runs a real nats-server process (JetStream on, loopback,
// a fixed port chosen at start so a restart comes back at the same URL) for
// tests that kill and restart things.
//
// The binary is the first of: $HEXRIDE_NATS_BIN; <repo>/bin/nats-server;
// `nats-server` on PATH; else it is built once with tools/nats/build.sh
// (from the Go module proxy; a minute or two the first time). When none can
// be found or built, Start fails the test: it never skips.
package natstest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBin names an explicit nats-server binary.
const EnvBin = "HEXRIDE_NATS_BIN"

// Server is a running nats-server process.
type Server struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	exited   chan struct{}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func binary() (string, error) {
	binOnce.Do(func() {
		if p := os.Getenv(EnvBin); p != "" {
			binPath = p
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		if p := filepath.Join(root, "bin", "nats-server"); isExec(p) {
			binPath = p
			return
		}
		if p, err := exec.LookPath("nats-server"); err == nil {
			binPath = p
			return
		}
		out, err := exec.Command("bash", filepath.Join(root, "tools", "nats", "build.sh")).Output()
		if err != nil {
			binErr = fmt.Errorf("natstest: build nats-server: %w", err)
			return
		}
		binPath = strings.TrimSpace(string(out))
	})
	return binPath, binErr
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start starts nats-server with JetStream (file store in a test directory)
// and stops it at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{bin: bin, dir: t.TempDir(), port: port}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// Restart starts the process (after Stop) on the same port and store.
func (s *Server) Restart() error {
	cmd := exec.Command(s.bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-sd", filepath.Join(s.dir, "js"),
		"-l", filepath.Join(s.dir, "nats-server.log"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.port), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("natstest: nats-server exited at start (log in %s)", s.dir)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("natstest: nats-server not listening on %d within 15s", s.port)
}

// Stop ends the process (SIGTERM, then SIGKILL after 5s).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

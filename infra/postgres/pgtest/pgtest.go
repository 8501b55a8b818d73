// Package pgtest gives tests a private PostgreSQL 15 server.
//
// The first call to DSN in a test binary starts a server (initdb into a temp
// directory, a free port on 127.0.0.1, the unix socket in the temp directory,
// fsync off, default_transaction_isolation=serializable, as in production on
// CockroachDB); every test gets a fresh database on it. Wrap the package's
// TestMain with Main so the server stops when the tests end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }
//
// When HEXRIDE_TEST_POSTGRES holds a DSN, that server is used instead (each
// test still gets its own database, dropped at the end of the test).
//
// A test that takes the database away under a client (an outage, a restart)
// uses NewServer: a private server, always local, that it can Stop and Start.
//
// A machine without PostgreSQL binaries fails the tests (never skips them)
// with "install PostgreSQL 15: apt-get install -y postgresql".
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding an external server's DSN.
const EnvDSN = "HEXRIDE_TEST_POSTGRES"

// InstallHint is the failure message when no PostgreSQL binaries are found.
const InstallHint = "install PostgreSQL 15: apt-get install -y postgresql"

var (
	mu      sync.Mutex
	srv     *server
	srvErr  error
	started bool
	dbSeq   atomic.Int64
)

// TestingM is what testing.M and goleak.VerifyTestMain share.
type TestingM interface{ Run() int }

type mainWrapper struct{ m TestingM }

func (w mainWrapper) Run() int {
	code := w.m.Run()
	Stop()
	return code
}

// Main wraps m so that the shared server stops after the tests ran.
func Main(m TestingM) TestingM { return mainWrapper{m: m} }

// Stop stops the shared server, if this binary started one.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if srv != nil {
		srv.stop()
		srv = nil
	}
}

// DSN returns the DSN of a fresh, empty database for this test.
func DSN(t testing.TB) string {
	t.Helper()
	admin, err := adminDSN()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("hexride_test_%d_%d", os.Getpid(), dbSeq.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	if os.Getenv(EnvDSN) != "" {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, admin)
			if err != nil {
				t.Logf("pgtest: drop database: %v", err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Logf("pgtest: drop database: %v", err)
			}
		})
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("pgtest: parse DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Server is a PostgreSQL server of one test's own, for tests that stop and
// start the database under a client (outage and recovery tests); the shared
// server behind DSN must keep running for every other test. NewServer starts
// one even when HEXRIDE_TEST_POSTGRES names an external server.
type Server struct {
	s       *server
	running bool
}

// NewServer starts a private server for t (initdb, a free port, the same
// settings as the shared server) and removes it when t ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s, err := start(true)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	srv := &Server{s: s, running: true}
	t.Cleanup(func() {
		if srv.running {
			s.stop()
		} else {
			os.RemoveAll(s.dir)
		}
	})
	return srv
}

// DSN returns the DSN of the server's postgres database. It stays valid
// across Stop and Start (same port).
func (srv *Server) DSN() string { return srv.s.dsn }

// Stop stops the server at once, as `pg_ctl stop -m immediate` does: the
// postmaster gets SIGQUIT, every backend ends without a clean shutdown, and
// clients see their connections drop mid-query. Stop returns once the
// postmaster has exited, so nothing listens on the port any more.
func (srv *Server) Stop(t testing.TB) {
	t.Helper()
	if !srv.running {
		t.Fatal("pgtest: Stop: server is not running")
	}
	srv.s.halt(syscall.SIGQUIT)
	srv.running = false
}

// Start starts a stopped server again on the same data directory and port
// (after crash recovery) and waits until it accepts connections.
func (srv *Server) Start(t testing.TB) {
	t.Helper()
	if srv.running {
		t.Fatal("pgtest: Start: server is already running")
	}
	if err := srv.s.launch(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
	srv.running = true
}

func adminDSN() (string, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		srv, srvErr = start(false)
	}
	if srvErr != nil {
		return "", srvErr
	}
	if srv == nil {
		return "", errors.New("server already stopped")
	}
	return srv.dsn, nil
}

type server struct {
	// durable servers wait for the WAL at commit (NewServer's: their tests
	// crash them and check what committed).
	durable bool
	dir     string
	bin     string
	cred    *syscall.Credential
	port    int
	dsn     string
	log     string
	cmd     *exec.Cmd     // the running postmaster, or the last one
	done    chan struct{} // closed when cmd exited
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// FindBinDir returns the directory holding initdb and postgres.
func FindBinDir() (string, error) {
	var candidates []string
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Prefer the newest version.
	for i := len(matches) - 1; i >= 0; i-- {
		candidates = append(candidates, matches[i])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	return findIn(candidates)
}

func findIn(candidates []string) (string, error) {
	for _, dir := range candidates {
		if isExec(filepath.Join(dir, "initdb")) && isExec(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New(InstallHint)
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func start(durable bool) (*server, error) {
	s, err := initServer()
	if err != nil {
		return nil, err
	}
	s.durable = durable
	if err := s.launch(); err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	return s, nil
}

// initServer runs initdb into a new temp directory and picks a port; launch
// starts the server.
func initServer() (*server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	base := ""
	if cred != nil {
		// The unprivileged user must be able to reach the directory; $TMPDIR
		// may sit under root's home.
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "hexride-pgtest-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chown temp dir: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	init := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &server{
		dir:  dir,
		bin:  bin,
		cred: cred,
		port: port,
		dsn:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		log:  filepath.Join(dir, "postgres.log"),
	}, nil
}

// launch starts postgres on s's data directory and port and waits until it
// accepts connections.
func (s *server) launch() error {
	log, err := os.OpenFile(s.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child keeps its own descriptor
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off",
		// A commit that returned must survive Stop (a postmaster crash):
		// on for servers of their own, whose tests crash them.
		"-c", "synchronous_commit="+map[bool]string{true: "on", false: "off"}[s.durable],
		"-c", "full_page_writes=off",
		"-c", "default_transaction_isolation=serializable",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
		"-c", "max_pred_locks_per_transaction=256",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	cmd.Dir = s.dir
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.halt(syscall.SIGQUIT)
		return err
	}
	return nil
}

func (s *server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.dsn)
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited during start-up:\n%s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v: %v\n%s", timeout, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) stop() {
	// SIGINT is PostgreSQL's "fast shutdown".
	s.halt(syscall.SIGINT)
	os.RemoveAll(s.dir)
}

// halt sends sig to the postmaster and waits for it to exit, killing it
// after 10s.
func (s *server) halt(sig syscall.Signal) {
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// credential returns the unprivileged user to run PostgreSQL as when the
// tests run as root (PostgreSQL refuses to run as root), else nil.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, errors.New("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

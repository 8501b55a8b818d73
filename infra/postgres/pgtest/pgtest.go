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

func adminDSN() (string, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if !started {
		started = true
		srv, srvErr = start()
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
	dir  string
	dsn  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
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

func start() (*server, error) {
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
	logPath := filepath.Join(dir, "postgres.log")
	log, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close() // the child keeps its own descriptor
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "default_transaction_isolation=serializable",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
		"-c", "max_pred_locks_per_transaction=256",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &server{
		dir:  dir,
		dsn:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		cmd:  cmd,
		done: make(chan struct{}),
		log:  logPath,
	}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
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
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
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

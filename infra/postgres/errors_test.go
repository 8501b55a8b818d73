package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/postgres/pgtest"
)

// safeToRetry is what pgconn's internal errors look like to SafeToRetry.
type safeToRetry struct {
	safe bool
	err  error
}

func (e *safeToRetry) Error() string     { return "pgconn: " + e.err.Error() }
func (e *safeToRetry) Unwrap() error     { return e.err }
func (e *safeToRetry) SafeToRetry() bool { return e.safe }

func TestIsUnavailable(t *testing.T) {
	pgErr := func(code string) error {
		return &pgconn.PgError{Severity: "FATAL", Code: code, Message: "synthetic"}
	}
	wrap := func(err error) error { return fmt.Errorf("store: get trip: %w", fmt.Errorf("begin: %w", err)) }
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ErrUnavailable", postgres.ErrUnavailable, true},
		{"wrapped ErrUnavailable", wrap(postgres.ErrUnavailable), true},
		{"08000 connection_exception", pgErr("08000"), true},
		{"08006 connection_failure", pgErr("08006"), true},
		{"08P01 protocol_violation, wrapped", wrap(pgErr("08P01")), true},
		{"57P01 admin_shutdown", pgErr("57P01"), true},
		{"40003 statement_completion_unknown (ambiguous commit)", pgErr("40003"), true},
		{"57P02 crash_shutdown", pgErr("57P02"), true},
		{"57P03 cannot_connect_now", pgErr("57P03"), true},
		{"53300 too_many_connections, wrapped", wrap(pgErr("53300")), true},
		{"53000 insufficient_resources", pgErr("53000"), true},
		{"53200 out_of_memory", pgErr("53200"), true},
		{"53400 configuration_limit_exceeded", pgErr("53400"), false},
		{"ConnectError", &pgconn.ConnectError{}, true},
		{"wrapped ConnectError", wrap(&pgconn.ConnectError{}), true},
		{"io.EOF under pgconn", &safeToRetry{err: io.EOF}, true},
		{"unexpected EOF, wrapped", wrap(io.ErrUnexpectedEOF), true},
		{"read: connection reset", wrap(&net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}), true},
		{"ECONNREFUSED", wrap(&os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}), true},
		{"EPIPE", wrap(syscall.EPIPE), true},
		{"pgconn.ErrConnClosed", wrap(pgconn.ErrConnClosed), true},
		{"SafeToRetry true", wrap(&safeToRetry{safe: true, err: errors.New("write failed")}), true},
		{"SafeToRetry false, no network cause", &safeToRetry{err: errors.New("something")}, false},
		{"42601 syntax_error", pgErr("42601"), false},
		{"23505 unique_violation, wrapped", wrap(pgErr("23505")), false},
		{"40001 serialization_failure", postgres.SerializationFailure("x"), false},
		{"retries exhausted", fmt.Errorf("%w after 3 attempts: %w", postgres.ErrMaxRetries, pgErr("40001")), false},
		{"57014 query_canceled", pgErr("57014"), false},
		{"context.Canceled", wrap(context.Canceled), false},
		{"context.DeadlineExceeded", wrap(context.DeadlineExceeded), false},
		// pgconn marks "context already done" SafeToRetry; it is still the
		// caller's cancellation, not an outage.
		{"SafeToRetry context.Canceled", &safeToRetry{safe: true, err: context.Canceled}, false},
		{"ConnectError over a deadline", fmt.Errorf("connect: %w: %w", &pgconn.ConnectError{}, context.DeadlineExceeded), false},
		{"pgx.ErrNoRows", pgx.ErrNoRows, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := postgres.IsUnavailable(tt.err); got != tt.want {
			t.Errorf("%s: IsUnavailable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestIsUnavailableRealServer takes a real PostgreSQL away under a pool, a
// held connection, a query in flight and InTx, and connects where nothing
// listens.
func TestIsUnavailableRealServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := pgtest.NewServer(t)
	pool, err := pgxpool.New(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db, err := postgres.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, want bool) {
		t.Helper()
		if postgres.IsUnavailable(err) != want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", what, err, !want, want)
		}
	}

	_, err = pool.Exec(ctx, "SELEC 1")
	if postgres.SQLState(err) != "42601" {
		t.Fatalf("syntax error: %v", err)
	}
	check("syntax error", err, false)

	held, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	busy, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(context.Background())
	inFlight := make(chan error, 1)
	go func() { _, err := busy.Exec(ctx, "SELECT pg_sleep(60)"); inFlight <- err }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep never started")
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.Stop(t)
	err = <-inFlight
	t.Logf("query in flight: %v", err)
	check("query in flight", err, true)
	_, err = held.Exec(ctx, "SELECT 1")
	t.Logf("held connection: %v", err)
	check("held connection", err, true)
	_, err = pool.Exec(ctx, "SELECT 1")
	t.Logf("pool: %v", err)
	check("pool query", err, true)
	err = db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT 1")
		return err
	})
	t.Logf("InTx: %v", err)
	check("InTx", err, true)
	if errors.Is(err, postgres.ErrMaxRetries) || db.Stats().Retries != 0 {
		t.Errorf("InTx retried an outage: %v, %+v", err, db.Stats())
	}

	// Nothing listens on the port any more: pgxpool's "failed to connect".
	cold, err := pgxpool.New(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	err = cold.Ping(ctx)
	cold.Close()
	var connectErr *pgconn.ConnectError
	if !errors.As(err, &connectErr) || pgconn.SafeToRetry(err) {
		t.Errorf("ping with nothing listening: %v, want a ConnectError that SafeToRetry refuses", err)
	}
	t.Logf("pool with nothing listening: %v", err)
	check("ping with nothing listening", err, true)

	// The pool recovers once the server is back.
	srv.Start(t)
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err = pool.Exec(ctx, "SELECT 1")
		if err == nil {
			break
		}
		check("pool query while the server restarts", err, true)
		if time.Now().After(deadline) {
			t.Fatalf("pool never recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/hexride/hexride/infra/admission"
	"github.com/hexride/hexride/infra/postgres"
	"github.com/hexride/hexride/infra/postgres/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

func openDB(t *testing.T, opts ...postgres.Option) *postgres.DB {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	db, err := postgres.New(ctx, pool, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// writeSkew runs cockroach-go's generic contention test (two transactions
// that read both balances, then write based on what they read) on our InTx.
type writeSkew struct{ db *postgres.DB }

func (w writeSkew) Init(ctx context.Context) error {
	_, err := w.db.Pool().Exec(ctx, `
		DROP TABLE IF EXISTS account;
		CREATE TABLE account (id INT PRIMARY KEY, balance INT NOT NULL);
		INSERT INTO account VALUES (1, 100), (2, 100);`)
	return err
}

func (w writeSkew) ExecuteTx(ctx context.Context, fn func(tx any) error) error {
	return w.db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error { return fn(tx) })
}

func (w writeSkew) GetBalances(ctx context.Context, txi any) (int, int, error) {
	tx := txi.(pgx.Tx)
	var b1, b2 int
	err := tx.QueryRow(ctx, `SELECT (SELECT balance FROM account WHERE id = 1), (SELECT balance FROM account WHERE id = 2)`).Scan(&b1, &b2)
	return b1, b2, err
}

func (w writeSkew) UpdateBalance(ctx context.Context, txi any, acct, delta int) error {
	_, err := txi.(pgx.Tx).Exec(ctx, `UPDATE account SET balance = balance + $1 WHERE id = $2`, delta, acct)
	return err
}

func TestInTxContention(t *testing.T) {
	var hooked atomic.Int64
	db := openDB(t, postgres.WithOnRetry(func(context.Context, postgres.RetryInfo) { hooked.Add(1) }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws := writeSkew{db: db}
	if err := ws.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := crdb.ExecuteTxGenericTest(ctx, ws); err != nil {
		t.Fatal(err)
	}
	st := db.Stats()
	if st.Retries == 0 || hooked.Load() != st.Retries {
		t.Fatalf("stats %+v, hook saw %d retries; want at least one retry counted by both", st, hooked.Load())
	}
	t.Logf("stats after write-skew test: %+v", st)
}

func TestInTx(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name        string
		failFirst   int // attempts failing with 40001 at commit time
		body        error
		maxRetries  int
		wantErr     error
		wantCount   int // rows in the table afterwards
		wantRetries int64
	}{
		{name: "commits", wantCount: 1},
		{name: "retried whole after injected 40001", failFirst: 2, wantCount: 1, wantRetries: 2},
		{name: "body error is not retried", body: errBoom, wantErr: errBoom},
		{name: "retries exhausted", failFirst: 100, maxRetries: 3, wantErr: postgres.ErrMaxRetries, wantRetries: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []postgres.Option{postgres.WithBeforeCommit(func(_ context.Context, attempt int) error {
				if attempt <= tt.failFirst {
					return postgres.SerializationFailure(fmt.Sprintf("injected on attempt %d", attempt))
				}
				return nil
			})}
			if tt.maxRetries > 0 {
				opts = append(opts, postgres.WithMaxRetries(tt.maxRetries))
			}
			db := openDB(t, opts...)
			ctx := context.Background()
			if _, err := db.Pool().Exec(ctx, `CREATE TABLE t (id UUID PRIMARY KEY DEFAULT gen_random_uuid())`); err != nil {
				t.Fatal(err)
			}
			runs := 0
			err := db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
				runs++
				if _, err := tx.Exec(ctx, `INSERT INTO t DEFAULT VALUES`); err != nil {
					return fmt.Errorf("insert: %w", err)
				}
				if tt.body != nil {
					return fmt.Errorf("body: %w", tt.body)
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var n int
			if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != tt.wantCount {
				t.Errorf("rows = %d, want %d (a rolled-back attempt must leave nothing)", n, tt.wantCount)
			}
			if got := db.Stats().Retries; got != tt.wantRetries {
				t.Errorf("retries = %d, want %d", got, tt.wantRetries)
			}
			if int64(runs) != tt.wantRetries+1 {
				t.Errorf("body ran %d times, want %d", runs, tt.wantRetries+1)
			}
		})
	}
}

func TestCommitErrorIsReturned(t *testing.T) {
	// A deferred constraint fails at COMMIT: InTx must report it, not
	// pretend the write happened (crdb.ExecuteTx would ignore it).
	db := openDB(t)
	ctx := context.Background()
	if _, err := db.Pool().Exec(ctx, `
		CREATE TABLE parent (id INT PRIMARY KEY);
		CREATE TABLE child (id INT PRIMARY KEY, parent INT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);`); err != nil {
		t.Fatal(err)
	}
	err := db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO child VALUES (1, 42)`)
		return err
	})
	if postgres.SQLState(err) != "23503" {
		t.Fatalf("err = %v, want the COMMIT's foreign-key violation", err)
	}
	if db.Stats().Commits != 0 {
		t.Fatalf("counted a commit that failed")
	}
}

func TestDialect(t *testing.T) {
	db := openDB(t)
	if db.Dialect() != postgres.PostgreSQL {
		t.Fatalf("dialect = %v", db.Dialect())
	}
	for v, want := range map[string]postgres.Dialect{
		"PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on x86_64-pc-linux-gnu":                 postgres.PostgreSQL,
		"CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu, built 2024/05/15 21:28:29, go1.22)": postgres.CockroachDB,
	} {
		if got := postgres.DialectOf(v); got != want {
			t.Errorf("DialectOf(%q) = %v, want %v", v, got, want)
		}
	}
	var isolation string
	if err := db.Pool().QueryRow(context.Background(), "SHOW default_transaction_isolation").Scan(&isolation); err != nil {
		t.Fatal(err)
	}
	if isolation != "serializable" {
		t.Errorf("default_transaction_isolation = %q, want serializable", isolation)
	}
}

func TestNoCommitTooCloseToDeadline(t *testing.T) {
	// With less than the commit margin left before the caller's deadline
	// the transaction is rolled back, not committed for a caller that is
	// about to give up.
	db := openDB(t, postgres.WithCommitMargin(time.Hour))
	if _, err := db.Pool().Exec(context.Background(), `CREATE TABLE t (id INT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := db.InTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		return err
	})
	if !errors.Is(err, postgres.ErrTooLateToCommit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTooLateToCommit wrapping DeadlineExceeded", err)
	}
	var n int
	if err := db.Pool().QueryRow(context.Background(), `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d (%v), want 0: the write committed", n, err)
	}
	// Without a deadline the margin does not apply.
	if err := db.InTx(context.Background(), func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO t VALUES (1)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestCommitOutcomeUnknownOnLostConnection(t *testing.T) {
	// The backend is terminated right before COMMIT: the client cannot
	// know whether COMMIT landed, and says so.
	var pid int
	var db *postgres.DB
	db = openDB(t, postgres.WithBeforeCommit(func(ctx context.Context, _ int) error {
		_, err := db.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, pid)
		return err
	}))
	err := db.InTx(context.Background(), func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid)
	})
	if !errors.Is(err, postgres.ErrCommitUnknown) {
		t.Fatalf("err = %v, want ErrCommitUnknown", err)
	}
	if !postgres.IsUnavailable(err) {
		t.Fatalf("IsUnavailable(%v) = false", err)
	}
}

func TestAdmissionRefusesBeforeBegin(t *testing.T) {
	gate, err := admission.NewGate(admission.Config{Limit: 1, RetryAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db := openDB(t, postgres.WithAdmission(gate))
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(context.Background(), func(ctx context.Context, tx pgx.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	err = db.InTx(context.Background(), func(context.Context, pgx.Tx) error {
		t.Error("ran a transaction past a full gate")
		return nil
	})
	if !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("err = %v, want ErrOverloaded", err)
	}
	if err := db.Admit(context.Background(), func(context.Context) error { return nil }); !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("read past a full gate: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := db.Stats().Attempts; got != 1 {
		t.Fatalf("attempts = %d, want 1 (the refused one never began)", got)
	}
}

// TestAdmitRetriesSerializationFailures: a read refused with SQLSTATE 40001
// (SERIALIZABLE picks even a lone SELECT as a victim under contention) runs
// again; any other error does not; when the retries run out the error says
// so (ErrMaxRetries), so services answer "retry", not "internal error".
func TestAdmitRetriesSerializationFailures(t *testing.T) {
	db := openDB(t, postgres.WithMaxRetries(3))
	tests := []struct {
		name     string
		failures int   // 40001s before success
		other    error // returned on the first attempt instead, if set
		wantRuns int
		wantErr  error
	}{
		{"no failure", 0, nil, 1, nil},
		{"two serialization failures, then the read", 2, nil, 3, nil},
		{"more than the retries allow", 10, nil, 4, postgres.ErrMaxRetries},
		{"another error is not retried", 0, pgx.ErrNoRows, 1, pgx.ErrNoRows},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runs := 0
			err := db.Admit(context.Background(), func(ctx context.Context) error {
				runs++
				if tc.other != nil {
					return tc.other
				}
				if runs <= tc.failures {
					return fmt.Errorf("get trip: %w", postgres.SerializationFailure("could not serialize access"))
				}
				var one int
				return db.Pool().QueryRow(ctx, `SELECT 1`).Scan(&one)
			})
			if runs != tc.wantRuns {
				t.Errorf("ran %d times, want %d", runs, tc.wantRuns)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

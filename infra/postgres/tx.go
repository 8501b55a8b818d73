// Package postgres is hexride's adapter to PostgreSQL-wire databases:
// CockroachDB in production, PostgreSQL 15 in tests. It runs serializable
// transactions retried as a whole on SQLSTATE 40001, tells the two dialects
// apart, and tells a database that cannot serve right now (IsUnavailable)
// from an error in the request.
//
// Retries go through crdb.ExecuteCtx around a function that does
// BEGIN … COMMIT itself and returns the COMMIT error. crdb.ExecuteTx and
// crdbpgx.ExecuteTx are deliberately not used: they rely on CockroachDB's
// cockroach_restart savepoint and ignore the COMMIT error, which on
// PostgreSQL silently loses a write that failed to serialize at commit.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"

	"github.com/hexride/hexride/infra/admission"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQLSTATE codes the adapter and its callers care about.
const (
	CodeSerializationFailure = "40001"
	// CodeStatementCompletionUnknown is CockroachDB's ambiguous result:
	// the statement (a COMMIT) may or may not have taken effect.
	CodeStatementCompletionUnknown = "40003"
	CodeUniqueViolation            = "23505"
)

// ErrMaxRetries wraps the last retryable error when a transaction still
// could not serialize after the configured number of retries.
var ErrMaxRetries = errors.New("postgres: transaction retries exhausted")

// ErrCommitUnknown wraps a COMMIT that failed without an answer from the
// server (the connection was lost, or the caller's context ended while
// COMMIT was in flight): the transaction may or may not have committed.
// Callers resolve it by reading back what the transaction wrote (by its
// idempotency key) before answering.
var ErrCommitUnknown = errors.New("postgres: commit outcome unknown")

// ErrTooLateToCommit is returned, wrapping context.DeadlineExceeded, when
// the caller's deadline is closer than the commit margin at COMMIT time:
// the transaction is rolled back rather than committed for a caller that
// would not hear the answer.
var ErrTooLateToCommit = errors.New("postgres: too close to the caller's deadline to commit")

// RetryInfo describes one retry, for the OnRetry hook.
type RetryInfo struct {
	// Attempt is the attempt about to run (2 for the first retry).
	Attempt int
	// Err is the retryable error that ended the previous attempt.
	Err error
}

// Stats counts transaction outcomes since the DB was made.
type Stats struct {
	Attempts int64 // BEGINs issued
	Retries  int64 // attempts re-run after a retryable error
	Commits  int64 // successful COMMITs
}

// Option configures a DB.
type Option func(*DB)

// WithMaxRetries sets how many times a transaction is re-run after a
// retryable error before giving up (default 30).
func WithMaxRetries(n int) Option {
	return func(db *DB) { db.maxRetries = n }
}

// WithOnRetry registers a hook called before each retry, e.g. to count
// retries in a metric. It must be cheap and must not block.
func WithOnRetry(fn func(ctx context.Context, info RetryInfo)) Option {
	return func(db *DB) { db.onRetry = fn }
}

// WithBeforeCommit registers a hook called inside every transaction right
// before COMMIT, with the 1-based attempt number. A non-nil error rolls the
// attempt back and is treated like any error from the transaction body: a
// 40001 error (see SerializationFailure) makes the whole transaction run
// again. Tests use it to inject retries; production code leaves it unset.
func WithBeforeCommit(fn func(ctx context.Context, attempt int) error) Option {
	return func(db *DB) { db.beforeCommit = fn }
}

// WithCommitMargin sets how much time must be left before the context's
// deadline for a transaction to COMMIT (default 50ms); with less, it is
// rolled back with ErrTooLateToCommit. A commit that lands after the
// caller gave up is work nobody asked for (a ride dispatched to a rider
// who was told the request failed).
func WithCommitMargin(d time.Duration) Option {
	return func(db *DB) { db.commitMargin = d }
}

// WithClock sets the clock the commit margin is measured on (tests).
func WithClock(now func() time.Time) Option {
	return func(db *DB) { db.now = now }
}

// WithAdmission puts every transaction through gate (with the class its
// context carries, see admission.WithClass): when the gate is full the
// transaction is refused at once with admission.ErrOverloaded instead of
// queueing for a pool connection.
func WithAdmission(gate *admission.Gate) Option {
	return func(db *DB) { db.gate = gate }
}

// WithBackoff sets the base delay between retries; each retry waits a random
// duration up to base·2^(retry-1), capped at 100·base. Zero disables waiting.
// The default is 2ms.
func WithBackoff(base time.Duration) Option {
	return func(db *DB) { db.backoff = base }
}

// DB runs serializable transactions on a pgx pool. It does not own the pool.
type DB struct {
	pool         *pgxpool.Pool
	dialect      Dialect
	maxRetries   int
	backoff      time.Duration
	onRetry      func(context.Context, RetryInfo)
	beforeCommit func(context.Context, int) error
	commitMargin time.Duration
	now          func() time.Time
	gate         *admission.Gate

	attempts atomic.Int64
	retries  atomic.Int64
	commits  atomic.Int64
}

// New returns a DB over pool, detecting the dialect with SELECT version().
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*DB, error) {
	dialect, err := DetectDialect(ctx, pool)
	if err != nil {
		return nil, err
	}
	db := &DB{pool: pool, dialect: dialect, maxRetries: 30, backoff: 2 * time.Millisecond, commitMargin: 50 * time.Millisecond, now: time.Now}
	for _, opt := range opts {
		opt(db)
	}
	return db, nil
}

// Pool returns the underlying pool.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Dialect returns the detected dialect.
func (db *DB) Dialect() Dialect { return db.dialect }

// Stats returns the transaction counters.
func (db *DB) Stats() Stats {
	return Stats{Attempts: db.attempts.Load(), Retries: db.retries.Load(), Commits: db.commits.Load()}
}

// InTx runs fn in a serializable transaction: BEGIN, fn, COMMIT. When any
// step (fn, the COMMIT, or the BeforeCommit hook) fails with a retryable
// error (SQLSTATE 40001, or an error marked with Retryable) the transaction is
// rolled back and the whole of fn runs again in a new transaction, so fn must
// have no side effects outside the database and must wrap errors with %w.
// The COMMIT error is returned, never ignored: a failed COMMIT is not a
// success. Any other error ends InTx at once and comes back wrapped with %w
// (BEGIN and COMMIT failures prefixed "begin: " and "commit: "), so callers
// classify it with IsUnavailable, SQLState or errors.Is; a lost connection
// is not retried, since a COMMIT it interrupted may have succeeded.
//
// With an admission gate (WithAdmission) a full gate refuses the
// transaction before BEGIN. COMMIT is not sent when the context's deadline
// is within the commit margin (ErrTooLateToCommit); a COMMIT that fails
// without a server answer is ErrCommitUnknown.
func (db *DB) InTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if db.gate != nil {
		return db.gate.Admit(ctx, "postgres: transaction", func(ctx context.Context) error { return db.inTx(ctx, fn) })
	}
	return db.inTx(ctx, fn)
}

// Admit runs a read outside InTx through the admission gate, if any. A read
// the database refuses with a serialization failure runs again, with
// InTx's retry limit and backoff: under SERIALIZABLE even a lone SELECT can
// be the victim of a read/write dependency (SQLSTATE 40001), and a read has
// nothing to undo.
func (db *DB) Admit(ctx context.Context, fn func(ctx context.Context) error) error {
	read := func(ctx context.Context) error {
		return db.retry(ctx, func(ctx context.Context, _ int) error { return fn(ctx) })
	}
	if db.gate != nil {
		return db.gate.Admit(ctx, "postgres: query", read)
	}
	return read(ctx)
}

func (db *DB) inTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return db.retry(ctx, func(ctx context.Context, attempt int) error { return db.attempt(ctx, attempt, fn) })
}

// retry runs fn (attempt 1, 2, …) until it returns anything but a retryable
// error (40001, or one marked with Retryable), sleeping the backoff between
// attempts; when the retries run out the error wraps ErrMaxRetries.
func (db *DB) retry(ctx context.Context, fn func(ctx context.Context, attempt int) error) error {
	attempt := 0
	var last error
	err := crdb.ExecuteCtx(crdb.WithMaxRetries(ctx, db.maxRetries), func(ctx context.Context, _ ...any) error {
		attempt++
		if attempt > 1 {
			db.retries.Add(1)
			if db.onRetry != nil {
				db.onRetry(ctx, RetryInfo{Attempt: attempt, Err: last})
			}
			if err := db.sleep(ctx, attempt-1); err != nil {
				return err
			}
		}
		last = fn(ctx, attempt)
		return last
	})
	var maxErr *crdb.MaxRetriesExceededError
	if errors.As(err, &maxErr) {
		return fmt.Errorf("%w after %d attempts: %w", ErrMaxRetries, attempt, maxErr.Unwrap())
	}
	return err
}

func (db *DB) attempt(ctx context.Context, attempt int, fn func(context.Context, pgx.Tx) error) (err error) {
	db.attempts.Add(1)
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			// Rollback on a fresh context so a cancelled ctx still
			// releases the connection cleanly.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = tx.Rollback(rctx)
			cancel()
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if db.beforeCommit != nil {
		if err := db.beforeCommit(ctx, attempt); err != nil {
			return err
		}
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(db.now()) < db.commitMargin {
		return fmt.Errorf("%w (%v left): %w", ErrTooLateToCommit, dl.Sub(db.now()), context.DeadlineExceeded)
	}
	if err := tx.Commit(ctx); err != nil {
		var pgErr *pgconn.PgError
		if (errors.As(err, &pgErr) && !unavailableCode(pgErr.Code)) || errors.Is(err, pgx.ErrTxCommitRollback) {
			// The server refused the COMMIT itself (serialization, a
			// deferred constraint): the transaction did not commit. A
			// connection-level error (terminated, shutting down) may have
			// come after the COMMIT landed.
			return fmt.Errorf("commit: %w", err)
		}
		return fmt.Errorf("commit: %w: %w", ErrCommitUnknown, err)
	}
	db.commits.Add(1)
	return nil
}

func (db *DB) sleep(ctx context.Context, retry int) error {
	if db.backoff <= 0 {
		return nil
	}
	limit := db.backoff << min(retry-1, 6)
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SerializationFailure returns a 40001 error, as the database would raise it.
// Tests inject it through WithBeforeCommit.
func SerializationFailure(msg string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: CodeSerializationFailure, Message: msg}
}

// Retryable marks err so that InTx runs the transaction again, e.g. for a
// unique violation on an idempotency key that a concurrent transaction
// inserted (the next attempt finds the key and returns its result).
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err: err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string    { return "retryable: " + e.err.Error() }
func (e *retryableError) Unwrap() error    { return e.err }
func (e *retryableError) SQLState() string { return CodeSerializationFailure }

// SQLState returns the SQLSTATE of the first database error in err's chain,
// or "" if there is none.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsUniqueViolation reports whether err is a unique violation, on the named
// constraint or index when constraint is not empty.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != CodeUniqueViolation {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}

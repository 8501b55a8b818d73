package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable marks an error as "the database cannot serve right now".
// IsUnavailable reports true for any error that wraps it, so code that finds
// the database unusable by other means (a closed pool at shutdown, a circuit
// breaker) can say so with fmt.Errorf("...: %w", ErrUnavailable).
var ErrUnavailable = errors.New("postgres: database unavailable")

// IsUnavailable reports whether err means the database is unreachable or not
// serving right now, as opposed to an answer to the request itself. Callers
// map it to codes.Unavailable: the same request may succeed later or on
// another instance, and the caller did nothing wrong. It looks through
// wrapping (errors.Is and errors.As, never the message text), so errors
// wrapped with %w — by InTx, by a store — classify as the original.
//
// It reports true for:
//
//   - a failed connection attempt (*pgconn.ConnectError: pgx.Connect,
//     pgxpool's "failed to connect to …" — refused, unreachable host,
//     the server starting up or out of connection slots, a rejected login);
//   - a server error of SQLSTATE class 08 (connection exception), 57P01
//     admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (the
//     database system is starting up or shutting down), 57P05
//     idle_session_timeout, and class 53 insufficient resources except 53400
//     (configuration_limit_exceeded, a limit the statement itself hit):
//     53000, 53100 disk_full, 53200 out_of_memory, 53300
//     too_many_connections; 40003 statement_completion_unknown (CockroachDB:
//     the result of a COMMIT is ambiguous; see ErrCommitUnknown);
//   - a connection lost before or during the request: anything
//     pgconn.SafeToRetry accepts (the request never reached the server), a
//     closed connection (pgconn.ErrConnClosed, net.ErrClosed), io.EOF or
//     io.ErrUnexpectedEOF from the socket, any *net.OpError, and
//     ECONNRESET, ECONNREFUSED, ECONNABORTED, EPIPE, ETIMEDOUT,
//     EHOSTUNREACH, ENETUNREACH;
//   - ErrUnavailable, wrapped or not.
//
// It reports false for nil, for every other server error — a syntax error
// (42601), a constraint violation (23505), a serialization failure (40001,
// which InTx retries and reports as ErrMaxRetries when retries run out), a
// cancelled statement (57014) — and for context.Canceled and
// context.DeadlineExceeded anywhere in the chain, even under a connection
// error: a caller that gave up or ran out of time is told so, not that the
// database is down. pgx reports an expired connect_timeout the same way (a
// ConnectError wrapping context.DeadlineExceeded), so it counts as a
// deadline too; a caller whose own ctx.Err() is nil can tell the two apart.
//
// A lost connection during COMMIT leaves the outcome unknown: the
// transaction may have committed. IsUnavailable is still true; callers retry
// with the same idempotency key.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return unavailableCode(pgErr.Code)
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	return isConnectionLoss(err)
}

// unavailableCode reports whether a server error's SQLSTATE says the server
// (or this connection to it) cannot serve, rather than refusing the request.
func unavailableCode(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08": // connection_exception and its subclasses
		return true
	case "53": // insufficient_resources
		return code != "53400" // configuration_limit_exceeded
	}
	switch code {
	case "57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now
		"57P05", // idle_session_timeout
		CodeStatementCompletionUnknown:
		return true
	}
	return false
}

// connectionLoss lists the socket errors of a connection that broke.
var connectionLoss = []error{
	io.EOF, io.ErrUnexpectedEOF, net.ErrClosed,
	syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE,
	syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
}

func isConnectionLoss(err error) bool {
	for _, target := range connectionLoss {
		if errors.Is(err, target) {
			return true
		}
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

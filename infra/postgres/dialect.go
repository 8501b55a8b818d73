package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Dialect is the flavour of the PostgreSQL-wire server.
type Dialect int

const (
	// PostgreSQL is PostgreSQL proper (tests, small deployments).
	PostgreSQL Dialect = iota + 1
	// CockroachDB is CockroachDB (production).
	CockroachDB
)

func (d Dialect) String() string {
	switch d {
	case PostgreSQL:
		return "postgres"
	case CockroachDB:
		return "cockroachdb"
	default:
		return fmt.Sprintf("Dialect(%d)", int(d))
	}
}

// RowQuerier is the part of pgx's pool, conn and tx that DetectDialect uses.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DetectDialect asks the server for `SELECT version()`.
func DetectDialect(ctx context.Context, q RowQuerier) (Dialect, error) {
	var v string
	if err := q.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return 0, fmt.Errorf("detect dialect: %w", err)
	}
	return DialectOf(v), nil
}

// DialectOf classifies a `SELECT version()` string.
func DialectOf(version string) Dialect {
	if strings.Contains(version, "CockroachDB") {
		return CockroachDB
	}
	return PostgreSQL
}

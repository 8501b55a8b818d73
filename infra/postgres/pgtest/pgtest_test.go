package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(Main(m)) }

func TestMissingBinariesFailWithInstallHint(t *testing.T) {
	_, err := findIn([]string{"/nonexistent/bin", t.TempDir()})
	if err == nil || err.Error() != InstallHint {
		t.Fatalf("err = %v, want %q", err, InstallHint)
	}
}

func TestDSN(t *testing.T) {
	ping := func(t *testing.T, dsn string) {
		t.Helper()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var iso string
		if err := conn.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&iso); err != nil {
			t.Fatal(err)
		}
		if iso != "serializable" {
			t.Fatalf("isolation %q", iso)
		}
	}
	a, b := DSN(t), DSN(t)
	if a == b {
		t.Fatalf("two tests share database %s", a)
	}
	ping(t, a)
	t.Run("external server via "+EnvDSN, func(t *testing.T) {
		admin, err := adminDSN()
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvDSN, admin)
		ping(t, DSN(t))
	})
}

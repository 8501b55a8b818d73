package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/trip/store"
	"github.com/hexride/hexride/services/trip/store/memstore"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
	"github.com/hexride/hexride/services/trip/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }

func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
	})
	t.Run("postgres", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			ctx := context.Background()
			pool, err := pgxpool.New(ctx, pgtest.DSN(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			if _, err := sqlstore.Migrate(ctx, pool); err != nil {
				t.Fatal(err)
			}
			s, err := sqlstore.New(ctx, pool)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func TestOutboxConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		storetest.RunOutbox(t, memstore.New(memstore.WithOutbox()), false)
	})
	t.Run("postgres", func(t *testing.T) {
		ctx := context.Background()
		pool, err := pgxpool.New(ctx, pgtest.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		s, err := sqlstore.New(ctx, pool, sqlstore.WithAutoMigrate(), sqlstore.WithOutbox())
		if err != nil {
			t.Fatal(err)
		}
		storetest.RunOutbox(t, s, true)
	})
}

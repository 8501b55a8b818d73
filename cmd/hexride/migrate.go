package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/services/node"
	"github.com/hexride/hexride/services/trip/store/sqlstore"
)

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", summary("migrate"), stderr)
	dsn := fs.String("db", "", "trip store DSN (postgres://…); required")
	region := fs.String("primary-region", "", "CockroachDB only: the database's primary region (with --region-map: must be the map's primary, or empty)")
	regionMap := fs.String("region-map", "", "CockroachDB only: the region map `FILE` the services run with; the database's regions become exactly its regions, its primary the primary region (empty: the cluster's regions)")
	survive := fs.String("survive", "", "CockroachDB only: what the database survives, zone or region (empty: zone when the database is first made multi-region, unchanged after); region adds a cross-region round trip to every write and needs three regions (see migrations/cockroach/README.md)")
	partitionRes := fs.Int("partition-res", dispatch.DefaultTopology().PartitionResolution, "with --region-map: the services' --partition-res (the map's cells are checked against it)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	if *dsn == "" {
		return fmt.Errorf("migrate: --db (or HEXRIDE_DB) is required")
	}
	survival, err := sqlstore.ParseSurvivalGoal(*survive)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	cfg := node.DefaultConfig()
	cfg.Topology.PartitionResolution = *partitionRes
	if err := loadRegionMap(*regionMap, &cfg); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer pool.Close()
	opts := []sqlstore.MigrateOption{sqlstore.WithMigrateLogger(logger), sqlstore.WithSurvivalGoal(survival)}
	if *region != "" {
		opts = append(opts, sqlstore.WithPrimaryRegion(*region))
	}
	if cfg.Regions != nil {
		opts = append(opts, sqlstore.WithRegionMap(cfg.Regions))
	}
	report, err := sqlstore.Migrate(ctx, pool, opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	_, err = fmt.Fprintln(stdout, report.String())
	return err
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/hexride/hexride/services/bench"
)

// benchCmd runs the load harness: it starts a hexride process and a Redis
// server, drives both over real sockets on the same points, and prints
// server CPU per operation and throughput side by side.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	quick := wantsQuick(args, os.Getenv)
	cfg := bench.DefaultConfig()
	if quick {
		cfg = bench.QuickConfig()
	}
	fs := newFlagSet("bench", summary("bench"), stderr)
	fs.Bool("quick", quick, "small sizes (20k drivers, 200 streams, 2 repetitions, short windows): under a minute; flags given beside it still apply")
	asJSON := fs.Bool("json", false, "after the table, print the report as one JSON object on the last line")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of driver positions and query points")
	fs.IntVar(&cfg.Reps, "reps", cfg.Reps, "repetitions of every cell (interleaved hexride/Redis)")
	fs.DurationVar(&cfg.Window, "window", cfg.Window, "length of each measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured load before each window")
	fs.IntVar(&cfg.StreamDrivers, "stream-drivers", cfg.StreamDrivers, "driver apps sending samples, each its own connection and Connect stream")
	fs.DurationVar(&cfg.SampleInterval, "sample-interval", cfg.SampleInterval, "each driver app sends a sample this often (the gateway takes at most 1/s)")
	fs.IntVar(&cfg.RedisClients, "redis-clients", cfg.RedisClients, "concurrent Redis clients sending one GEOADD per round trip")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "locations per IngestLocations message and GEOADDs per Redis pipeline")
	ingest := intListFlag(fs, "ingest-conns", cfg.IngestConns, "connection counts for batched ingest")
	query := intListFlag(fs, "query-conns", cfg.QueryConns, "connection counts for nearest-driver queries")
	fs.IntVar(&cfg.CallersPerConn, "callers", cfg.CallersPerConn, "concurrent queries per query connection")
	sizes := intListFlag(fs, "sizes", cfg.Sizes, "indexed driver counts queries run at (ascending); memory per driver at the largest")
	idle := intListFlag(fs, "idle-streams", cfg.IdleStreams, "idle driver stream counts memory per stream is measured at (ascending)")
	fs.DurationVar(&cfg.Steady, "steady", cfg.Steady, "supply updates run this long before memory is measured again")
	fs.IntVar(&cfg.SteadyRate, "steady-rate", cfg.SteadyRate, "supply updates per second during --steady")
	fs.DurationVar(&cfg.DriverTTL, "driver-ttl", cfg.DriverTTL, "the measured hexride processes' --driver-ttl (loaded drivers must outlive the run)")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "wait before reading RSS")
	fs.Func("only", "measure only these parts, comma-separated: "+strings.Join(bench.Parts, ", ")+" (default: all)", func(v string) error {
		cfg.Only = nil
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				cfg.Only = append(cfg.Only, p)
			}
		}
		if len(cfg.Only) == 0 {
			return errors.New("want at least one part")
		}
		return nil
	})
	fs.StringVar(&cfg.RedisBin, "redis-server", "", "redis-server binary (default: PATH, then /usr/bin/redis-server)")
	serveFloor := fs.String("serve-floor", "", "run only a floor server of this kind ("+strings.Join(bench.FloorKinds, ", ")+") until stopped: the bench starts its floors this way")
	floorAddr := fs.String("floor-addr", "127.0.0.1:0", "with --serve-floor: listen address")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	if *serveFloor != "" {
		if err := bench.ServeFloor(ctx, *serveFloor, *floorAddr, stdout); err != nil {
			return fmt.Errorf("--serve-floor %s: %w", *serveFloor, err)
		}
		return nil
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return err
	}
	cfg.IngestConns, cfg.QueryConns, cfg.Sizes, cfg.IdleStreams = *ingest, *query, *sizes, *idle
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find the hexride binary: %w", err)
	}
	cfg.HexrideBin = exe
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.RedisBin, err = bench.FindRedis(cfg.RedisBin); err != nil {
		return err
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	rep, runErr := bench.Run(ctx, cfg)
	if rep != nil && (len(rep.Rows) > 0 || len(rep.Memory) > 0) {
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
		if *asJSON {
			if err := rep.WriteJSON(stdout); err != nil {
				return err
			}
		}
	}
	return runErr
}

// wantsQuick reports whether --quick is set (on the command line or as
// HEXRIDE_QUICK), before the other flags' defaults are chosen.
func wantsQuick(args []string, getenv func(string) string) bool {
	quick := false
	if v, err := strconv.ParseBool(getenv(envPrefix + "QUICK")); err == nil {
		quick = v
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "quick" {
			continue
		}
		quick = true
		if hasVal {
			v, err := strconv.ParseBool(val)
			quick = err == nil && v
		}
	}
	return quick
}

// intList is a comma-separated list of positive integers.
type intList []int

func (l *intList) String() string {
	parts := make([]string, len(*l))
	for i, n := range *l {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(s string) error {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(strings.ReplaceAll(part, "_", ""))
		if part == "" {
			continue
		}
		mult := 1
		switch {
		case strings.HasSuffix(part, "k"):
			part, mult = strings.TrimSuffix(part, "k"), 1000
		case strings.HasSuffix(part, "M"):
			part, mult = strings.TrimSuffix(part, "M"), 1_000_000
		}
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 {
			return errors.New("want positive integers separated by commas (10k and 1M allowed)")
		}
		out = append(out, n*mult)
	}
	if len(out) == 0 {
		return errors.New("want at least one number")
	}
	*l = out
	return nil
}

func intListFlag(fs *flag.FlagSet, name string, def []int, usage string) *[]int {
	l := intList(append([]int(nil), def...))
	fs.Var(&l, name, usage)
	return (*[]int)(&l)
}

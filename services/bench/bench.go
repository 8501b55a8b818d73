package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hexride/hexride/infra/auth"
)

// bench is one run's state.
type bench struct {
	cfg      Config
	cpus     int
	dir      string
	key      *auth.DevKey
	redisBin string

	ids     []string // indexed drivers, the same in hexride and Redis
	pos     []point  // their canonical positions
	queries []point  // query centres

	// floors are the floor servers of the streams phase, in FloorKinds'
	// order.
	floors []*server

	report    *Report
	idleMem   []MemRow
	indexMem  []MemRow
	refusedMu sync.Mutex
	refused   map[string]int64
}

// Run measures everything cfg asks for. It returns the report even when a
// step fails (with the error in Report.Errors and returned).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	b := &bench{cfg: cfg, cpus: runtime.NumCPU(), refused: map[string]int64{}}
	b.report = &Report{Started: time.Now(), CPUs: b.cpus, Config: cfg, Refused: b.refused}
	b.report.LoadAvgStart, _ = ReadLoadAvg()
	err := b.run(ctx)
	b.report.LoadAvgEnd, _ = ReadLoadAvg()
	b.report.Seconds = math.Round(time.Since(b.report.Started).Seconds())
	b.report.Memory = append(b.indexMem, b.idleMem...)
	b.warn()
	if err != nil {
		b.report.Errors = append(b.report.Errors, err.Error())
	}
	if b.dir != "" && (err == nil || ctx.Err() != nil) {
		os.RemoveAll(b.dir)
	} else if b.dir != "" {
		b.report.Warnings = append(b.report.Warnings, "server logs kept in "+b.dir)
	}
	return b.report, err
}

func (b *bench) run(ctx context.Context) error {
	if err := b.cfg.Validate(); err != nil {
		return err
	}
	var err error
	if b.redisBin, err = FindRedis(b.cfg.RedisBin); err != nil {
		return err
	}
	b.report.Redis.Version = RedisVersion(b.redisBin)
	maxIdle := b.cfg.IdleStreams[len(b.cfg.IdleStreams)-1]
	// One idle kind at a time; while samples flow, the driver apps, the
	// Redis clients and the senders of the floor being measured.
	need := uint64(max(maxIdle, 2*b.cfg.StreamDrivers+b.cfg.RedisClients) + 1024)
	if got, err := RaiseFileLimit(2 * need); err != nil || got < need {
		return fmt.Errorf("bench: open-file limit %d is below the %d this run needs (%v): raise `ulimit -n` or lower --idle-streams or --stream-drivers", got, need, err)
	}
	if b.dir, err = os.MkdirTemp("", "hexride-bench-"); err != nil {
		return err
	}
	if b.key, err = auth.GenerateDevKey(filepath.Join(b.dir, "key")); err != nil {
		return err
	}
	b.report.Hexride.Command = "hexride " + shellJoin(hexrideArgs(b.key.Dir, b.cfg.DriverTTL)) +
		" (one process runs matching, trip and driver: the gateway's batches reach matching over its own loopback connection)"
	b.report.Redis.Command = b.redisBin + " " + strings.Replace(shellJoin(redisArgs(0, b.cfg.redisMaxClients())), "--port 0", "--port <free>", 1)

	b.ids = make([]string, b.cfg.maxSize())
	for i := range b.ids {
		b.ids[i] = driverID(i)
	}
	b.pos = points(b.cfg.Seed, streamDrivers, b.cfg.maxSize())
	b.queries = points(b.cfg.Seed, streamQueries, 10_000)

	if b.cfg.runs(PartIdle) || b.cfg.runs(PartSamples) {
		if err := b.phaseStreams(ctx); err != nil {
			return err
		}
	}
	if !b.cfg.runs(PartIndex) {
		return nil
	}
	return b.phaseIndex(ctx)
}

func (b *bench) progress(format string, args ...any) {
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, "bench: "+format+"\n", args...)
	}
}

func (b *bench) mint(role auth.Role, subject string) (string, error) {
	return auth.Mint(b.key.Private, b.key.Kid, auth.DevIssuer, auth.DevAudience, role, subject, 12*time.Hour, time.Now())
}

// servers starts a hexride process and a Redis server for one phase.
func (b *bench) servers(ctx context.Context, phase string) (hx, rd *server, stop func(), err error) {
	if hx, err = startHexride(ctx, "hexride-"+phase, b.dir, b.cfg.HexrideBin, b.key.Dir, b.cfg.DriverTTL); err != nil {
		return nil, nil, nil, err
	}
	if rd, err = startRedis(ctx, "redis-"+phase, b.dir, b.redisBin, b.cfg.redisMaxClients()); err != nil {
		hx.stop(5 * time.Second)
		return nil, nil, nil, err
	}
	b.progress("%s: hexride pid %d on %s, redis pid %d on %s", phase, hx.pid(), hx.addr, rd.pid(), rd.addr)
	stop = func() { hx.stop(5 * time.Second); rd.stop(5 * time.Second) }
	if err := b.idleCPU(ctx, phase, hx, rd); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return hx, rd, stop, nil
}

// sampleBoth reads both servers' CPU counters.
func sampleBoth(hx, rd *server) ([2]cpuSample, error) {
	h, err := sampleCPU(hx.pid())
	if err != nil {
		return [2]cpuSample{}, err
	}
	r, err := sampleCPU(rd.pid())
	return [2]cpuSample{h, r}, err
}

// idleCPU measures both servers' CPU with no load for one window: the
// background work (timers, expiry, Redis's cron) every per-operation
// figure includes.
func (b *bench) idleCPU(ctx context.Context, phase string, hx, rd *server) error {
	if err := sleep(ctx, b.cfg.Settle); err != nil {
		return err
	}
	before, err := sampleBoth(hx, rd)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleep(ctx, b.cfg.Window); err != nil {
		return err
	}
	after, err := sampleBoth(hx, rd)
	if err != nil {
		return err
	}
	wall := time.Since(t0).Seconds()
	hd, _, _ := cpuBetween(before[0], after[0])
	rdd, _, _ := cpuBetween(before[1], after[1])
	idle := IdleCPU{Phase: phase, HexrideCores: hd.Seconds() / wall, RedisCores: rdd.Seconds() / wall}
	b.report.Idle = append(b.report.Idle, idle)
	b.progress("%s: idle CPU: hexride %.4f cores, Redis %.4f cores", phase, idle.HexrideCores, idle.RedisCores)
	return nil
}

// alive checks both servers are still running.
func alive(servers ...*server) error {
	for _, s := range servers {
		if err := s.alive(); err != nil {
			return err
		}
	}
	return nil
}

// phaseStreams measures driver apps: memory per idle stream, then
// location samples through Connect streams beside Redis GEOADDs.
func (b *bench) phaseStreams(ctx context.Context) error {
	hx, rd, stop, err := b.servers(ctx, "streams")
	if err != nil {
		return err
	}
	defer stop()
	for _, kind := range FloorKinds {
		fl, err := startFloor(ctx, kind, b.dir, b.cfg.HexrideBin)
		if err != nil {
			return err
		}
		defer fl.stop(5 * time.Second)
		b.floors = append(b.floors, fl)
	}
	if b.cfg.runs(PartIdle) {
		if err := b.idleMemory(ctx, hx, rd); err != nil {
			return err
		}
	}
	if !b.cfg.runs(PartSamples) {
		return nil
	}
	return b.samples(ctx, hx, rd)
}

// idleMemory opens idle driver streams (and, for Redis, idle client
// connections) and measures RSS per connection at each count.
func (b *bench) idleMemory(ctx context.Context, hx, rd *server) error {
	counts := b.cfg.IdleStreams
	pts := points(b.cfg.Seed, streamIdle, counts[len(counts)-1])
	if err := sleep(ctx, b.cfg.Settle); err != nil {
		return err
	}
	hBase, err := ProcessRSS(hx.pid())
	if err != nil {
		return err
	}
	rBase, err := ProcessRSS(rd.pid())
	if err != nil {
		return err
	}
	hRSS, rRSS := make([]int64, len(counts)), make([]int64, len(counts))

	var fleets []*fleet
	defer func() {
		for _, f := range fleets {
			f.close()
		}
	}()
	opened := 0
	for i, n := range counts {
		b.progress("idle streams: opening %d more hexride driver streams (%d in all)", n-opened, n)
		f, err := b.openFleet(ctx, hx.addr, fmt.Sprintf("idle%d", i), pts[opened:n], b.cfg.Seed+100)
		if err != nil {
			return fmt.Errorf("idle streams: %w", err)
		}
		fleets, opened = append(fleets, f), n
		if err := sleep(ctx, b.cfg.Settle); err != nil {
			return err
		}
		if hRSS[i], err = ProcessRSS(hx.pid()); err != nil {
			return err
		}
		if err := alive(hx); err != nil {
			return err
		}
	}
	for _, f := range fleets {
		b.addRefused(f.refusedCounts())
		f.close()
	}
	fleets = nil

	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	opened = 0
	for i, n := range counts {
		b.progress("idle streams: opening %d more Redis connections (%d in all)", n-opened, n)
		c, err := b.idleRedisConns(ctx, rd.addr, pts[opened:n], fmt.Sprintf("idle%d", i))
		if err != nil {
			return err
		}
		closers, opened = append(closers, c), n
		if err := sleep(ctx, b.cfg.Settle); err != nil {
			return err
		}
		if rRSS[i], err = ProcessRSS(rd.pid()); err != nil {
			return err
		}
	}
	for _, c := range closers {
		c()
	}
	closers = nil
	floorBytes, err := b.idleFloors(ctx, counts, pts)
	if err != nil {
		return err
	}
	for i, n := range counts {
		row := MemRow{
			ID:       fmt.Sprintf("4%c", 'c'+i),
			Workload: fmt.Sprintf("memory per connected idle driver, %d connected", n),
			Hexride: MemCell{System: Hexride, What: "Connect stream on its own connection, ONLINE, one sample sent",
				BytesPer: float64(hRSS[i]-hBase) / float64(n), RSS: hRSS[i], Baseline: hBase, Count: n},
			Redis: MemCell{System: Redis, What: "client connection that sent one GEOADD",
				BytesPer: float64(rRSS[i]-rBase) / float64(n), RSS: rRSS[i], Baseline: rBase, Count: n},
		}
		row.Ratio = Ratio(row.Hexride.BytesPer, row.Redis.BytesPer)
		for _, fl := range floorBytes {
			row.Floors = append(row.Floors, fl[i])
			row.FloorRatios = append(row.FloorRatios, Ratio(row.Hexride.BytesPer, fl[i].BytesPer))
		}
		b.idleMem = append(b.idleMem, row)
		b.progress("idle streams: %d: hexride %s per stream, Redis %s per connection", n, FormatNum(row.Hexride.BytesPer), FormatNum(row.Redis.BytesPer))
	}
	return nil
}

func (b *bench) addRefused(m map[string]int64) {
	b.refusedMu.Lock()
	defer b.refusedMu.Unlock()
	for k, v := range m {
		b.refused[k] += v
	}
}

// samples is workload 1: location samples from driver apps.
func (b *bench) samples(ctx context.Context, hx, rd *server) error {
	d, every := b.cfg.StreamDrivers, b.cfg.SampleInterval
	rate := float64(d) / every.Seconds()
	b.progress("samples: connecting %d driver apps", d)
	start := points(b.cfg.Seed, streamApps, d)
	f, err := b.openFleet(ctx, hx.addr, "app", start, b.cfg.Seed+200)
	if err != nil {
		return fmt.Errorf("samples: %w", err)
	}
	dctx, stopDriving := context.WithCancel(ctx)
	defer func() {
		stopDriving()
		b.addRefused(f.refusedCounts())
		f.close()
	}()
	f.drive(dctx, every)
	// Every app's ticker is running (phase spread over one interval) before
	// the first window, so activation brings the full rate at once.
	if err := sleep(ctx, 2*every); err != nil {
		return err
	}

	appIDs := make([]string, d)
	for i := range appIDs {
		appIDs[i] = fmt.Sprintf("app-%d", i)
	}
	if err := seedRedisApps(ctx, rd.addr, appIDs, start); err != nil {
		return err
	}
	mv := newMover(appIDs, start, d)
	c := b.cfg.RedisClients

	hexCell := &Cell{System: Hexride, What: "own connection + Connect stream per driver, ONLINE, samples acked cumulatively (each checked taken)"}
	paced := &Cell{System: Redis, What: fmt.Sprintf("GEOADD, 1 per round trip, %d clients, same offered rate", c)}
	piped := &Cell{System: Redis, What: fmt.Sprintf("pipelines of %d GEOADDs on 1 connection, same offered rate", b.cfg.Batch)}
	closed := &Cell{System: Redis, What: fmt.Sprintf("GEOADD, 1 per round trip, %d clients, closed loop (flat out)", c)}

	hexRun := func(ctx context.Context) (rep, error) {
		f.active.Store(true)
		r, err := measure(ctx, hx.pid(), f.counter, b.cfg.Warmup, b.cfg.Window)
		f.active.Store(false)
		_ = sleep(ctx, 300*time.Millisecond) // acks in flight, the gateway's last batch
		if err == nil {
			err = alive(hx)
		}
		if err == nil {
			// Every sample counted was taken (or refused, and not counted).
			_, err = f.settle(ctx)
		}
		if err == nil && r.errors > 0 {
			err = f.counter.firstErr()
		}
		return r, err
	}
	redisRun := func(period time.Duration, start func(c *counters) func()) func(ctx context.Context) (rep, error) {
		warmup, window := alignWindow(b.cfg.Warmup, b.cfg.Window, period)
		return func(ctx context.Context) (rep, error) {
			cs := &counters{}
			stop := start(cs)
			r, err := measure(ctx, rd.pid(), cs, warmup, window)
			stop()
			if err == nil {
				err = alive(rd)
			}
			return r, err
		}
	}
	// Redis gets the same offered rate: each of c clients one GEOADD per
	// perClient, or one pipeline of Batch per perPipeline.
	perClient := time.Duration(float64(c) / rate * float64(time.Second))
	perPipeline := time.Duration(float64(b.cfg.Batch) / rate * float64(time.Second))
	var floorCells []*Cell
	var floorSpecs []cellSpec
	for _, fl := range b.floorLoads(rd, start) {
		c := &Cell{System: Floor, What: fl.what}
		floorCells = append(floorCells, c)
		floorSpecs = append(floorSpecs, cellSpec{c, func(ctx context.Context) (rep, error) { return fl.run(ctx, b, every) }})
	}
	b.progress("samples: %d drivers × 1 per %v = %s samples/s offered", d, every, FormatNum(rate))
	err = b.interleave(ctx, "samples", append([]cellSpec{
		{hexCell, hexRun},
		{paced, redisRun(perClient, func(cs *counters) func() {
			return b.redisGeoaddLoad(ctx, rd.addr, appsKey, c, mv, cs, perClient)
		})},
		{piped, redisRun(perPipeline, func(cs *counters) func() {
			return b.redisPipelineLoad(ctx, rd.addr, appsKey, 1, mv, cs, perPipeline)
		})},
		{closed, redisRun(0, func(cs *counters) func() {
			return b.redisGeoaddLoad(ctx, rd.addr, appsKey, c, mv, cs, 0)
		})},
	}, floorSpecs...))
	if err != nil {
		return err
	}
	workload := fmt.Sprintf("location samples: %d driver apps, 1 sample per %v each (%s/s offered)", d, every, FormatNum(rate))
	b.addRow("1a", workload, *hexCell, *paced, "the floors get the same samples (Redis: as GEOADDs), each alone on its own connection, and only read them (Redis: adds them to a geo set)")
	row := &b.report.Rows[len(b.report.Rows)-1]
	for _, fc := range floorCells {
		row.Floors = append(row.Floors, *fc)
		row.FloorRatios = append(row.FloorRatios, Ratio(hexCell.CPUPerOpUS.Median, fc.CPUPerOpUS.Median))
	}
	b.addRow("1b", workload, *hexCell, *piped, "hexride: the same runs as 1a")
	b.addRow("1c", workload, *hexCell, *closed, "hexride: the same runs as 1a (paced by the gateway's 1 sample/s per driver); compare CPU/op, not ops/s")
	return nil
}

// seedRedisApps adds the driver apps' first positions to Redis.
func seedRedisApps(ctx context.Context, addr string, ids []string, pos []point) error {
	rdb := redisClient(addr, 1)
	defer rdb.Close()
	for lo := 0; lo < len(ids); lo += 1000 {
		hi := min(lo+1000, len(ids))
		locs := make([]*redis.GeoLocation, 0, hi-lo)
		for i := lo; i < hi; i++ {
			locs = append(locs, geoLoc(ids[i], pos[i]))
		}
		if err := rdb.GeoAdd(ctx, appsKey, locs...).Err(); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) addRow(id, workload string, h, r Cell, note string) {
	row := Row{ID: id, Workload: workload, Hexride: h, Redis: r, Note: note,
		CPURatio: Ratio(h.CPUPerOpUS.Median, r.CPUPerOpUS.Median),
		OpsRatio: Ratio(h.OpsPerSec.Median, r.OpsPerSec.Median)}
	b.report.Rows = append(b.report.Rows, row)
}

// phaseIndex measures the supply index: batched ingest, nearest-driver
// queries at each size, and memory per indexed driver.
func (b *bench) phaseIndex(ctx context.Context) error {
	hx, rd, stop, err := b.servers(ctx, "index")
	if err != nil {
		return err
	}
	defer stop()
	if err := sleep(ctx, b.cfg.Settle); err != nil {
		return err
	}
	hBase, err := ProcessRSS(hx.pid())
	if err != nil {
		return err
	}
	rBase, err := ProcessRSS(rd.pid())
	if err != nil {
		return err
	}
	n1 := b.cfg.Sizes[0]
	if err := b.load(ctx, hx, rd, 0, n1); err != nil {
		return err
	}
	if err := b.ingest(ctx, hx, rd, n1); err != nil {
		return err
	}
	// Ingest moved the first n1 drivers (differently in each system): put
	// them back so both answer queries over the same points.
	if err := b.load(ctx, hx, rd, 0, n1); err != nil {
		return err
	}
	loaded := n1
	var hLoaded, rLoaded int64
	for si, size := range b.cfg.Sizes {
		if err := b.load(ctx, hx, rd, loaded, size); err != nil {
			return err
		}
		loaded = size
		if size == b.cfg.maxSize() {
			if err := sleep(ctx, b.cfg.Settle); err != nil {
				return err
			}
			if hLoaded, err = ProcessRSS(hx.pid()); err != nil {
				return err
			}
			if rLoaded, err = ProcessRSS(rd.pid()); err != nil {
				return err
			}
		}
		if err := b.checkAnswers(ctx, hx, rd, size); err != nil {
			return err
		}
		if err := b.nearby(ctx, hx, rd, size, si); err != nil {
			return err
		}
	}
	n := b.cfg.maxSize()
	memRow := func(id, what string, h, r int64) MemRow {
		row := MemRow{ID: id, Workload: what,
			Hexride: MemCell{System: Hexride, What: "supply index (matching, trip, driver process)", BytesPer: float64(h-hBase) / float64(n), RSS: h, Baseline: hBase, Count: n},
			Redis:   MemCell{System: Redis, What: "one geo sorted set (GEOADD)", BytesPer: float64(r-rBase) / float64(n), RSS: r, Baseline: rBase, Count: n},
			Note:    "Redis holds id + geohash only; hexride also product, status, heading, speed, gateway, last seen, per-cell counts",
		}
		row.Ratio = Ratio(row.Hexride.BytesPer, row.Redis.BytesPer)
		return row
	}
	b.indexMem = append(b.indexMem, memRow("4a", fmt.Sprintf("memory per indexed driver at %s, after loading", FormatNum(float64(n))), hLoaded, rLoaded))
	hSteady, rSteady, err := b.steady(ctx, hx, rd)
	if err != nil {
		return err
	}
	b.indexMem = append(b.indexMem, memRow("4b", fmt.Sprintf("memory per indexed driver at %s, after %v of supply updates (%s/s, moving drivers; expiry running)",
		FormatNum(float64(n)), b.cfg.Steady, FormatNum(float64(b.cfg.SteadyRate))), hSteady, rSteady))
	return nil
}

// load puts drivers [from, to) at their canonical positions in both.
func (b *bench) load(ctx context.Context, hx, rd *server, from, to int) error {
	if from >= to {
		return nil
	}
	b.progress("index: loading drivers %d..%d into hexride and Redis", from, to)
	if err := b.loadHexride(ctx, hx.addr, from, to); err != nil {
		return errors.Join(err, alive(hx))
	}
	return b.loadRedis(ctx, rd.addr, from, to)
}

// ingest is workload 2: batched location ingest over 1 and more
// connections, updating the first n drivers.
func (b *bench) ingest(ctx context.Context, hx, rd *server, n int) error {
	for i, conns := range b.cfg.IngestConns {
		hexCell := &Cell{System: Hexride, What: fmt.Sprintf("IngestLocations stream per connection, %d locations per message", b.cfg.Batch)}
		redisCell := &Cell{System: Redis, What: fmt.Sprintf("pipelines of %d single-member GEOADDs", b.cfg.Batch)}
		hmv, rmv := newMover(b.ids, b.pos, n), newMover(b.ids, b.pos, n)
		err := b.interleave(ctx, fmt.Sprintf("ingest/%dconn", conns), []cellSpec{
			{hexCell, func(ctx context.Context) (rep, error) {
				cs := &counters{}
				stop, err := b.hexIngestLoad(ctx, hx.addr, conns, hmv, cs, 0)
				if err != nil {
					return rep{}, err
				}
				r, err := measure(ctx, hx.pid(), cs, b.cfg.Warmup, b.cfg.Window)
				stop()
				return r, errors.Join(err, alive(hx))
			}},
			{redisCell, func(ctx context.Context) (rep, error) {
				cs := &counters{}
				stop := b.redisPipelineLoad(ctx, rd.addr, driversKey, conns, rmv, cs, 0)
				r, err := measure(ctx, rd.pid(), cs, b.cfg.Warmup, b.cfg.Window)
				stop()
				return r, errors.Join(err, alive(rd))
			}},
		})
		if err != nil {
			return err
		}
		b.addRow(fmt.Sprintf("2%c", 'a'+i),
			fmt.Sprintf("batched location updates of %s indexed drivers, %d connection(s), one batch in flight on each, closed loop", FormatNum(float64(n)), conns),
			*hexCell, *redisCell, "")
	}
	return nil
}

// nearby is workload 3 at one size.
func (b *bench) nearby(ctx context.Context, hx, rd *server, size, si int) error {
	for i, conns := range b.cfg.QueryConns {
		callers := conns * b.cfg.CallersPerConn
		hexCell := &Cell{System: Hexride, What: fmt.Sprintf("NearbyDrivers (limit 10, 3 km, STANDARD), %d connection(s) × %d callers", conns, b.cfg.CallersPerConn)}
		redisCell := &Cell{System: Redis, What: fmt.Sprintf("GEOSEARCH FROMLONLAT BYRADIUS 3000 m ASC COUNT 10, %d connections (as many in flight)", callers)}
		err := b.interleave(ctx, fmt.Sprintf("nearby/%s/%dconn", FormatNum(float64(size)), conns), []cellSpec{
			{hexCell, func(ctx context.Context) (rep, error) {
				cs := &counters{}
				stop, err := b.hexQueryLoad(ctx, hx.addr, conns, cs)
				if err != nil {
					return rep{}, err
				}
				r, err := measure(ctx, hx.pid(), cs, b.cfg.Warmup, b.cfg.Window)
				stop()
				return r, errors.Join(err, alive(hx))
			}},
			{redisCell, func(ctx context.Context) (rep, error) {
				cs := &counters{}
				stop := b.redisQueryLoad(ctx, rd.addr, callers, cs)
				r, err := measure(ctx, rd.pid(), cs, b.cfg.Warmup, b.cfg.Window)
				stop()
				return r, errors.Join(err, alive(rd))
			}},
		})
		if err != nil {
			return err
		}
		b.addRow(fmt.Sprintf("3%c", 'a'+si*len(b.cfg.QueryConns)+i),
			fmt.Sprintf("nearest 10 drivers within 3 km among %s, closed loop, %d requests in flight", FormatNum(float64(size)), callers),
			*hexCell, *redisCell, "")
	}
	return nil
}

// checkAnswers compares both systems' nearest-10 answers on sampled
// query points; a difference is a warning (ties and Redis's 52-bit
// geohash rounding can reorder equidistant drivers).
func (b *bench) checkAnswers(ctx context.Context, hx, rd *server, size int) error {
	conns, err := b.serviceConns(hx.addr, 1)
	if err != nil {
		return err
	}
	defer closeConns(conns)
	rdb := redisClient(rd.addr, 1)
	defer rdb.Close()
	const samples = 20
	same := 0
	var first string
	for i := range samples {
		p := b.queries[(i*7919)%len(b.queries)]
		qctx, cancel := context.WithTimeout(ctx, opTimeout)
		h, err := b.hexNearest(qctx, conns[0], p)
		if err != nil {
			cancel()
			return fmt.Errorf("check answers: hexride: %w", err)
		}
		r, err := rdb.GeoSearch(qctx, driversKey, geoSearch(p)).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("check answers: redis: %w", err)
		}
		hs, rs := slices.Clone(h), slices.Clone(r)
		slices.Sort(hs)
		slices.Sort(rs)
		if slices.Equal(hs, rs) {
			same++
		} else if first == "" {
			first = fmt.Sprintf("at %.5f,%.5f hexride %v, Redis %v", p.Lat, p.Lng, h, r)
		}
	}
	b.progress("index: %d/%d sampled nearest-10 answers identical in hexride and Redis at %s drivers", same, samples, FormatNum(float64(size)))
	if same < samples {
		b.report.Warnings = append(b.report.Warnings, fmt.Sprintf("nearest-10 answers differ on %d of %d sampled points at %d drivers; first: %s", samples-same, samples, size, first))
	}
	return nil
}

// steady runs supply updates (gateway-style batches, paced) against both
// systems at once for cfg.Steady and returns their RSS after it.
func (b *bench) steady(ctx context.Context, hx, rd *server) (h, r int64, err error) {
	n := b.cfg.maxSize()
	every := time.Duration(float64(b.cfg.Batch) / float64(b.cfg.SteadyRate) * float64(time.Second))
	b.progress("memory: %v of supply updates at %s/s into both", b.cfg.Steady, FormatNum(float64(b.cfg.SteadyRate)))
	hc, rc := &counters{}, &counters{}
	stopH, err := b.hexIngestLoad(ctx, hx.addr, 1, newMover(b.ids, b.pos, n), hc, every)
	if err != nil {
		return 0, 0, err
	}
	stopR := b.redisPipelineLoad(ctx, rd.addr, driversKey, 1, newMover(b.ids, b.pos, n), rc, every)
	err = sleep(ctx, b.cfg.Steady)
	stopH()
	stopR()
	if err != nil {
		return 0, 0, err
	}
	if e := hc.firstErr(); e != nil {
		return 0, 0, fmt.Errorf("steady supply into hexride: %w", e)
	}
	if e := rc.firstErr(); e != nil {
		return 0, 0, fmt.Errorf("steady supply into Redis: %w", e)
	}
	if err := alive(hx, rd); err != nil {
		return 0, 0, err
	}
	if h, err = ProcessRSS(hx.pid()); err != nil {
		return 0, 0, err
	}
	if r, err = ProcessRSS(rd.pid()); err != nil {
		return 0, 0, err
	}
	b.progress("memory: %d + %d updates sent", hc.ops.Load(), rc.ops.Load())
	return h, r, nil
}

// warn adds the run's warnings.
func (b *bench) warn() {
	r := b.report
	var bound []string
	for _, row := range r.Rows {
		for _, c := range []Cell{row.Hexride, row.Redis} {
			if c.ClientBound {
				bound = append(bound, row.ID+" "+c.System)
			}
		}
	}
	if len(bound) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the bench client was saturated in %s: ops/s there is bounded by the client on this %d-CPU machine; server CPU/op stands", strings.Join(bound, ", "), b.cpus))
	}
	for _, row := range r.Rows {
		for _, c := range []Cell{row.Hexride, row.Redis} {
			if c.Errors > 0 {
				r.Errors = append(r.Errors, fmt.Sprintf("%s %s: %d operations failed; first: %s", row.ID, c.System, c.Errors, c.FirstError))
			}
		}
	}
	var precise []string
	for _, row := range r.Rows {
		for _, c := range []Cell{row.Hexride, row.Redis} {
			if c.PreciseReps > 0 {
				precise = append(precise, row.ID+" "+c.System)
			}
		}
	}
	if len(precise) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("server CPU in %s moved under 1 s per window, too few /proc/PID/stat ticks: taken from /proc/PID/task/*/schedstat (ns) instead", strings.Join(precise, ", ")))
	}
	if r.LoadAvgStart.One > 0.5*float64(b.cpus) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the machine was busy before the run (load average %s on %d CPUs): figures may be disturbed", r.LoadAvgStart, b.cpus))
	}
	var refused int64
	for _, n := range b.refused {
		refused += n
	}
	if refused > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the gateway refused %d location samples (%s); only accepted samples count as operations", refused, formatCounts(b.refused)))
	}
}

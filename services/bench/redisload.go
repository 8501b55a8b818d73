package bench

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis keys: the indexed drivers and the driver apps' samples.
const (
	driversKey = "drivers"
	appsKey    = "apps"
)

// redisClient is a go-redis client with pool connections to addr.
func redisClient(addr string, pool int) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     addr,
		PoolSize:                 pool,
		MinIdleConns:             0,
		DisableIdentity:          true, // CLIENT SETINFO is Redis 7.2+
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		ReadTimeout:              opTimeout,
		WriteTimeout:             opTimeout,
	})
}

func geoLoc(id string, p point) *redis.GeoLocation {
	return &redis.GeoLocation{Name: id, Longitude: p.Lng, Latitude: p.Lat}
}

// loadRedis adds drivers [from, to) at their canonical positions (large
// multi-member GEOADDs, not measured).
func (b *bench) loadRedis(ctx context.Context, addr string, from, to int) error {
	rdb := redisClient(addr, 2)
	defer rdb.Close()
	const perCmd, perPipe = 1000, 20
	for lo := from; lo < to; lo += perCmd * perPipe {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for c := lo; c < min(lo+perCmd*perPipe, to); c += perCmd {
				locs := make([]*redis.GeoLocation, 0, perCmd)
				for i := c; i < min(c+perCmd, to); i++ {
					locs = append(locs, geoLoc(b.ids[i], b.pos[i]))
				}
				p.GeoAdd(ctx, driversKey, locs...)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redis load %d..%d: %w", lo, to, err)
		}
	}
	n, err := rdb.ZCard(ctx, driversKey).Result()
	if err != nil {
		return err
	}
	if n < int64(to) {
		return fmt.Errorf("redis holds %d drivers after loading %d", n, to)
	}
	return nil
}

// redisGeoaddLoad sends single-member GEOADDs, one per round trip, from
// clients concurrent clients (each its own connection), paced or closed
// loop, moving the drivers in mv.
func (b *bench) redisGeoaddLoad(ctx context.Context, addr, key string, clients int, mv *mover, c *counters, every time.Duration) func() {
	rdb := redisClient(addr, clients)
	rngs := make([]*rand.Rand, clients)
	idBufs, posBufs := make([][]string, clients), make([][]point, clients)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(b.cfg.Seed, uint64(2000+i)))
		idBufs[i], posBufs[i] = make([]string, 0, 1), make([]point, 0, 1)
	}
	stop := runLoad(ctx, c, clients, every, func(ctx context.Context, w int) (int64, error) {
		ids, pos := mv.take(1, rngs[w], idBufs[w], posBufs[w])
		if err := rdb.GeoAdd(ctx, key, geoLoc(ids[0], pos[0])).Err(); err != nil {
			return 0, err
		}
		return 1, nil
	})
	return func() { stop(); rdb.Close() }
}

// redisPipelineLoad sends pipelines of b.cfg.Batch single-member GEOADDs
// over conns connections, one pipeline in flight on each.
func (b *bench) redisPipelineLoad(ctx context.Context, addr, key string, conns int, mv *mover, c *counters, every time.Duration) func() {
	rdbs := make([]*redis.Client, conns)
	rngs := make([]*rand.Rand, conns)
	idBufs, posBufs := make([][]string, conns), make([][]point, conns)
	for i := range rdbs {
		rdbs[i] = redisClient(addr, 1)
		rngs[i] = rand.New(rand.NewPCG(b.cfg.Seed, uint64(3000+i)))
		idBufs[i], posBufs[i] = make([]string, 0, b.cfg.Batch), make([]point, 0, b.cfg.Batch)
	}
	stop := runLoad(ctx, c, conns, every, func(ctx context.Context, w int) (int64, error) {
		ids, pos := mv.take(b.cfg.Batch, rngs[w], idBufs[w], posBufs[w])
		cmds, err := rdbs[w].Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range ids {
				p.GeoAdd(ctx, key, geoLoc(ids[i], pos[i]))
			}
			return nil
		})
		var n int64
		for _, cmd := range cmds {
			if cmd.Err() == nil {
				n++
			}
		}
		return n, err
	})
	return func() {
		stop()
		for _, r := range rdbs {
			r.Close()
		}
	}
}

func geoSearch(p point) *redis.GeoSearchQuery {
	return &redis.GeoSearchQuery{
		Longitude: p.Lng, Latitude: p.Lat,
		Radius: queryRadius, RadiusUnit: "m",
		Sort: "ASC", Count: queryLimit,
	}
}

// redisQueryLoad runs callers closed-loop GEOSEARCH callers, each on its
// own connection (so as many requests are in flight as hexride's callers).
func (b *bench) redisQueryLoad(ctx context.Context, addr string, callers int, c *counters) func() {
	rdb := redisClient(addr, callers)
	next := make([]int, callers)
	for w := range next {
		next[w] = w * len(b.queries) / callers
	}
	stop := runLoad(ctx, c, callers, 0, func(ctx context.Context, w int) (int64, error) {
		p := b.queries[next[w]%len(b.queries)]
		next[w]++
		ids, err := rdb.GeoSearch(ctx, driversKey, geoSearch(p)).Result()
		if err != nil {
			return 0, err
		}
		if len(ids) == 0 {
			return 0, fmt.Errorf("redis: no driver within 3 km of %.5f,%.5f", p.Lat, p.Lng)
		}
		return 1, nil
	})
	return func() { stop(); rdb.Close() }
}

// idleRedisConns opens n raw connections that each send one GEOADD (a
// driver's position) and then stay idle. close ends them.
func (b *bench) idleRedisConns(ctx context.Context, addr string, start []point, prefix string) (close func(), err error) {
	conns := make([]net.Conn, 0, len(start))
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	for i, p := range start {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("redis idle connection %d: %w", i, err)
		}
		conns = append(conns, c)
		if err := geoaddOnce(c, appsKey, fmt.Sprintf("%s-%d", prefix, i), p); err != nil {
			closeAll()
			return nil, fmt.Errorf("redis idle connection %d: %w", i, err)
		}
	}
	return closeAll, nil
}

// geoaddOnce sends GEOADD key lng lat member on c and reads the reply.
func geoaddOnce(c net.Conn, key, member string, p point) error {
	cmd := respCommand(nil, "GEOADD", key, strconv.FormatFloat(p.Lng, 'f', 7, 64), strconv.FormatFloat(p.Lat, 'f', 7, 64), member)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(cmd); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, ":") {
		return fmt.Errorf("GEOADD answered %q", strings.TrimSpace(line))
	}
	return nil
}

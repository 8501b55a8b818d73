// Package bench is hexride's load harness: it starts the servers it
// measures (a hexride process and a Redis server), drives them over real
// sockets the way an app or a peer does, and reports server CPU per
// operation (utime+stime of the server process from /proc/PID/stat over
// each window, divided by the operations completed) and throughput,
// hexride beside Redis on the same points, interleaved and repeated.
package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Config sizes a run. DefaultConfig is the full run; QuickConfig finishes
// in well under a minute.
type Config struct {
	// HexrideBin is the hexride binary to run as the measured server
	// (`hexride serve`); RedisBin the redis-server binary ("" finds it).
	HexrideBin string `json:"-"`
	RedisBin   string `json:"-"`
	// Seed makes driver positions and query points reproducible.
	Seed uint64 `json:"seed"`
	// Reps is how many times each cell is measured (interleaved).
	Reps int `json:"reps"`
	// Window is how long each measurement lasts; Warmup runs the load
	// before it, unmeasured.
	Window time.Duration `json:"window"`
	Warmup time.Duration `json:"warmup"`
	// StreamDrivers is how many driver apps (each its own connection and
	// Connect stream) send samples; SampleInterval how often each does.
	StreamDrivers  int           `json:"stream_drivers"`
	SampleInterval time.Duration `json:"sample_interval"`
	// RedisClients is how many concurrent Redis clients send one GEOADD
	// per round trip beside the streams.
	RedisClients int `json:"redis_clients"`
	// Batch is the locations per IngestLocations message and the GEOADDs
	// per Redis pipeline.
	Batch int `json:"batch"`
	// IngestConns and QueryConns are the connection counts tried for
	// batched ingest and for nearest-driver queries; CallersPerConn is how
	// many concurrent queries each query connection carries.
	IngestConns    []int `json:"ingest_conns"`
	QueryConns     []int `json:"query_conns"`
	CallersPerConn int   `json:"callers_per_conn"`
	// Sizes are the loaded driver counts queries are measured at; memory
	// per driver is measured at the largest.
	Sizes []int `json:"sizes"`
	// IdleStreams are the idle Connect stream counts memory per stream is
	// measured at (ascending).
	IdleStreams []int `json:"idle_streams"`
	// Steady is how long supply updates (SteadyRate per second) keep
	// flowing, with the index's expiry running, before memory is measured
	// again.
	Steady     time.Duration `json:"steady"`
	SteadyRate int           `json:"steady_rate"`
	// DriverTTL is the hexride servers' --driver-ttl: long enough that
	// loaded drivers stay indexed for the whole run.
	DriverTTL time.Duration `json:"driver_ttl"`
	// Settle is how long to wait after opening idle streams before reading
	// RSS.
	Settle time.Duration `json:"settle"`
	// Only, when not empty, limits the run to these parts (Parts lists
	// them): measuring one figure need not pay for the others.
	Only []string `json:"only,omitempty"`
	// Quick marks a run with QuickConfig's small sizes.
	Quick bool `json:"quick"`
	// Progress receives one line per step; nil discards.
	Progress io.Writer `json:"-"`
}

// DefaultConfig is the full run (several minutes on 2 cores).
func DefaultConfig() Config {
	return Config{
		Seed:           1,
		Reps:           3,
		Window:         5 * time.Second,
		Warmup:         time.Second,
		StreamDrivers:  2000,
		SampleInterval: time.Second,
		RedisClients:   50,
		Batch:          100,
		IngestConns:    []int{1, 4},
		QueryConns:     []int{1, 4},
		CallersPerConn: 4,
		Sizes:          []int{100_000, 1_000_000},
		IdleStreams:    []int{2000, 10000},
		Steady:         15 * time.Second,
		SteadyRate:     20000,
		DriverTTL:      30 * time.Minute,
		Settle:         2 * time.Second,
	}
}

// QuickConfig is a smoke run with small sizes: under a minute.
func QuickConfig() Config {
	c := DefaultConfig()
	c.Quick = true
	c.Reps = 2
	c.Window = time.Second
	c.Warmup = 250 * time.Millisecond
	c.StreamDrivers = 200
	c.RedisClients = 20
	c.Sizes = []int{20_000}
	c.IdleStreams = []int{200, 500}
	c.Steady = 2 * time.Second
	c.SteadyRate = 10000
	c.Settle = 300 * time.Millisecond
	return c
}

// Validate reports the first problem.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HexrideBin == "" {
		bad("bench: no hexride binary")
	}
	if c.Reps < 1 {
		bad("bench: reps must be at least 1")
	}
	if c.Window < 100*time.Millisecond || c.Warmup < 0 {
		bad("bench: window must be at least 100ms and warmup not negative")
	}
	if c.StreamDrivers < 1 || c.RedisClients < 1 || c.CallersPerConn < 1 {
		bad("bench: stream drivers, Redis clients and callers per connection must be positive")
	}
	if c.SampleInterval < time.Second {
		bad("bench: sample interval %v is faster than the gateway's 1 sample/s per driver", c.SampleInterval)
	}
	if c.Batch < 1 || c.Batch > 5000 {
		bad("bench: batch must be 1..5000 (IngestLocations takes at most 5000)")
	}
	if len(c.IngestConns) == 0 || len(c.QueryConns) == 0 || len(c.Sizes) == 0 || len(c.IdleStreams) == 0 {
		bad("bench: ingest and query connections, sizes and idle streams need at least one value each")
	}
	for _, list := range [][]int{c.IngestConns, c.QueryConns, c.Sizes, c.IdleStreams} {
		for _, n := range list {
			if n < 1 {
				bad("bench: %d is not a positive count", n)
			}
		}
	}
	for _, list := range [][]int{c.Sizes, c.IdleStreams} {
		for i := 1; i < len(list); i++ {
			if list[i] <= list[i-1] {
				bad("bench: sizes and idle streams must ascend (%d after %d)", list[i], list[i-1])
			}
		}
	}
	if len(c.Sizes) > 0 && c.Sizes[0] < c.Batch {
		bad("bench: the smallest size must hold at least one batch")
	}
	if c.Steady < 0 || c.SteadyRate < 1 || c.DriverTTL < time.Minute || c.Settle < 0 {
		bad("bench: steady must not be negative, steady rate positive, driver TTL at least 1m")
	}
	for _, p := range c.Only {
		if !slices.Contains(Parts, p) {
			bad("bench: unknown part %q (parts: %s)", p, strings.Join(Parts, ", "))
		}
	}
	return errors.Join(errs...)
}

// The parts of a run, in the order they run: idle (memory per idle driver
// stream, rows 4c..), samples (location samples through Connect streams,
// rows 1a–1c) and index (batched ingest, nearest-driver queries and memory
// per indexed driver, rows 2*, 3*, 4a, 4b).
const (
	PartIdle    = "idle"
	PartSamples = "samples"
	PartIndex   = "index"
)

// Parts lists every part of a run.
var Parts = []string{PartIdle, PartSamples, PartIndex}

// runs reports whether part is measured in this run.
func (c Config) runs(part string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, part) }

func (c Config) maxSize() int { return c.Sizes[len(c.Sizes)-1] }

// redisMaxClients is the Redis server's --maxclients: the idle
// connections, or, while samples flow, the no-reply floor's sender per
// app beside the GEOADD clients, with room for the bench's own.
func (c Config) redisMaxClients() int {
	return max(c.IdleStreams[len(c.IdleStreams)-1], c.StreamDrivers+c.RedisClients) + 256
}

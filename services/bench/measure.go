package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// rep is one measured window.
type rep struct {
	ops  int64
	wall time.Duration
	// serverCPU is the server's CPU over the window: utime+stime from
	// /proc/PID/stat, or, when that moved fewer than minStatTicks, the
	// ns-precise sum of /proc/PID/task/*/schedstat (precise true).
	serverCPU time.Duration
	statTicks int64
	precise   bool
	clientCPU time.Duration
	errors    int64
	firstErr  string // the load's first error, if any
}

// minStatTicks: below this many clock ticks (1 s of CPU) in a window,
// /proc/PID/stat's 10 ms resolution costs more than 1 %, and the window's
// CPU is taken from schedstat instead.
const minStatTicks = 100

// cpuSample is a server's CPU counters at one instant.
type cpuSample struct {
	stat, sched time.Duration
	schedOK     bool
}

func sampleCPU(pid int) (cpuSample, error) {
	stat, err := ProcessCPU(pid)
	if err != nil {
		return cpuSample{}, err
	}
	sched, err := ProcessCPUPrecise(pid)
	return cpuSample{stat: stat, sched: sched, schedOK: err == nil}, nil
}

// cpuBetween is the CPU used between two samples, and whether it came
// from schedstat.
func cpuBetween(a, b cpuSample) (d time.Duration, ticks int64, precise bool) {
	d = b.stat - a.stat
	ticks = int64(d / tick)
	if ticks < minStatTicks && a.schedOK && b.schedOK && b.sched >= a.sched {
		return b.sched - a.sched, ticks, true
	}
	return d, ticks, false
}

func (r rep) cpuPerOpUS() float64 {
	if r.ops <= 0 {
		return 0
	}
	return float64(r.serverCPU) / 1e3 / float64(r.ops)
}

func (r rep) opsPerSec() float64   { return float64(r.ops) / r.wall.Seconds() }
func (r rep) serverCores() float64 { return r.serverCPU.Seconds() / r.wall.Seconds() }
func (r rep) clientCores() float64 { return r.clientCPU.Seconds() / r.wall.Seconds() }

// clientBound: the bench process used ≥ 90 % of a core, or the machine was
// nearly full and the client used more of it than the server.
func (r rep) clientBound(cpus int) bool {
	c, s := r.clientCores(), r.serverCores()
	return c >= 0.9 || (c+s >= 0.9*float64(cpus) && c > s)
}

// counters are a load's running totals.
type counters struct {
	ops  atomic.Int64
	errs atomic.Int64
	// first holds the first error seen.
	first atomic.Pointer[error]
}

func (c *counters) fail(err error) {
	c.errs.Add(1)
	c.first.CompareAndSwap(nil, &err)
}

func (c *counters) firstErr() error {
	if p := c.first.Load(); p != nil {
		return *p
	}
	return nil
}

// measure waits warmup, then measures one window of the load counted by c
// against server process pid.
func measure(ctx context.Context, pid int, c *counters, warmup, window time.Duration) (rep, error) {
	if err := sleep(ctx, warmup); err != nil {
		return rep{}, err
	}
	cpu0, err := sampleCPU(pid)
	if err != nil {
		return rep{}, err
	}
	self0, ops0, errs0, t0 := SelfCPU(), c.ops.Load(), c.errs.Load(), time.Now()
	if err := sleep(ctx, window); err != nil {
		return rep{}, err
	}
	ops1, self1, wall := c.ops.Load(), SelfCPU(), time.Since(t0)
	cpu1, err := sampleCPU(pid)
	if err != nil {
		return rep{}, err
	}
	r := rep{ops: ops1 - ops0, wall: wall, clientCPU: self1 - self0, errors: c.errs.Load() - errs0}
	if err := c.firstErr(); err != nil {
		r.firstErr = err.Error()
	}
	r.serverCPU, r.statTicks, r.precise = cpuBetween(cpu0, cpu1)
	if r.ops <= 0 {
		if err := c.firstErr(); err != nil {
			return r, fmt.Errorf("no operation completed: %w", err)
		}
		return r, errors.New("no operation completed in the window")
	}
	return r, nil
}

// alignWindow fits a paced load's measurement to its period: the window
// becomes a whole number of periods (at least one) and the warmup ends
// half a period after a tick, so every window holds the same number of
// ticks. A zero period (closed loop) changes nothing.
func alignWindow(warmup, window, period time.Duration) (time.Duration, time.Duration) {
	if period <= 0 {
		return warmup, window
	}
	n := max(1, (window+period/2)/period)
	k := max(0, (warmup+period-1)/period)
	return k*period + period/2, n * period
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// opFunc does one operation (or batch) for worker w and returns how many
// operations it completed.
type opFunc func(ctx context.Context, w int) (int64, error)

// opTimeout bounds every operation of a load loop.
const opTimeout = 10 * time.Second

// runLoad runs workers calling op until ctx ends: back to back (closed
// loop) when every is 0, else each worker once per every (paced, phases
// spread over the interval). Errors are counted; a failing worker backs
// off briefly. It returns a stop function that ends the load and waits.
func runLoad(ctx context.Context, c *counters, workers int, every time.Duration, op opFunc) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var tick <-chan time.Time
			if every > 0 {
				if sleep(ctx, every*time.Duration(w)/time.Duration(workers)) != nil {
					return
				}
				t := time.NewTicker(every)
				defer t.Stop()
				tick = t.C
			}
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				n, err := op(octx, w)
				ocancel()
				c.ops.Add(n)
				if err != nil && ctx.Err() == nil {
					c.fail(err)
					_ = sleep(ctx, 20*time.Millisecond)
				}
				if every == 0 && n == 0 && err == nil {
					runtime.Gosched()
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// cellSpec is one cell of an interleaved comparison.
type cellSpec struct {
	cell *Cell
	// run measures one repetition.
	run func(ctx context.Context) (rep, error)
}

// interleave measures each cell reps times, rotating which goes first
// each repetition so slow drift (thermal, other load) spreads evenly.
func (b *bench) interleave(ctx context.Context, label string, cells []cellSpec) error {
	for r := range b.cfg.Reps {
		for i := range cells {
			cs := cells[(i+r)%len(cells)]
			got, err := cs.run(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%s, %s (%s), repetition %d: %w", label, cs.cell.System, cs.cell.What, r+1, err)
			}
			cs.cell.reps = append(cs.cell.reps, got)
			b.progress("  %s rep %d/%d %-7s %s µs/op, %s ops/s, server %.2f cores, client %.2f cores%s",
				label, r+1, b.cfg.Reps, cs.cell.System, FormatNum(got.cpuPerOpUS()), FormatNum(got.opsPerSec()),
				got.serverCores(), got.clientCores(), errNote(got.errors))
		}
	}
	for _, cs := range cells {
		b.finish(cs.cell)
	}
	return nil
}

func errNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", %d errors", n)
}

// finish summarizes a cell's repetitions.
func (b *bench) finish(c *Cell) {
	var cpu, ops, sc, cc []float64
	c.CPUTicks = -1
	for _, r := range c.reps {
		cpu = append(cpu, r.cpuPerOpUS())
		ops = append(ops, r.opsPerSec())
		sc = append(sc, r.serverCores())
		cc = append(cc, r.clientCores())
		c.Errors += r.errors
		if c.FirstError == "" && r.errors > 0 {
			c.FirstError = r.firstErr
		}
		c.ClientBound = c.ClientBound || r.clientBound(b.cpus)
		if c.CPUTicks < 0 || r.statTicks < c.CPUTicks {
			c.CPUTicks = r.statTicks
		}
		if r.precise {
			c.PreciseReps++
		}
	}
	c.CPUPerOpUS, c.OpsPerSec, c.ServerCores, c.ClientCores = Summarize(cpu), Summarize(ops), Summarize(sc), Summarize(cc)
}

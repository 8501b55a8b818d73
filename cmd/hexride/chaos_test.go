//go:build chaos

package main

// The chaos suite (`make chaos`): the platform as separate processes on a
// real Consul agent and a real PostgreSQL, a simulated city of apps that
// retry as real apps do, and one fault per scenario while rides run. After
// each scenario the trip store must hold no stuck trip (every trip
// terminal), no ghost trip (a trip whose rider never got an answer), no
// driver on two trips and no trip with two drivers, and the apps must never
// have seen Internal. Timings are reported, never asserted.
//
// Sizes are for a 2-core machine. HEXRIDE_CHAOS_REPORT names a file each
// scenario's table row is appended to. HEXRIDE_CHAOS_OVERLOAD (default
// 60s) and HEXRIDE_CHAOS_SETTLE (default 60s) size the overload scenario's
// load and the wait before its last memory reading;
// HEXRIDE_CHAOS_CAPACITY_RATE (default 8/s) and HEXRIDE_CHAOS_CAPACITY_MAX
// (default 128/s) bound the ramp that measures capacity first.

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/sim"
)

// chaosServeFlags are the serve flags the chaos suite wants, when this
// build has them: rides whose driver went silent go back to REQUESTED, a
// silent IN_PROGRESS trip is cancelled, so every ride ends within a run.
var chaosServeFlags = [][2]string{
	{"--driver-silent-timeout", "20s"},
	{"--max-trip-duration", "60s"},
	{"--watchdog-interval", "2s"},
}

var (
	serveHelpOnce sync.Once
	serveHelp     string
)

// chaosFlags returns the chaos flags the built binary knows, and logs the
// ones it does not (the suite still runs; rides may then stay stuck).
func chaosFlags(t *testing.T) []string {
	t.Helper()
	serveHelpOnce.Do(func() {
		out, _ := exec.Command(hexrideBinary(t), "serve", "-h").CombinedOutput()
		serveHelp = string(out)
	})
	var flags []string
	for _, f := range chaosServeFlags {
		if strings.Contains(serveHelp, "-"+strings.TrimLeft(f[0], "-")+" ") {
			flags = append(flags, f[0], f[1])
		} else {
			t.Logf("NOTE: hexride serve has no %s flag in this build: not passed", f[0])
		}
	}
	return flags
}

// chaosPlatform starts a platform for one scenario.
type chaosSetup struct {
	matchers, drivers, riders int
	pg                        *pgtest.Server // private server (nil: a database on the shared one)
	consul                    *consultest.Agent
	host                      string
}

func startChaosPlatform(t *testing.T, c chaosSetup) *platform {
	t.Helper()
	p := &platform{consul: c.consul, host: c.host, common: chaosFlags(t)}
	if p.consul == nil {
		p.consul = consultest.Start(t)
	}
	if c.pg != nil {
		p.dsn = c.pg.DSN()
	} else {
		p.dsn = pgtest.DSN(t)
	}
	return startPlatformOn(t, p, c.matchers, c.drivers, c.riders)
}

// chaosSim is the load every scenario runs: 100 drivers, a few requests a
// second for 40 s, and a grace long enough for the watchdogs to end what
// a fault left behind (the run ends as soon as every ride has).
func chaosSim(t *testing.T, p *platform, seed uint64) sim.Config {
	cfg := p.simConfig(t)
	cfg.Drivers = 100
	cfg.Rate = 3
	cfg.Duration = 40 * time.Second
	cfg.Grace = 3 * time.Minute
	cfg.LocationInterval = time.Second
	cfg.DriveTime = 1500 * time.Millisecond
	cfg.AcceptProbability = 0.9
	cfg.RiderCancelProbability = 0.1
	cfg.RetryBudget = 2 * time.Minute
	cfg.Seed = seed
	return cfg
}

// restart starts a process again with the same flags (a new port unless
// the flags fix one; Consul tells its peers).
func restart(t *testing.T, old *proc, name string) *proc {
	t.Helper()
	return startProcIn(t, name, old.prefix, old.args...)
}

// chaosRow is one scenario's line of the report.
type chaosRow struct {
	scenario                                   string
	requests, completed, cancelled, noDriver   int
	refused, errors, lost, stuck, ghost, inter int
	cancelReasons                              map[string]int
	longest                                    time.Duration
}

const chaosHeader = "| scenario | requests | completed | cancelled (reasons) | no driver | refused | failed calls | lost | stuck | ghost | Internal seen | longest to terminal |"

func (r chaosRow) String() string {
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(r.cancelReasons)) {
		reasons = append(reasons, fmt.Sprintf("%s %d", k, r.cancelReasons[k]))
	}
	return fmt.Sprintf("| %s | %d | %d | %d (%s) | %d | %d | %d | %d | %d | %d | %d | %.1f s |",
		r.scenario, r.requests, r.completed, r.cancelled, strings.Join(reasons, ", "), r.noDriver,
		r.refused, r.errors, r.lost, r.stuck, r.ghost, r.inter, r.longest.Seconds())
}

var reportMu sync.Mutex

// report logs a line and appends it to $HEXRIDE_CHAOS_REPORT.
func report(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	path := os.Getenv("HEXRIDE_CHAOS_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// checkChaos reads the trip store after a scenario, checks the invariants
// and reports the row. Only correctness is asserted.
func checkChaos(t *testing.T, name string, p *platform, s sim.Stats) chaosRow {
	t.Helper()
	row := chaosRow{
		scenario: name, requests: s.Requests, completed: s.Completed, cancelled: s.Cancelled, noDriver: s.NoDriver,
		refused: s.Refused, errors: s.Errors, lost: s.Lost, inter: s.Codes["Internal"], cancelReasons: s.CancelReasons,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	answered := map[string]bool{}
	for _, id := range s.TripIDs {
		answered[id] = true
	}
	rows, err := conn.Query(ctx, `SELECT id::text, state,
		coalesce(extract(epoch FROM coalesce(completed_at, ended_at) - created_at), 0)::float8
		FROM trips`)
	if err != nil {
		t.Fatal(err)
	}
	var ghosts, stuck []string
	for rows.Next() {
		var id, state string
		var secs float64
		if err := rows.Scan(&id, &state, &secs); err != nil {
			t.Fatal(err)
		}
		if !answered[id] {
			ghosts = append(ghosts, id+" "+state)
		}
		switch state {
		case "COMPLETED", "CANCELLED", "NO_DRIVER_FOUND":
			row.longest = max(row.longest, time.Duration(secs*float64(time.Second)))
		default:
			stuck = append(stuck, id+" "+state)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	row.ghost, row.stuck = len(ghosts), len(stuck)
	report(t, row.String())
	t.Logf("%s: codes seen %v; no-driver reasons %v; refusals p50 %.1f ms p99 %.1f ms; match p50 %.0f ms p99 %.0f ms",
		name, s.Codes, s.NoDriverReasons, s.RefusedP50MS, s.RefusedP99MS, s.MatchP50MS, s.MatchP99MS)
	if len(s.ErrorSamples) > 0 {
		t.Logf("%s: calls that failed for good (%d): %q", name, s.Errors, s.ErrorSamples)
	}
	if len(stuck) > 0 {
		t.Errorf("%d trips stuck in a non-terminal state: %v", len(stuck), first(stuck, 10))
	}
	if len(ghosts) > 0 {
		t.Errorf("%d ghost trips (in the store, never answered to a rider): %v", len(ghosts), first(ghosts, 10))
	}
	if row.inter > 0 {
		t.Errorf("the apps saw Internal %d times (errors: %q)", row.inter, s.ErrorSamples)
	}
	if s.DoubleAssignments != 0 {
		t.Errorf("drivers saw %d double assignments", s.DoubleAssignments)
	}
	// Two active trips per driver, two drivers per trip, reasons, and the
	// store holding exactly the trips the apps were answered.
	checkInvariants(t, p.dsn, s.Requests)
	return row
}

func first(xs []string, n int) []string { return xs[:min(n, len(xs))] }

// afterStart waits d from the start of the simulator's run.
func afterStart(start time.Time, d time.Duration) { time.Sleep(time.Until(start.Add(d))) }

func TestChaos(t *testing.T) {
	report(t, fmt.Sprintf("chaos run %s (%s)", time.Now().UTC().Format(time.RFC3339), gitDescribe()))
	report(t, chaosHeader)
	report(t, "|---|---|---|---|---|---|---|---|---|---|---|---|")

	t.Run("postgres-restart", func(t *testing.T) {
		pg := pgtest.NewServer(t)
		p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 1, riders: 1, pg: pg})
		start := time.Now()
		done := runSim(t, chaosSim(t, p, 101))
		afterStart(start, 12*time.Second)
		pg.Stop(t)
		t.Logf("postgres stopped (immediate) at %v", time.Since(start).Round(time.Millisecond))
		time.Sleep(5 * time.Second)
		pg.Start(t)
		t.Logf("postgres accepting again at %v", time.Since(start).Round(time.Millisecond))
		checkChaos(t, "postgres immediate restart (5 s down)", p, <-done)
	})

	t.Run("trip-kill", func(t *testing.T) {
		p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 1, riders: 1})
		start := time.Now()
		done := runSim(t, chaosSim(t, p, 102))
		afterStart(start, 12*time.Second)
		_ = p.trip.stop(t, syscall.SIGKILL, 10*time.Second)
		t.Logf("trip SIGKILLed at %v", time.Since(start).Round(time.Millisecond))
		time.Sleep(10 * time.Second)
		p.trip = restart(t, p.trip, "trip-2")
		t.Logf("trip serving again on %s at %v", p.trip.addr, time.Since(start).Round(time.Millisecond))
		checkChaos(t, "trip SIGKILL, restarted after 10 s", p, <-done)
	})

	t.Run("consul-down", func(t *testing.T) {
		p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 1, riders: 1})
		start := time.Now()
		done := runSim(t, chaosSim(t, p, 103))
		afterStart(start, 12*time.Second)
		if err := p.consul.Kill(); err != nil {
			t.Fatal(err)
		}
		t.Logf("consul agent down at %v", time.Since(start).Round(time.Millisecond))
		time.Sleep(20 * time.Second)
		if err := p.consul.Restart(); err != nil { // empty state: services register again
			t.Fatal(err)
		}
		t.Logf("consul agent back (empty) at %v", time.Since(start).Round(time.Millisecond))
		checkChaos(t, "consul agent down 20 s (restarted empty)", p, <-done)
	})

	t.Run("matching-sigstop", func(t *testing.T) {
		p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 1, riders: 1})
		start := time.Now()
		done := runSim(t, chaosSim(t, p, 104))
		afterStart(start, 12*time.Second)
		victim := p.matching[1]
		if err := victim.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s SIGSTOPped at %v", victim.name, time.Since(start).Round(time.Millisecond))
		time.Sleep(15 * time.Second)
		if err := victim.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s SIGCONT at %v", victim.name, time.Since(start).Round(time.Millisecond))
		checkChaos(t, "matching worker SIGSTOP 15 s", p, <-done)
	})

	t.Run("gateway-kill", func(t *testing.T) {
		p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 2, riders: 1})
		start := time.Now()
		done := runSim(t, chaosSim(t, p, 105))
		afterStart(start, 12*time.Second)
		_ = p.drivers[0].stop(t, syscall.SIGKILL, 10*time.Second)
		t.Logf("%s SIGKILLed at %v (not restarted)", p.drivers[0].name, time.Since(start).Round(time.Millisecond))
		checkChaos(t, "driver gateway SIGKILL (1 of 2)", p, <-done)
	})

	t.Run("overload", func(t *testing.T) { chaosOverload(t) })

	t.Run("partition", func(t *testing.T) { chaosPartition(t) })
}

// chaosOverload finds what the cluster completes just below overload, then
// offers twice that: goodput is reported against capacity, the excess must
// be refused fast (not time out), and the trip process's memory is read
// before, at the end of the load and after it settles.
func chaosOverload(t *testing.T) {
	load := envDuration(t, "HEXRIDE_CHAOS_OVERLOAD", 60*time.Second)
	settle := envDuration(t, "HEXRIDE_CHAOS_SETTLE", 60*time.Second)
	p := startChaosPlatform(t, chaosSetup{matchers: 2, drivers: 1, riders: 1})
	base := func(seed uint64, rate float64, d time.Duration) sim.Config {
		cfg := chaosSim(t, p, seed)
		cfg.Drivers = 400 // supply is not what runs out
		cfg.Rate = rate
		cfg.Duration = d
		cfg.RiderCancelProbability = 0
		cfg.DriveTime = 500 * time.Millisecond
		return cfg
	}
	rssBefore := vmRSS(t, p.trip)
	var all []sim.Stats

	// Capacity: step the offered rate up by half in short runs, until the
	// cluster stops keeping up (a call failed, over 2 % refused, or under
	// 95 % completed); capacity is the most a step that kept up completed
	// per second.
	rate := envFloat(t, "HEXRIDE_CHAOS_CAPACITY_RATE", 8)
	maxRate := envFloat(t, "HEXRIDE_CHAOS_CAPACITY_MAX", 128)
	const step = 15 * time.Second
	capacity := 0.0
	for seed := uint64(200); ; seed++ {
		cfg := base(seed, rate, step)
		s := <-runSim(t, cfg)
		all = append(all, s)
		perS := float64(s.Completed) / step.Seconds()
		offered := rate * step.Seconds()
		keptUp := s.Errors == 0 && s.NoDriver == 0 && float64(s.Refused) <= 0.02*offered && float64(s.Completed) >= 0.95*offered
		report(t, fmt.Sprintf("overload: capacity step offered %.1f/s for %v: requests %d, completed %d (%.2f/s), refused %d, no driver %d, failed calls %d, match p99 %.0f ms, sim cores %.2f: kept up %v",
			rate, step, s.Requests, s.Completed, perS, s.Refused, s.NoDriver, s.Errors, s.MatchP99MS, s.SimCores, keptUp))
		if !keptUp {
			break
		}
		capacity = max(capacity, perS)
		if 1.5*rate > maxRate {
			report(t, fmt.Sprintf("overload: the cluster kept up at the ramp's ceiling (%.0f/s): capacity is at least that", rate))
			break
		}
		rate *= 1.5
	}
	if capacity <= 0 {
		t.Fatalf("the cluster kept up with no step (from %.1f/s): lower HEXRIDE_CHAOS_CAPACITY_RATE", envFloat(t, "HEXRIDE_CHAOS_CAPACITY_RATE", 8))
	}

	// 2× capacity.
	rssBeforeOverload := vmRSS(t, p.trip)
	ovCfg := base(299, 2*capacity, load)
	start := time.Now()
	ovDone := runSim(t, ovCfg)
	afterStart(start, ovCfg.Duration+2*ovCfg.LocationInterval)
	rssEnd := vmRSS(t, p.trip)
	s := <-ovDone
	all = append(all, s)
	goodput := float64(s.Completed) / ovCfg.Duration.Seconds()
	time.Sleep(settle)
	rssAfter := vmRSS(t, p.trip)
	report(t, fmt.Sprintf("overload: capacity %.2f completed rides/s; offered %.1f/s (2×) for %v: requests %d, completed %d (%.2f/s, %.0f%% of capacity), refused %d (answered p50 %.1f ms, p99 %.1f ms), no driver %d, failed calls %d, match p50 %.0f ms p99 %.0f ms, sim cores %.2f; trip RSS %s before the capacity ramp, %s before the overload, %s at its end, %s %v later",
		capacity, ovCfg.Rate, load, s.Requests, s.Completed, goodput, 100*goodput/capacity, s.Refused, s.RefusedP50MS, s.RefusedP99MS, s.NoDriver, s.Errors,
		s.MatchP50MS, s.MatchP99MS, s.SimCores, rssBefore, rssBeforeOverload, rssEnd, rssAfter, settle))
	// Every run's trips are in the store: check them together.
	checkChaos(t, fmt.Sprintf("2× overload for %v (capacity steps included)", load), p, sumStats(all))
}

// sumStats adds the counters of several runs on one store.
func sumStats(runs []sim.Stats) sim.Stats {
	var out sim.Stats
	out.Codes, out.CancelReasons, out.NoDriverReasons = map[string]int{}, map[string]int{}, map[string]int{}
	for _, s := range runs {
		out.Requests += s.Requests
		out.Completed += s.Completed
		out.Cancelled += s.Cancelled
		out.NoDriver += s.NoDriver
		out.Refused += s.Refused
		out.Errors += s.Errors
		out.Lost += s.Lost
		out.DoubleAssignments += s.DoubleAssignments
		out.TripIDs = append(out.TripIDs, s.TripIDs...)
		out.ErrorSamples = append(out.ErrorSamples, s.ErrorSamples...)
		for k, v := range s.Codes {
			out.Codes[k] += v
		}
		for k, v := range s.CancelReasons {
			out.CancelReasons[k] += v
		}
		for k, v := range s.NoDriverReasons {
			out.NoDriverReasons[k] += v
		}
		out.RefusedP50MS, out.RefusedP99MS = max(out.RefusedP50MS, s.RefusedP50MS), max(out.RefusedP99MS, s.RefusedP99MS)
	}
	return out
}

// vmRSS reads a process's resident memory from /proc.
func vmRSS(t *testing.T, p *proc) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown"
}

func envFloat(t *testing.T, key string, def float64) float64 {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return f
}

func gitDescribe() string {
	out, err := exec.Command("git", "log", "-1", "--format=%h %s").Output()
	if err != nil {
		return "unknown commit"
	}
	s := strings.TrimSpace(string(out))
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// The partition scenario's network: a namespace joined to the host by a
// veth pair, on private addresses this test creates and removes.
const (
	nsName     = "hxchaos"
	vethHost   = "hxchaos0"
	vethNS     = "hxchaos1"
	hostIP     = "10.231.0.1" // every host process listens here
	nsIP       = "10.231.0.2" // the worker in the namespace
	consulIP   = "10.231.1.1" // a second host address: Consul's API for the namespace
	consulCIDR = consulIP + "/32"
)

func ipCmd(t *testing.T, args ...string) error {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setupNetns creates the namespace and the veth pair; t.Cleanup removes
// them whatever happens.
func setupNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition scenario: needs root for ip netns")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("partition scenario: no ip command")
	}
	// Leftovers of a run that was killed.
	_ = exec.Command("ip", "netns", "del", nsName).Run()
	_ = exec.Command("ip", "link", "del", vethHost).Run()
	if err := ipCmd(t, "netns", "add", nsName); err != nil {
		t.Skipf("partition scenario: ip netns unavailable: %v", err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", vethHost).Run() // removes its peer too
		if err := exec.Command("ip", "netns", "del", nsName).Run(); err != nil {
			t.Logf("cleanup: ip netns del %s: %v", nsName, err)
		}
	})
	steps := [][]string{
		{"link", "add", vethHost, "type", "veth", "peer", "name", vethNS},
		{"link", "set", vethNS, "netns", nsName},
		{"addr", "add", hostIP + "/24", "dev", vethHost},
		{"addr", "add", consulCIDR, "dev", vethHost},
		{"link", "set", vethHost, "up"},
		{"netns", "exec", nsName, "ip", "link", "set", "lo", "up"},
		{"netns", "exec", nsName, "ip", "addr", "add", nsIP + "/24", "dev", vethNS},
		{"netns", "exec", nsName, "ip", "link", "set", vethNS, "up"},
		{"netns", "exec", nsName, "ip", "route", "add", consulCIDR, "via", hostIP},
	}
	for _, s := range steps {
		if err := ipCmd(t, s...); err != nil {
			t.Fatal(err)
		}
	}
	// The host addresses need a moment after the link comes up (DAD does not
	// apply to IPv4, but the veth must be up on both ends).
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("ip", "netns", "exec", nsName, "ping", "-c1", "-W1", hostIP).Run() != nil {
		if _, err := exec.LookPath("ping"); err != nil || time.Now().After(deadline) {
			break // no ping here: the processes' start will tell
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// chaosPartition runs one matching worker in a network namespace and cuts
// it off from Consul for 20 s while it keeps serving.
func chaosPartition(t *testing.T) {
	setupNetns(t)
	agent := consultest.StartWithClientAddrs(t, consulIP)
	p := startChaosPlatform(t, chaosSetup{matchers: 1, drivers: 1, riders: 1, consul: agent, host: hostIP})
	// The second worker, in the namespace: it reaches Consul on consulIP
	// (the address the cut removes) and its peers on hostIP.
	args := p.flags("--services", "matching", "--addr", nsIP+":0", "--consul", agent.AddrOn(consulIP))
	ns := startProcIn(t, "matching-ns", []string{"ip", "netns", "exec", nsName}, args...)
	p.matching = append(p.matching, ns)
	for _, m := range p.matching {
		p.waitMembers(t, m.addr, 2, 30*time.Second)
	}
	start := time.Now()
	done := runSim(t, chaosSim(t, p, 107))
	afterStart(start, 12*time.Second)
	if err := ipCmd(t, "netns", "exec", nsName, "ip", "route", "replace", "blackhole", consulCIDR); err != nil {
		t.Fatal(err)
	}
	t.Logf("worker in %s cut off from Consul at %v", nsName, time.Since(start).Round(time.Millisecond))
	// The cut is real (no route from the namespace to Consul's address) and
	// the worker still serves its peers.
	if err := ipCmd(t, "netns", "exec", nsName, "ip", "route", "get", consulIP); err == nil {
		t.Errorf("the namespace still routes to %s during the cut", consulIP)
	}
	if _, err := p.partitions(ns.addr); err != nil {
		t.Errorf("the cut-off worker does not answer its peers: %v", err)
	}
	time.Sleep(20 * time.Second)
	if err := ipCmd(t, "netns", "exec", nsName, "ip", "route", "replace", consulCIDR, "via", hostIP); err != nil {
		t.Fatal(err)
	}
	t.Logf("partition healed at %v", time.Since(start).Round(time.Millisecond))
	if err := ipCmd(t, "netns", "exec", nsName, "ip", "route", "get", consulIP); err != nil {
		t.Errorf("healed, but: %v", err)
	}
	checkChaos(t, "matching worker cut off from Consul 20 s (netns)", p, <-done)
}

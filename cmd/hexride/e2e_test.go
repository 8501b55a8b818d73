package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"

	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	"github.com/hexride/hexride/services/sim"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m).Run()
	if builtBin != "" {
		os.RemoveAll(strings.TrimSuffix(builtBin, "/hexride"))
	}
	os.Exit(code)
}

// platform is one deployment: Consul, PostgreSQL and hexride processes,
// with JWT authentication and mutual TLS between services.
type platform struct {
	consul   *consultest.Agent
	dsn      string
	sec      *testSecurity
	trip     *proc
	matching []*proc
	drivers  []*proc
	riders   []*proc
	// host is the address processes listen on (default 127.0.0.1);
	// common are flags every process gets after the defaults.
	host   string
	common []string
}

func (p *platform) flags(extra ...string) []string {
	host := p.host
	if host == "" {
		host = "127.0.0.1"
	}
	return append(append(append([]string{
		"--addr", host + ":0",
		"--consul", p.consul.Addr(),
		"--partition-res", "7",
		"--check-interval", "1s",
		"--offer-timeout", "3s",
		"--dispatch-deadline", "45s",
		"--recovery-interval", "1s",
		"--drain-wait", "1500ms",
		"--stop-timeout", "5s",
		"--quote-key", testQuoteKey,
		"--log-level", "info",
	}, p.sec.flags()...), p.common...), extra...)
}

// startPlatform runs 1 trip, matchers matching, drivers driver and riders
// rider processes.
func startPlatform(t *testing.T, matchers, drivers, riders int) *platform {
	t.Helper()
	return startPlatformOn(t, &platform{consul: consultest.Start(t), dsn: pgtest.DSN(t)}, matchers, drivers, riders)
}

// startPlatformOn starts the processes of p, whose consul and dsn are set
// (and host and common, if wanted).
func startPlatformOn(t *testing.T, p *platform, matchers, drivers, riders int) *platform {
	t.Helper()
	p.sec = newTestSecurity(t)
	out, err := exec.Command(hexrideBinary(t), "migrate", "--db", p.dsn).CombinedOutput()
	if err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	t.Logf("migrate: %s", strings.TrimSpace(lastLine(string(out))))
	p.trip = startProc(t, "trip", p.flags("--services", "trip", "--db", p.dsn)...)
	for i := range matchers {
		p.matching = append(p.matching, startProc(t, fmt.Sprintf("matching-%d", i), p.flags("--services", "matching")...))
	}
	for i := range drivers {
		p.drivers = append(p.drivers, startProc(t, fmt.Sprintf("driver-%d", i), p.flags("--services", "driver")...))
	}
	for i := range riders {
		p.riders = append(p.riders, startProc(t, fmt.Sprintf("rider-%d", i), p.flags("--services", "rider")...))
	}
	// Every worker must see every other before traffic starts.
	for _, m := range p.matching {
		p.waitMembers(t, m.addr, matchers, 30*time.Second)
	}
	return p
}

// simConfig is a simulator configuration for this platform: apps reach it
// over TLS with tokens signed by the platform's key.
func (p *platform) simConfig(t *testing.T) sim.Config {
	t.Helper()
	cfg := sim.DefaultConfig()
	cfg.RiderTargets, cfg.DriverTargets = addrs(p.riders), addrs(p.drivers)
	cfg.Transport = p.sec.appTransport
	creds, err := sim.DevCredentials(p.sec.key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credentials = creds
	return cfg
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func addrs(ps []*proc) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.addr
	}
	return out
}

// partitions asks a matching worker for its partition map, as a service
// (its client certificate says so).
func (p *platform) partitions(addr string) (*matchingv1.PartitionsResponse, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.sec.serviceTransport))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return matchingv1.NewMatchingServiceClient(cc).Partitions(ctx, &matchingv1.PartitionsRequest{})
}

// waitMembers waits until the worker at addr sees exactly n members and
// returns how long that took.
func (p *platform) waitMembers(t *testing.T, addr string, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, err := p.partitions(addr)
		if err == nil && len(resp.GetMembers()) == n {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("worker %s: want %d members within %v; last %v %v", addr, n, timeout, resp.GetMembers(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkInvariants reads the trip store directly: no driver has two pickups
// or two rides in progress (the partial unique indexes guarantee it at every
// commit; this checks the end state), no trip ever had two drivers at once, and every trip is
// terminal with a reason where one is due.
func checkInvariants(t *testing.T, dsn string, wantTrips int) map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var doubleActive int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT driver_id FROM trips
		WHERE state IN ('DRIVER_ASSIGNED','DRIVER_ARRIVED','IN_PROGRESS')
		GROUP BY driver_id HAVING count(*) FILTER (WHERE state <> 'IN_PROGRESS') > 1 OR count(*) FILTER (WHERE state = 'IN_PROGRESS') > 1) d`).Scan(&doubleActive); err != nil {
		t.Fatal(err)
	}
	if doubleActive != 0 {
		t.Errorf("%d drivers have two active trips", doubleActive)
	}
	// Replay each trip's history in version order: a trip never gains a
	// second driver before the first is released.
	rows, err := conn.Query(ctx, `SELECT trip_id::text, coalesce(driver_id, ''), to_state FROM trip_events ORDER BY trip_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	holder := map[string]string{} // trip → driver holding it
	for rows.Next() {
		var tripID, driverID, to string
		if err := rows.Scan(&tripID, &driverID, &to); err != nil {
			t.Fatal(err)
		}
		switch to {
		case "DRIVER_ASSIGNED":
			if d, ok := holder[tripID]; ok {
				t.Errorf("trip %s assigned to %s while %s held it", tripID, driverID, d)
			}
			holder[tripID] = driverID
		case "REQUESTED", "COMPLETED", "CANCELLED", "NO_DRIVER_FOUND":
			delete(holder, tripID)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	srows, err := conn.Query(ctx, `SELECT state, coalesce(end_reason, ''), count(*) FROM trips GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for srows.Next() {
		var state, reason string
		var n int
		if err := srows.Scan(&state, &reason, &n); err != nil {
			t.Fatal(err)
		}
		states[state] += n
		total += n
		switch state {
		case "COMPLETED":
		case "CANCELLED", "NO_DRIVER_FOUND":
			if reason == "" {
				t.Errorf("%d trips %s without a reason", n, state)
			}
		default:
			t.Errorf("%d trips left in %s", n, state)
		}
	}
	if total != wantTrips {
		t.Errorf("store holds %d trips, want %d", total, wantTrips)
	}
	return states
}

// runSim runs the simulator in the background; its stats arrive on the
// channel when it ends (a failed run fails the test).
func runSim(t *testing.T, cfg sim.Config) <-chan sim.Stats {
	t.Helper()
	// The bound only ends a hung run.
	ctx, cancel := context.WithTimeout(context.Background(), max(4*time.Minute, cfg.Duration+cfg.Grace+time.Minute))
	t.Cleanup(cancel)
	done := make(chan sim.Stats, 1)
	go func() {
		s, err := sim.Run(ctx, cfg)
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	return done
}

// TestPlatformEndToEnd runs the platform as separate processes (1 rider, 2
// driver, 3 matching, 1 trip) on Consul and PostgreSQL, drives 200 drivers
// and 50 ride requests through it, and SIGKILLs one matching worker in the
// middle: every request must still end in a terminal state, and no driver
// may ever hold two trips.
func TestPlatformEndToEnd(t *testing.T) {
	p := startPlatform(t, 3, 2, 1)
	cfg := p.simConfig(t)
	cfg.Drivers = 200
	cfg.Requests = 50
	cfg.Rate = 4
	cfg.Duration = time.Minute
	cfg.Grace = 90 * time.Second
	cfg.LocationInterval = time.Second
	cfg.DriveTime = 1500 * time.Millisecond
	cfg.AcceptProbability = 0.8
	cfg.RiderCancelProbability = 0.1
	cfg.Seed = 7

	done := runSim(t, cfg)

	// Mid-run (requests flow from about 2 s on, for about 12 s), kill a
	// worker without letting it deregister.
	time.Sleep(8 * time.Second)
	victim := p.matching[1]
	killedAt := time.Now()
	_ = victim.stop(t, syscall.SIGKILL, 10*time.Second)
	moved := p.waitMembers(t, p.matching[0].addr, 2, 10*time.Second)
	p.waitMembers(t, p.matching[2].addr, 2, 10*time.Second)
	t.Logf("partitions moved off the killed worker %v after SIGKILL (%v total)", moved, time.Since(killedAt))

	s := <-done
	t.Logf("sim: %+v", s)
	t.Logf("end-to-end: request→offer p50 %.0f ms p99 %.0f ms; request→DRIVER_ASSIGNED p50 %.0f ms p99 %.0f ms",
		s.OfferP50MS, s.OfferP99MS, s.MatchP50MS, s.MatchP99MS)
	if s.Requests != cfg.Requests {
		t.Errorf("requests = %d, want %d (errors: %v)", s.Requests, cfg.Requests, s.ErrorSamples)
	}
	if s.Lost != 0 {
		t.Errorf("%d requests never reached a terminal state", s.Lost)
	}
	if got := s.Completed + s.Cancelled + s.NoDriver; got != s.Requests {
		t.Errorf("terminal %d of %d requests", got, s.Requests)
	}
	if s.Completed == 0 {
		t.Error("no ride completed")
	}
	if s.DoubleAssignments != 0 {
		t.Errorf("drivers saw %d double assignments", s.DoubleAssignments)
	}
	if s.Errors != 0 {
		t.Errorf("%d failed client calls: %v", s.Errors, s.ErrorSamples)
	}
	states := checkInvariants(t, p.dsn, s.Requests)
	t.Logf("trip store: %v; no-driver reasons %v; cancel reasons %v", states, s.NoDriverReasons, s.CancelReasons)
}

// TestPlatformDrain sends SIGTERM to a driver gateway, a matching worker
// and a rider instance while rides run: each drains and exits cleanly, and
// the apps see no failed call.
func TestPlatformDrain(t *testing.T) {
	p := startPlatform(t, 2, 2, 2)
	cfg := p.simConfig(t)
	cfg.Drivers = 60
	cfg.Requests = 30
	cfg.Rate = 2
	cfg.Duration = time.Minute
	cfg.Grace = 90 * time.Second
	cfg.LocationInterval = time.Second
	cfg.DriveTime = time.Second
	cfg.AcceptProbability = 1
	cfg.RiderCancelProbability = 0
	cfg.Seed = 11

	done := runSim(t, cfg)
	time.Sleep(6 * time.Second)
	for _, victim := range []*proc{p.drivers[0], p.matching[0], p.riders[0]} {
		start := time.Now()
		if err := victim.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM", victim.name, err)
		}
		t.Logf("%s drained in %v", victim.name, time.Since(start))
		time.Sleep(2 * time.Second)
	}
	s := <-done
	t.Logf("sim: %+v", s)
	if s.Errors != 0 {
		t.Errorf("%d failed client calls during drains: %v", s.Errors, s.ErrorSamples)
	}
	if s.Lost != 0 {
		t.Errorf("%d requests lost", s.Lost)
	}
	checkInvariants(t, p.dsn, s.Requests)
}

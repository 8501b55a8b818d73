//go:build chaos

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hexride/hexride/infra/consul/consultest"
	"github.com/hexride/hexride/infra/postgres/pgtest"
	"github.com/hexride/hexride/services/sim"
)

// The live observability tests run the shipped Prometheus configuration and
// alert rules against a running cluster (make chaos; CI installs Debian's
// prometheus). Time is scaled: the rules' minutes become seconds and hours
// minutes (expressions and "for" clauses only), so an alert that needs five
// minutes of a condition needs five seconds here; the conditions themselves
// are the shipped ones.

// timeScale rewrites durations in alert expressions and for clauses.
var (
	exprOrFor = regexp.MustCompile(`^\s*(-\s*)?(expr|for):`)
	minutes   = regexp.MustCompile(`(\[|offset |for: )(\d+)m\b`)
	hours     = regexp.MustCompile(`(\[|offset |for: )(\d+)h\b`)
)

func scaleRules(rules string) string {
	lines := strings.Split(rules, "\n")
	for i, l := range lines {
		if !exprOrFor.MatchString(l) {
			continue
		}
		l = minutes.ReplaceAllString(l, "${1}${2}s")
		lines[i] = hours.ReplaceAllString(l, "${1}${2}m")
	}
	return strings.Join(lines, "\n")
}

func TestObserveScaleRules(t *testing.T) {
	in := "      - alert: X\n        expr: rate(a[5m]) > 3 * rate(a[1h] offset 1h)\n        for: 10m\n        annotations:\n          summary: \"for 5m\"\n"
	want := "      - alert: X\n        expr: rate(a[5s]) > 3 * rate(a[1m] offset 1m)\n        for: 10s\n        annotations:\n          summary: \"for 5m\"\n"
	if got := scaleRules(in); got != want {
		t.Fatalf("scaleRules:\n%s\nwant\n%s", got, want)
	}
}

// prometheus is a running Prometheus server.
type prometheus struct {
	url string
	cmd *exec.Cmd
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts a backend server logging to dir/name.log; it is
// killed when the test ends, and its log's tail shown if the test failed.
func startServer(t *testing.T, dir, name, bin string, args ...string) *exec.Cmd {
	t.Helper()
	logFile, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			tail, _ := os.ReadFile(logFile.Name())
			if len(tail) > 3000 {
				tail = tail[len(tail)-3000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, tail)
		}
		logFile.Close()
	})
	return cmd
}

// startPrometheus runs Prometheus (scrape and evaluation every 1 s) with
// the time-scaled shipped rules, scraping every process registered in
// Consul at consulAddr on its "metrics" meta address over TLS (caFile
// verifies the processes' certificates). Debian's Prometheus
// is built without Consul discovery, so the test relays Consul's catalog
// into a file_sd target file every second (the collector config,
// otel-collector.yaml, does the same with consul_sd_configs).
func startPrometheus(t *testing.T, consulAddr, caFile string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: apt-get install -y prometheus (.ci/run does)")
	}
	dir := t.TempDir()
	rules, err := os.ReadFile("../../infra/observability/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), []byte(scaleRules(string(rules))), 0o644); err != nil {
		t.Fatal(err)
	}
	targets := filepath.Join(dir, "targets.json")
	relay := func() error { return relayConsulTargets(consulAddr, targets) }
	if err := relay(); err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-relayCtx.Done():
				return
			case <-tick.C:
				_ = relay() // Consul down for a moment: keep the last targets
			}
		}
	}()
	t.Cleanup(func() { stopRelay(); <-relayDone })
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: hexride
    scheme: https
    tls_config:
      ca_file: %q
      server_name: hexride
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, caFile, targets)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	cmd := startServer(t, dir, "prometheus", bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	p := &prometheus{url: "http://" + addr, cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// relayConsulTargets writes the hexride processes registered in Consul
// (whatever their health, as consul_sd_configs does) as a file_sd file.
func relayConsulTargets(consulAddr, path string) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	var groups []group
	for _, svc := range []string{"hexride-rider", "hexride-driver", "hexride-matching", "hexride-trip"} {
		resp, err := http.Get("http://" + consulAddr + "/v1/catalog/service/" + svc)
		if err != nil {
			return err
		}
		var entries []struct {
			ServiceMeta map[string]string `json:"ServiceMeta"`
		}
		err = json.NewDecoder(resp.Body).Decode(&entries)
		resp.Body.Close()
		if err != nil {
			return err
		}
		for _, e := range entries {
			if addr := e.ServiceMeta["metrics"]; addr != "" {
				groups = append(groups, group{Targets: []string{addr}, Labels: map[string]string{"service": svc, "region": e.ServiceMeta["region"]}})
			}
		}
	}
	b, err := json.Marshal(groups)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (p *prometheus) get(t *testing.T, path string, out any) {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// alertState is "firing", "pending" or "" (inactive) for the alert name.
func (p *prometheus) alertState(t *testing.T, name string) string {
	t.Helper()
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/alerts", &r)
	state := ""
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}

// waitAlert waits until name is in state ("firing" or "" for resolved) and
// returns how long that took.
func (p *prometheus) waitAlert(t *testing.T, name, state string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if p.alertState(t, name) == state {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s not %q within %v (now %q)", name, state, timeout, p.alertState(t, name))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// activeTargets counts the scrape targets up in the job.
func (p *prometheus) activeTargets(t *testing.T, job string) (up, all int) {
	t.Helper()
	var r struct {
		Data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/targets?state=active", &r)
	for _, tg := range r.Data.ActiveTargets {
		if tg.Labels["job"] != job {
			continue
		}
		all++
		if tg.Health == "up" {
			up++
		}
	}
	return up, all
}

// consulMaintenance puts every instance of service in (or out of)
// maintenance on the agent: they fail their health checks.
func consulMaintenance(t *testing.T, consulAddr, service string, enable bool) {
	t.Helper()
	var services map[string]struct {
		ID      string `json:"ID"`
		Service string `json:"Service"`
	}
	resp, err := http.Get("http://" + consulAddr + "/v1/agent/services")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&services)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range services {
		if s.Service != service {
			continue
		}
		url := fmt.Sprintf("http://%s/v1/agent/service/maintenance/%s?enable=%v&reason=drill", consulAddr, s.ID, enable)
		req, _ := http.NewRequest(http.MethodPut, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("maintenance %s: %s", s.ID, resp.Status)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no %s instance registered", service)
	}
}

// TestObserveAlerts runs a cluster (trip on a private PostgreSQL, two
// matching workers, a gateway, a rider instance; every process serving
// /metrics and registered in Consul) under a simulated city, scraped by a
// real Prometheus through Consul with the shipped rules, and causes what
// three alerts are about: every alert fires during its fault and resolves
// after it.
func TestObserveAlerts(t *testing.T) {
	db := pgtest.NewServer(t)
	p := &platform{dsn: db.DSN(), sec: newTestSecurity(t)}
	p.consul = consultest.Start(t)
	if out, err := exec.Command(hexrideBinary(t), "migrate", "--db", p.dsn).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	metrics := []string{"--http", "127.0.0.1:0"}
	p.trip = startProc(t, "trip", p.flags(append(metrics, "--services", "trip", "--db", p.dsn)...)...)
	for i := range 2 {
		p.matching = append(p.matching, startProc(t, fmt.Sprintf("matching-%d", i), p.flags(append(metrics, "--services", "matching")...)...))
	}
	p.drivers = append(p.drivers, startProc(t, "driver-0", p.flags(append(metrics, "--services", "driver")...)...))
	p.riders = append(p.riders, startProc(t, "rider-0", p.flags(append(metrics, "--services", "rider")...)...))
	for _, m := range p.matching {
		p.waitMembers(t, m.addr, 2, 30*time.Second)
	}
	prom := startPrometheus(t, p.consul.Addr(), p.sec.server.CAFile)

	cfg := p.simConfig(t)
	cfg.Drivers, cfg.Requests, cfg.Rate = 60, 0, 1
	cfg.Duration, cfg.Grace = 4*time.Minute, 30*time.Second
	cfg.LocationInterval, cfg.DriveTime, cfg.AcceptProbability = time.Second, 2*time.Second, 1
	cfg.RiderCancelProbability = 0.2 // the funnel dashboard's cancellations panel
	ctx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() {
		defer close(simDone)
		_, _ = sim.Run(ctx, cfg)
	}()
	t.Cleanup(func() { stopSim(); <-simDone })

	// Prometheus finds all five processes through Consul.
	deadline := time.Now().Add(30 * time.Second)
	for {
		up, all := prom.activeTargets(t, "hexride")
		if up == 5 && all == 5 {
			break
		}
		if time.Now().After(deadline) {
			var raw json.RawMessage
			prom.get(t, "/api/v1/targets", &raw)
			t.Fatalf("scrape targets through Consul: %d of %d up, want 5; %s", up, all, raw)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(10 * time.Second) // a baseline of samples

	type row struct {
		alert, fault string
		firing, done time.Duration
	}
	var table []row
	for _, alert := range []string{"PartitionsWithoutOwner", "StreamDisconnectSpike", "RPCErrorRateHigh"} {
		if s := prom.alertState(t, alert); s != "" {
			var raw json.RawMessage
			prom.get(t, "/api/v1/query?query="+url.QueryEscape(`sum by (job, service, rpc_method, rpc_response_status_code) (increase(rpc_server_call_duration_seconds_count{rpc_response_status_code!="OK"}[1m]))`), &raw)
			t.Fatalf("%s is %s before any fault; non-OK calls: %s", alert, s, raw)
		}
	}

	// 1. Every matching worker fails its health check (maintenance): each
	// sees a ring without members while it holds drivers.
	consulMaintenance(t, p.consul.Addr(), "hexride-matching", true)
	fired := prom.waitAlert(t, "PartitionsWithoutOwner", "firing", time.Minute)
	consulMaintenance(t, p.consul.Addr(), "hexride-matching", false)
	resolved := prom.waitAlert(t, "PartitionsWithoutOwner", "", time.Minute)
	table = append(table, row{"PartitionsWithoutOwner", "both matching workers out of Consul (maintenance)", fired, resolved})

	// 2. Driver apps churn: 40 more drivers connect and drop every 2 s.
	churnCtx, stopChurn := context.WithCancel(context.Background())
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		c := p.simConfig(t)
		c.Drivers, c.Requests, c.Rate, c.Duration, c.Grace = 40, 1, 0.1, 2*time.Second, 0
		c.LocationInterval = time.Second
		for i := 0; churnCtx.Err() == nil; i++ {
			c.Seed = uint64(100 + i)
			rctx, cancel := context.WithTimeout(churnCtx, 3*time.Second)
			_, _ = sim.Run(rctx, c)
			cancel()
		}
	}()
	fired = prom.waitAlert(t, "StreamDisconnectSpike", "firing", time.Minute)
	stopChurn()
	<-churnDone
	resolved = prom.waitAlert(t, "StreamDisconnectSpike", "", 2*time.Minute)
	table = append(table, row{"StreamDisconnectSpike", "40 driver apps reconnecting every 2 s", fired, resolved})

	// 3. The trip store's PostgreSQL goes down: calls that need it fail
	// Unavailable.
	// First let the churn's own errors (Connect refused by its rate
	// limit while apps reconnect) age out, so this alert is the outage's.
	prom.waitAlert(t, "RPCErrorRateHigh", "", 2*time.Minute)
	db.Stop(t)
	fired = prom.waitAlert(t, "RPCErrorRateHigh", "firing", time.Minute)
	db.Start(t)
	resolved = prom.waitAlert(t, "RPCErrorRateHigh", "", 2*time.Minute)
	table = append(table, row{"RPCErrorRateHigh", "trip store PostgreSQL stopped", fired, resolved})

	// Every dashboard panel's query, as shipped, returns data from this
	// Prometheus after the run (Grafana itself cannot be installed here).
	for _, q := range dashboardQueries(t) {
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		prom.get(t, "/api/v1/query?query="+url.QueryEscape(q.expr), &r)
		if r.Status != "success" || len(r.Data.Result) == 0 {
			t.Errorf("dashboard %s, panel %q: %s returned no data (%s %s)", q.file, q.panel, q.expr, r.Status, r.Error)
		}
	}

	t.Logf("alert table (rules time-scaled 60:1, scrape and evaluation every 1 s):")
	t.Logf("| alert | fault | s to firing | s to resolved (after the fault ended) |")
	for _, r := range table {
		t.Logf("| %s | %s | %.1f | %.1f |", r.alert, r.fault, r.firing.Seconds(), r.done.Seconds())
	}
	if path := os.Getenv("HEXRIDE_CHAOS_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, "| alert | fault | s to firing | s to resolved |")
			for _, r := range table {
				fmt.Fprintf(f, "| %s | %s | %.1f | %.1f |\n", r.alert, r.fault, r.firing.Seconds(), r.done.Seconds())
			}
			f.Close()
		}
	}
}

// jaegerBinary is the Jaeger all-in-one the trace test sends to
// (tools/jaeger/build.sh builds it; HEXRIDE_JAEGER_BIN overrides).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("HEXRIDE_JAEGER_BIN"); bin != "" {
		return bin
	}
	bin, err := filepath.Abs("../../bin/jaeger")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Jaeger at %s: build it with tools/jaeger/build.sh (make jaeger; make chaos does)", bin)
	}
	return bin
}

// startJaeger runs Jaeger with in-memory storage, OTLP/gRPC in and the
// query API out, on free loopback ports.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	dir := t.TempDir()
	otlp, query, queryGRPC := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %q
    grpc:
      endpoint: %q
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, query, queryGRPC, otlp)
	path := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startServer(t, dir, "jaeger", jaegerBinary(t), "--config", path)
	query = "http://" + query
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(query + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return otlp, query
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger query API not ready: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// jaegerTrace is a trace as Jaeger's query API returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime int64  `json:"startTime"` // µs
		Duration  int64  `json:"duration"`  // µs
		ProcessID string `json:"processID"`
		Tags      []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// span finds the span named name of the given kind ("server", "internal").
func (tr jaegerTrace) span(name, kind string) int {
	for i, s := range tr.Spans {
		if s.OperationName != name {
			continue
		}
		k := "internal"
		for _, tag := range s.Tags {
			if tag.Key == "span.kind" {
				k = fmt.Sprint(tag.Value)
			}
		}
		if k == kind {
			return i
		}
	}
	return -1
}

// descends reports whether span i has span j among its ancestors.
func (tr jaegerTrace) descends(i, j int) bool {
	byID := map[string]int{}
	for k, s := range tr.Spans {
		byID[s.SpanID] = k
	}
	for seen := 0; seen < len(tr.Spans); seen++ {
		parent := -1
		for _, r := range tr.Spans[i].References {
			if r.RefType == "CHILD_OF" {
				if k, ok := byID[r.SpanID]; ok {
					parent = k
				}
			}
		}
		if parent < 0 {
			return false
		}
		if parent == j {
			return true
		}
		i = parent
	}
	return false
}

// TestObserveTrace sends traces from a cluster of separate processes over
// OTLP to a real Jaeger and reads back one ride's trace through Jaeger's
// query API: from the rider's RequestRide through the dispatch, the offer
// pushed to the driver's gateway and the driver's accept, to the trip
// store's assignment, each span below its parent across process
// boundaries.
func TestObserveTrace(t *testing.T) {
	otlp, query := startJaeger(t)
	p := &platform{dsn: pgtest.DSN(t), sec: newTestSecurity(t), consul: consultest.Start(t)}
	if out, err := exec.Command(hexrideBinary(t), "migrate", "--db", p.dsn).CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	tracing := []string{"--otlp-endpoint", otlp, "--trace-sample", "1"}
	p.trip = startProc(t, "trip", p.flags(append(tracing, "--services", "trip", "--db", p.dsn)...)...)
	p.matching = append(p.matching, startProc(t, "matching-0", p.flags(append(tracing, "--services", "matching")...)...))
	p.drivers = append(p.drivers, startProc(t, "driver-0", p.flags(append(tracing, "--services", "driver")...)...))
	p.riders = append(p.riders, startProc(t, "rider-0", p.flags(append(tracing, "--services", "rider")...)...))
	p.waitMembers(t, p.matching[0].addr, 1, 30*time.Second)

	cfg := p.simConfig(t)
	cfg.Drivers, cfg.Requests, cfg.Rate = 20, 5, 1
	cfg.Duration, cfg.Grace = 10*time.Second, 30*time.Second
	cfg.LocationInterval, cfg.DriveTime, cfg.AcceptProbability, cfg.RiderCancelProbability = time.Second, time.Second, 1, 0
	s := <-runSim(t, cfg)
	if s.Completed == 0 {
		t.Fatalf("no ride completed: %+v", s)
	}

	const (
		requestRide = "hexride.rider.v1.RiderService/RequestRide"
		dispatchRPC = "hexride.matching.v1.MatchingService/Dispatch"
		push        = "hexride.driver.v1.DriverGatewayService/PushToDriver"
		accept      = "hexride.matching.v1.MatchingService/ReplyOffer"
		assign      = "hexride.trip.v1.TripService/AssignDriver"
	)
	var found jaegerTrace
	deadline := time.Now().Add(60 * time.Second)
	for found.TraceID == "" {
		var r struct {
			Data []jaegerTrace `json:"data"`
		}
		resp, err := http.Get(query + "/api/traces?limit=50&service=hexride-rider&operation=" + url.QueryEscape(requestRide))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
		}
		for _, tr := range r.Data {
			if tr.span(assign, "server") >= 0 && tr.span(accept, "server") >= 0 && tr.span(push, "server") >= 0 {
				found = tr
				break
			}
		}
		if found.TraceID == "" {
			if time.Now().After(deadline) {
				t.Fatalf("no RequestRide trace in Jaeger reaches the assignment within 60 s (%d traces; last error %v)", len(r.Data), err)
			}
			time.Sleep(time.Second)
		}
	}

	chain := []struct {
		name, kind, service string
	}{
		{requestRide, "server", "hexride-rider"},
		{dispatchRPC, "server", "hexride-matching"},
		{"dispatch.offer", "internal", "hexride-matching"},
		{push, "server", "hexride-driver"},
		{accept, "server", "hexride-matching"},
		{assign, "server", "hexride-trip"},
	}
	idx := make([]int, len(chain))
	for i, c := range chain {
		idx[i] = found.span(c.name, c.kind)
		if idx[i] < 0 {
			t.Fatalf("trace %s has no %s %s span", found.TraceID, c.kind, c.name)
		}
		if got := found.Processes[found.Spans[idx[i]].ProcessID].ServiceName; got != c.service {
			t.Errorf("%s reported by %q, want %q", c.name, got, c.service)
		}
	}
	links := []struct{ child, ancestor int }{{1, 0}, {2, 1}, {3, 2}, {4, 2}, {5, 4}}
	for _, l := range links {
		if !found.descends(idx[l.child], idx[l.ancestor]) {
			t.Errorf("%s is not below %s in Jaeger's trace", chain[l.child].name, chain[l.ancestor].name)
		}
	}
	t0 := found.Spans[idx[0]].StartTime
	t.Logf("trace %s from Jaeger's query API (%d spans):", found.TraceID, len(found.Spans))
	t.Logf("| span | service | starts at ms | duration ms |")
	for i, c := range chain {
		sp := found.Spans[idx[i]]
		t.Logf("| %s (%s) | %s | %.1f | %.2f |", c.name, c.kind, c.service, float64(sp.StartTime-t0)/1000, float64(sp.Duration)/1000)
	}
}

type dashboardQuery struct{ file, panel, expr string }

// dashboardQueries reads every panel query of the shipped dashboards.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	files, err := filepath.Glob("../../infra/observability/grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var out []dashboardQuery
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if tg.Expr != "" {
					out = append(out, dashboardQuery{filepath.Base(f), p.Title, tg.Expr})
				}
			}
		}
	}
	return out
}

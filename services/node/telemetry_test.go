package node

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/hexride/hexride/infra/auth"
	"github.com/hexride/hexride/infra/telemetry"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	"github.com/hexride/hexride/services/sim"
)

// spans indexes recorded spans for ancestry checks.
type spans struct {
	all  []sdktrace.ReadOnlySpan
	byID map[trace.SpanID]sdktrace.ReadOnlySpan
}

func indexSpans(all []sdktrace.ReadOnlySpan) spans {
	s := spans{all: all, byID: map[trace.SpanID]sdktrace.ReadOnlySpan{}}
	for _, sp := range all {
		s.byID[sp.SpanContext().SpanID()] = sp
	}
	return s
}

// find returns the spans of the trace named name with the kind.
func (s spans) find(tr trace.TraceID, name string, kind trace.SpanKind) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, sp := range s.all {
		if sp.SpanContext().TraceID() == tr && sp.Name() == name && sp.SpanKind() == kind {
			out = append(out, sp)
		}
	}
	return out
}

// descends reports whether child has ancestor among its recorded parents.
func (s spans) descends(child, ancestor sdktrace.ReadOnlySpan) bool {
	for p := child.Parent().SpanID(); p.IsValid(); {
		if p == ancestor.SpanContext().SpanID() {
			return true
		}
		next, ok := s.byID[p]
		if !ok {
			return false
		}
		p = next.Parent().SpanID()
	}
	return false
}

// one returns the single span of the trace with the name and kind.
func (s spans) one(t *testing.T, tr trace.TraceID, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	found := s.find(tr, name, kind)
	if len(found) == 0 {
		var names []string
		for _, sp := range s.all {
			if sp.SpanContext().TraceID() == tr {
				names = append(names, sp.Name()+"/"+sp.SpanKind().String())
			}
		}
		t.Fatalf("trace %s has no %s span %q; it has %v", tr, kind, name, names)
	}
	return found[0]
}

// TestRideTrace runs a ride through the services with an in-memory span
// recorder and checks that one trace holds the whole dispatch, from the
// rider's RequestRide to the trip store's AssignDriver, with the right
// parents across gRPC hops and the driver's stream.
func TestRideTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel := telemetry.NewForTest(rec)
	defer tel.Shutdown(context.Background())
	_, cc := startNodeWith(t, tel, AllServices...)
	s, cancel := connect(t, cc, "d-traced", &commonv1.LatLng{Lat: 37.7750, Lng: -122.4195})
	defer cancel()
	waitIndexed(t, cc, "d-traced")
	trip := request(t, cc, "r-traced", "trace-1")
	o := next(t, s, offerOf)
	if len(o.GetTraceContext()) == 0 {
		t.Fatal("offer carries no trace context")
	}
	reply(t, s, 10, o, driverv1.OfferDecision_OFFER_DECISION_ACCEPT)
	if r := next(t, s, resultOf); r.GetOutcome() != driverv1.OfferOutcome_OFFER_OUTCOME_ASSIGNED {
		t.Fatalf("outcome %v", r)
	}
	// Spans end asynchronously around the reply; give them a moment.
	var sp spans
	var requestRide sdktrace.ReadOnlySpan
	deadline := time.Now().Add(5 * time.Second)
	for {
		sp = indexSpans(rec.Ended())
		for _, x := range sp.all {
			if x.Name() == "hexride.rider.v1.RiderService/RequestRide" && x.SpanKind() == trace.SpanKindServer && requestRide == nil {
				requestRide = x
			}
		}
		if requestRide != nil && len(sp.find(requestRide.SpanContext().TraceID(), "hexride.trip.v1.TripService/AssignDriver", trace.SpanKindServer)) > 0 &&
			len(sp.find(requestRide.SpanContext().TraceID(), "dispatch.offer", trace.SpanKindInternal)) > 0 &&
			// The dispatch span ends after the driver is told ASSIGNED.
			len(sp.find(requestRide.SpanContext().TraceID(), "dispatch", trace.SpanKindInternal)) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace incomplete (request ride span %v)", requestRide != nil)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr := requestRide.SpanContext().TraceID()
	create := sp.one(t, tr, "hexride.trip.v1.TripService/CreateTrip", trace.SpanKindServer)
	dispatchRPC := sp.one(t, tr, "hexride.matching.v1.MatchingService/Dispatch", trace.SpanKindServer)
	run := sp.one(t, tr, "dispatch", trace.SpanKindInternal)
	search := sp.one(t, tr, "dispatch.search", trace.SpanKindInternal)
	rank := sp.one(t, tr, "dispatch.rank", trace.SpanKindInternal)
	offer := sp.one(t, tr, "dispatch.offer", trace.SpanKindInternal)
	push := sp.one(t, tr, "hexride.driver.v1.DriverGatewayService/PushToDriver", trace.SpanKindServer)
	accept := sp.one(t, tr, "hexride.matching.v1.MatchingService/ReplyOffer", trace.SpanKindServer)
	assign := sp.one(t, tr, "hexride.trip.v1.TripService/AssignDriver", trace.SpanKindServer)
	links := []struct {
		name            string
		child, ancestor sdktrace.ReadOnlySpan
	}{
		{"CreateTrip under RequestRide", create, requestRide},
		{"Dispatch under RequestRide", dispatchRPC, requestRide},
		{"dispatch run under the Dispatch call", run, dispatchRPC},
		{"search under the run", search, run},
		{"rank under search", rank, search},
		{"offer under the run", offer, run},
		{"offer delivered to the gateway under the offer", push, offer},
		{"driver's accept under the offer (through the stream)", accept, offer},
		{"AssignDriver under the accept", assign, accept},
	}
	for _, l := range links {
		if !sp.descends(l.child, l.ancestor) {
			t.Errorf("%s: %s is not below %s", l.name, l.child.Name(), l.ancestor.Name())
		}
	}
	if got := attr(offer, "outcome"); got != "accepted" {
		t.Errorf("offer outcome attribute %q", got)
	}
	if attr(rank, "rank.1.driver") != "d-traced" {
		t.Errorf("rank span does not explain its choice: %v", rank.Attributes())
	}
	_ = trip
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestMetricsAfterSim runs the simulator against a node and checks that
// /metrics exposes the dispatch-health metrics with non-zero values.
func TestMetricsAfterSim(t *testing.T) {
	tel := telemetry.NewForTest(tracetest.NewSpanRecorder())
	defer tel.Shutdown(context.Background())
	n, _ := startNodeWith(t, tel, AllServices...)
	cfg := sim.DefaultConfig()
	cfg.RiderTargets, cfg.DriverTargets = []string{n.Addr()}, []string{n.Addr()}
	cfg.Drivers, cfg.Requests, cfg.Rate = 30, 6, 3
	cfg.Duration, cfg.Grace = 10*time.Second, 30*time.Second
	cfg.LocationInterval, cfg.DriveTime, cfg.ReplyDelay = 500*time.Millisecond, 300*time.Millisecond, 50*time.Millisecond
	cfg.AcceptProbability, cfg.RiderCancelProbability = 0.7, 0
	stats, err := sim.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Completed == 0 {
		t.Fatalf("no ride completed: %+v", stats)
	}
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	values := scrape(t, srv.URL)
	for _, name := range []string{
		"hexride_time_to_match_seconds_count",
		"hexride_offers_total",
		"hexride_location_updates_total",
		"hexride_indexed_drivers",
		"hexride_trip_transitions_total",
		"rpc_server_call_duration_seconds_count",
	} {
		if values[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, values[name])
		}
	}
	checkObservabilityConfig(t, values)
	// Exemplars link the time-to-match histogram to traces (OpenMetrics).
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`hexride_time_to_match_seconds_bucket\{[^}]*\} \d+ # \{[^}]*trace_id="[0-9a-f]{32}"`).Match(body) {
		t.Error("no exemplar with a trace id on hexride_time_to_match_seconds")
	}
	// Present (they may be zero in a run without partition moves, retries
	// or open streams at scrape time).
	for _, name := range []string{"hexride_active_streams", "hexride_partition_moves_total", "hexride_dispatches_in_flight", "hexride_no_owner_partitions"} {
		if _, ok := values[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
	_ = auth.RoleService
}

// scrape sums every sample of each metric name.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	values := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if j := strings.LastIndex(rest, "}"); j >= 0 {
			rest = rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		values[name] += v
	}
	return values
}

// checkObservabilityConfig fails if any dashboard panel or alert rule in
// infra/observability names a metric the platform did not export.
func checkObservabilityConfig(t *testing.T, exported map[string]float64) {
	t.Helper()
	var exprs []string
	dashboards, err := filepath.Glob("../../infra/observability/grafana/*.json")
	if err != nil || len(dashboards) < 4 {
		t.Fatalf("dashboards: %v %v", dashboards, err)
	}
	for _, path := range dashboards {
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", path, p.Title)
			}
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	alerts, err := os.ReadFile("../../infra/observability/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*expr:\s*(.+)$`).FindAllStringSubmatch(string(alerts), -1) {
		exprs = append(exprs, m[1])
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d queries found", len(exprs))
	}
	labels := regexp.MustCompile(`\{[^}]*\}|\b(by|without)\s*\([^)]*\)`)
	metricName := regexp.MustCompile(`\b(hexride|rpc)_[a-z0-9_]+`)
	for _, e := range exprs {
		for _, name := range metricName.FindAllString(labels.ReplaceAllString(e, ""), -1) {
			if _, ok := exported[name]; !ok {
				t.Errorf("query %q uses %s, which the platform does not export", e, name)
			}
		}
	}
}

package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/node"
)

// env is a real in-process node (every service, in-memory store, no
// Consul) serving the console over HTTP on a loopback port.
type env struct {
	base string
	cc   *grpc.ClientConn
}

func startEnv(t *testing.T, opts ...func(*node.Config)) *env {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.Console = "127.0.0.1:0", "127.0.0.1:0", true
	cfg.OfferTimeout, cfg.Topology.DispatchDeadline = time.Second, 3*time.Second
	cfg.RecoveryAge = time.Hour // trips created here stay REQUESTED until a test moves them
	cfg.DrainWait, cfg.StopTimeout = 0, 2*time.Second
	cfg.QuoteKey = []byte(strings.Repeat("k", 32))
	cfg.Security.DevHeader, cfg.Security.Audit = true, io.Discard
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	if n.HTTPMux() == nil || n.HTTPAddr() == "" {
		t.Fatal("node has no HTTP server")
	}
	return &env{base: "http://" + n.HTTPAddr(), cc: cc}
}

func as(role auth.Role, id string) context.Context {
	return auth.OutgoingContext(context.Background(), auth.Principal{Role: role, Subject: id})
}

var sf = &commonv1.LatLng{Lat: 37.7749, Lng: -122.4194}

func (e *env) createTrip(t *testing.T, rider string) *commonv1.Trip {
	t.Helper()
	resp, err := tripv1.NewTripServiceClient(e.cc).CreateTrip(as(auth.RoleService, "test"), &tripv1.CreateTripRequest{
		IdempotencyKey: uuid.NewString(), RiderId: rider, Pickup: sf,
		Dropoff: &commonv1.LatLng{Lat: 37.7849, Lng: -122.4094}, Product: commonv1.Product_PRODUCT_STANDARD,
		QuotedFare: &commonv1.Money{AmountMinor: 1200, Currency: "USD"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetTrip()
}

// connectDriver opens a driver app stream and waits until the console
// lists the driver.
func (e *env) connectDriver(t *testing.T, id string) driverv1.DriverService_ConnectClient {
	t.Helper()
	ctx, cancel := context.WithCancel(as(auth.RoleDriver, id))
	t.Cleanup(cancel)
	s, err := driverv1.NewDriverServiceClient(e.cc).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []*driverv1.ConnectRequest{
		{Msg: &driverv1.ConnectRequest_Availability{Availability: &driverv1.AvailabilityChange{Availability: driverv1.Availability_AVAILABILITY_ONLINE, Product: commonv1.Product_PRODUCT_STANDARD}}},
		{Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{Position: sf, SpeedMps: 5, AccuracyM: 5, RecordedAt: timestamppb.Now()}}},
	} {
		m.Seq = uint64(i + 1)
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var out struct {
			Drivers []struct{ ID, Status string }
		}
		if code := e.do(t, "GET", "/api/drivers", "", nil, &out); code == 200 {
			for _, d := range out.Drivers {
				if d.ID == id {
					return s
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("driver %s never listed", id)
	return nil
}

// do sends a request and decodes the JSON answer into out (when not nil).
func (e *env) do(t *testing.T, method, path, body string, hdr map[string]string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(path, "/api/") {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %s: content type %q", method, path, ct)
		}
		var probe map[string]any
		if err := json.Unmarshal(data, &probe); err != nil {
			t.Fatalf("%s %s: not a JSON object: %s", method, path, data)
		}
		if resp.StatusCode >= 400 {
			if msg, _ := probe["error"].(string); msg == "" {
				t.Fatalf("%s %s: %d without an error message: %s", method, path, resp.StatusCode, data)
			}
		}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

type tripOut struct {
	ID, State, RiderID string
}

type eventOut struct {
	Type, Actor, ActorID, Reason string
}

func (e *env) events(t *testing.T, id string) []eventOut {
	t.Helper()
	var out struct {
		Events []struct {
			Type    string `json:"type"`
			Actor   string `json:"actor"`
			ActorID string `json:"actor_id"`
			Reason  string `json:"reason"`
		} `json:"events"`
	}
	if code := e.do(t, "GET", "/api/trips/"+id+"/events", "", nil, &out); code != 200 {
		t.Fatalf("events: %d", code)
	}
	var evs []eventOut
	for _, ev := range out.Events {
		evs = append(evs, eventOut{ev.Type, ev.Actor, ev.ActorID, ev.Reason})
	}
	return evs
}

// TestRoadsAPI: the map's road layer is the graph the platform routes on,
// with the OpenStreetMap notice; a platform without one serves none.
func TestRoadsAPI(t *testing.T) {
	tests := []struct {
		name  string
		roads string
		min   int // segments
	}{
		{"no road network", "", 0},
		{"embedded Wilmington", node.EmbeddedPrefix + "wilmington", 20000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, func(c *node.Config) { c.Roads = tc.roads })
			var got struct {
				Attribution string    `json:"attribution"`
				Segments    []float64 `json:"segments"`
			}
			if code := e.do(t, "GET", "/api/roads", "", nil, &got); code != 200 {
				t.Fatalf("GET /api/roads: %d", code)
			}
			n := len(got.Segments) / 4
			if len(got.Segments)%4 != 0 || n < tc.min || tc.min == 0 && n != 0 {
				t.Fatalf("%d numbers (%d segments), want ≥ %d segments", len(got.Segments), n, tc.min)
			}
			if tc.min == 0 {
				if got.Attribution != "" {
					t.Errorf("attribution %q without a road network", got.Attribution)
				}
				return
			}
			if !strings.Contains(got.Attribution, "OpenStreetMap") || !strings.Contains(got.Attribution, "ODbL") {
				t.Errorf("attribution %q", got.Attribution)
			}
			for i := 0; i < len(got.Segments); i += 2 {
				lat, lng := got.Segments[i], got.Segments[i+1]
				if lat < 39.6 || lat > 39.9 || lng < -75.7 || lng > -75.4 {
					t.Fatalf("point %v,%v is not in Wilmington", lat, lng)
				}
			}
		})
	}
}

func TestAPI(t *testing.T) {
	e := startEnv(t)
	e.connectDriver(t, "d-1")
	stuck := e.createTrip(t, "r-1")
	toCancel := e.createTrip(t, "r-2")
	missing := uuid.NewString()
	alice := map[string]string{"X-Hexride-Dispatcher": "alice"}

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		want                     int
		check                    func(t *testing.T, body []byte)
	}{
		{name: "web app", method: "GET", path: "/", want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `data-testid="map"`) {
				t.Errorf("index.html: %.200s", b)
			}
		}},
		{name: "web app refuses POST", method: "POST", path: "/", want: 405},
		{name: "unknown API path", method: "GET", path: "/api/nope", want: 404},
		{name: "wrong method on action", method: "GET", path: "/api/trips/" + stuck.GetId() + "/cancel", want: 404},
		{name: "partitions", method: "GET", path: "/api/partitions", want: 200, check: func(t *testing.T, b []byte) {
			var out struct {
				Members    []struct{ ID, Address string }
				Partitions []struct {
					ID       string
					Drivers  int
					Boundary [][2]float64
				}
			}
			mustJSON(t, b, &out)
			if len(out.Members) != 1 || len(out.Partitions) != 1 || out.Partitions[0].Drivers != 1 || len(out.Partitions[0].Boundary) != 7 {
				t.Errorf("partitions: %s", b)
			}
		}},
		{name: "cells with boundaries", method: "GET", path: "/api/cells", want: 200, check: func(t *testing.T, b []byte) {
			var out struct {
				Cells []struct {
					ID              string
					SupplyAvailable int `json:"supply_available"`
					Surge           float64
					Boundary        [][2]float64
				}
			}
			mustJSON(t, b, &out)
			if len(out.Cells) != 1 || out.Cells[0].SupplyAvailable != 1 || out.Cells[0].Surge < 1 {
				t.Fatalf("cells: %s", b)
			}
			ring := out.Cells[0].Boundary
			if len(ring) != 7 || ring[0] != ring[6] || abs(ring[0][0]-sf.Lat) > 0.01 || abs(ring[0][1]-sf.Lng) > 0.01 {
				t.Errorf("boundary %v is not a closed ring around the driver", ring)
			}
		}},
		{name: "drivers", method: "GET", path: "/api/drivers", want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"id":"d-1"`) || !strings.Contains(string(b), `"status":"AVAILABLE"`) {
				t.Errorf("drivers: %s", b)
			}
		}},
		{name: "kpis", method: "GET", path: "/api/kpis", want: 200, check: func(t *testing.T, b []byte) {
			var k struct {
				DriversOnline int `json:"drivers_online"`
				Workers       map[string]int
			}
			mustJSON(t, b, &k)
			if k.DriversOnline != 1 || k.Workers == nil {
				t.Errorf("kpis: %s", b)
			}
		}},
		{name: "snapshot", method: "GET", path: "/api/snapshot", want: 200},
		{name: "trips by state", method: "GET", path: "/api/trips?state=requested&page_size=10", want: 200, check: func(t *testing.T, b []byte) {
			var out struct{ Trips []tripOut }
			mustJSON(t, b, &out)
			if len(out.Trips) != 2 {
				t.Errorf("trips: %s", b)
			}
		}},
		{name: "trips paged", method: "GET", path: "/api/trips?page_size=1", want: 200, check: func(t *testing.T, b []byte) {
			var out struct {
				Trips []tripOut
				Next  string `json:"next_page_token"`
			}
			mustJSON(t, b, &out)
			if len(out.Trips) != 1 || out.Next == "" {
				t.Errorf("page: %s", b)
			}
		}},
		{name: "trips by unknown state", method: "GET", path: "/api/trips?state=LOST", want: 400},
		{name: "trips bad page size", method: "GET", path: "/api/trips?page_size=0", want: 400},
		{name: "search by trip id", method: "GET", path: "/api/trips?q=" + stuck.GetId(), want: 200, check: func(t *testing.T, b []byte) {
			var out struct{ Trips []tripOut }
			mustJSON(t, b, &out)
			if len(out.Trips) != 1 || out.Trips[0].ID != stuck.GetId() {
				t.Errorf("search: %s", b)
			}
		}},
		{name: "search by unknown trip id", method: "GET", path: "/api/trips?q=" + missing, want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"trips":[]`) {
				t.Errorf("search: %s", b)
			}
		}},
		{name: "search by rider", method: "GET", path: "/api/trips?q=r-2", want: 200, check: func(t *testing.T, b []byte) {
			var out struct{ Trips []tripOut }
			mustJSON(t, b, &out)
			if len(out.Trips) != 1 || out.Trips[0].ID != toCancel.GetId() {
				t.Errorf("search: %s", b)
			}
		}},
		{name: "trip", method: "GET", path: "/api/trips/" + stuck.GetId(), want: 200},
		{name: "trip bad id", method: "GET", path: "/api/trips/nope", want: 400},
		{name: "trip not found", method: "GET", path: "/api/trips/" + missing, want: 404},
		{name: "events not found", method: "GET", path: "/api/trips/" + missing + "/events", want: 404},
		{name: "cancel bad json", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", body: `{"reason":`, want: 400},
		{name: "cancel unknown field", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", body: `{"why":"x"}`, want: 400},
		{name: "cancel reason too long", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", body: `{"reason":"` + strings.Repeat("x", 501) + `"}`, want: 400},
		{name: "cancel bad dispatcher", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", hdr: map[string]string{"X-Hexride-Dispatcher": "a b"}, want: 400},
		{name: "cancel missing trip", method: "POST", path: "/api/trips/" + missing + "/cancel", want: 404},
		{name: "cancel", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", body: `{"reason":"rider called"}`, hdr: alice, want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"state":"CANCELLED"`) {
				t.Errorf("cancel: %s", b)
			}
			evs := e.events(t, toCancel.GetId())
			if last := evs[len(evs)-1]; last != (eventOut{"CANCELLED", "DISPATCHER", "alice", "rider called"}) {
				t.Errorf("history ends with %+v", last)
			}
		}},
		{name: "cancel twice", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/cancel", want: 409},
		{name: "redispatch a cancelled trip", method: "POST", path: "/api/trips/" + toCancel.GetId() + "/redispatch", want: 409},
		{name: "redispatch", method: "POST", path: "/api/trips/" + stuck.GetId() + "/redispatch", hdr: alice, want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"dispatch":{"partition":`) {
				t.Errorf("redispatch: %s", b)
			}
			evs := e.events(t, stuck.GetId())
			if evs[1] != (eventOut{"REDISPATCHED", "DISPATCHER", "alice", "re-dispatched by dispatcher"}) {
				t.Errorf("history %+v", evs)
			}
		}},
		{name: "offline unknown driver", method: "POST", path: "/api/drivers/nobody/offline", want: 404},
		{name: "offline too long id", method: "POST", path: "/api/drivers/" + strings.Repeat("d", 129) + "/offline", want: 400},
		{name: "offline", method: "POST", path: "/api/drivers/d-1/offline", body: `{"reason":"unsafe driving"}`, want: 200, check: func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"driver_id":"d-1"`) {
				t.Errorf("offline: %s", b)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, e.base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.want, b)
			}
			if strings.HasPrefix(tc.path, "/api/") {
				var obj map[string]any
				if err := json.Unmarshal(b, &obj); err != nil {
					t.Fatalf("not a JSON object: %s", b)
				}
				if tc.want >= 400 && obj["error"] == nil {
					t.Fatalf("error without message: %s", b)
				}
			}
			if tc.check != nil {
				tc.check(t, b)
			}
		})
	}
}

// TestLive reads the server-sent event stream: a snapshot at once, then
// each trip event as it happens.
func TestLive(t *testing.T) {
	e := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan [2]string, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<22)
		var name string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				events <- [2]string{name, strings.TrimPrefix(line, "data: ")}
			}
		}
	}()
	next := func(want string) string {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended before a %q event", want)
				}
				if ev[0] == want {
					return ev[1]
				}
			case <-ctx.Done():
				t.Fatalf("no %q event", want)
			}
		}
	}
	var s struct {
		Members []any
		KPIs    map[string]any `json:"kpis"`
	}
	mustJSON(t, []byte(next("snapshot")), &s)
	if len(s.Members) != 1 || s.KPIs == nil {
		t.Fatalf("snapshot: %+v", s)
	}
	trip := e.createTrip(t, "r-live")
	for {
		var ev struct {
			TripID string `json:"trip_id"`
			Type   string
			Trip   *tripOut
		}
		mustJSON(t, []byte(next("trip")), &ev)
		if ev.TripID == trip.GetId() && ev.Type == "CREATED" && ev.Trip != nil {
			break
		}
	}
	// The periodic snapshot comes too, and its KPIs count the request.
	var k struct {
		KPIs struct {
			Requests int `json:"requests_per_min"`
		} `json:"kpis"`
	}
	mustJSON(t, []byte(next("snapshot")), &k)
	if k.KPIs.Requests != 1 {
		t.Errorf("requests_per_min = %d, want 1", k.KPIs.Requests)
	}
	cancel()
	for range events { // drain until the reader sees the close
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestFlaggedDrivers: a driver whose sample implies impossible motion is
// listed as flagged in the snapshot and marked on the map.
func TestFlaggedDrivers(t *testing.T) {
	e := startEnv(t)
	e.connectDriver(t, "d-honest")
	s := e.connectDriver(t, "d-teleport")
	jump := &driverv1.ConnectRequest{Seq: 3, Msg: &driverv1.ConnectRequest_Location{Location: &driverv1.LocationSample{
		Position: &commonv1.LatLng{Lat: 48.85, Lng: 2.35}, SpeedMps: 5, AccuracyM: 5, RecordedAt: timestamppb.Now()}}}
	if err := s.Send(jump); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var out struct {
			Drivers []struct {
				ID      string
				Flagged bool
			}
			Flagged []struct{ ID, Reason string }
		}
		if code := e.do(t, "GET", "/api/snapshot", "", nil, &out); code != 200 {
			t.Fatalf("snapshot: %d", code)
		}
		if len(out.Flagged) == 1 {
			if out.Flagged[0].ID != "d-teleport" || out.Flagged[0].Reason != "implausible_motion" {
				t.Fatalf("flagged %v", out.Flagged)
			}
			for _, d := range out.Drivers {
				if d.Flagged != (d.ID == "d-teleport") {
					t.Fatalf("driver %s marked flagged=%v", d.ID, d.Flagged)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the teleporting driver was never flagged")
}

// TestConsoleRequiresDispatcherToken: outside development the console asks
// every request for a dispatcher's token, and its actions act as that
// dispatcher towards the services.
func TestConsoleRequiresDispatcherToken(t *testing.T) {
	key, err := auth.GenerateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.Addr, cfg.HTTPAddr, cfg.Console = "127.0.0.1:0", "127.0.0.1:0", true
	cfg.DrainWait, cfg.StopTimeout = 0, 2*time.Second
	cfg.QuoteKey = []byte(strings.Repeat("k", 32))
	cfg.Security = node.Security{JWKSFile: key.JWKSPath(), Issuer: auth.DevIssuer, Audience: auth.DevAudience, ServiceKeyDir: key.Dir, Audit: io.Discard}
	n, err := node.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	mint := func(role auth.Role, sub string) string {
		tok, err := auth.Mint(key.Private, key.Kid, auth.DevIssuer, auth.DevAudience, role, sub, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	e := &env{base: "http://" + n.HTTPAddr()}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	ops := mint(auth.RoleDispatcher, "ops-7")
	for _, tt := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"garbage token", bearer("nope"), http.StatusUnauthorized},
		{"a rider's token", bearer(mint(auth.RoleRider, "r1")), http.StatusForbidden},
		{"the dev header is not enough", map[string]string{"X-Hexride-Dispatcher": "ops"}, http.StatusUnauthorized},
		{"a dispatcher's token", bearer(ops), http.StatusOK},
	} {
		if got := e.do(t, "GET", "/api/kpis", "", tt.hdr, nil); got != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := e.do(t, "GET", "/", "", nil, nil); got != http.StatusOK {
		t.Errorf("the page itself (its login form) must load without a token: %d", got)
	}

	// A cancel with the dispatcher's token is recorded as that dispatcher.
	cc, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	created, err := tripv1.NewTripServiceClient(cc).CreateTrip(auth.BearerContext(context.Background(), mint(auth.RoleService, "test")), &tripv1.CreateTripRequest{
		IdempotencyKey: "c-1", RiderId: "r1", Pickup: sf, Dropoff: &commonv1.LatLng{Lat: 37.7849, Lng: -122.4094},
		Product: commonv1.Product_PRODUCT_STANDARD, QuotedFare: &commonv1.Money{AmountMinor: 1200, Currency: "USD"},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetTrip().GetId()
	if got := e.do(t, "POST", "/api/trips/"+id+"/cancel", `{"reason":"duplicate"}`, bearer(ops), nil); got != http.StatusOK {
		t.Fatalf("cancel: %d", got)
	}
	var hist struct {
		Events []struct {
			Actor   string `json:"actor"`
			ActorID string `json:"actor_id"`
		} `json:"events"`
	}
	if got := e.do(t, "GET", "/api/trips/"+id+"/events", "", bearer(ops), &hist); got != http.StatusOK || len(hist.Events) != 2 || hist.Events[1].ActorID != "ops-7" {
		t.Fatalf("history %d %+v: the cancel must be by ops-7", got, hist.Events)
	}
	// The event stream takes the token as a parameter (EventSource sends no headers).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/api/live?access_token="+ops, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("live with a token: %d", resp.StatusCode)
	}
}

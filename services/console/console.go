// Package console is the dispatcher console: an HTTP handler serving the web
// app (embedded, built from web/), a JSON API over the trip, matching and
// driver gateway services, a live stream (server-sent events) of trip events
// and periodic snapshots, and the dispatcher's actions (cancel a trip, take a
// driver offline, re-dispatch a stuck request).
//
// Every matching worker answers only for its own index, so the console asks
// every member and merges the answers.
package console

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/hexride/hexride/geo"
	"github.com/hexride/hexride/infra/audit"
	"github.com/hexride/hexride/infra/auth"
	commonv1 "github.com/hexride/hexride/proto/hexride/common/v1"
	driverv1 "github.com/hexride/hexride/proto/hexride/driver/v1"
	matchingv1 "github.com/hexride/hexride/proto/hexride/matching/v1"
	tripv1 "github.com/hexride/hexride/proto/hexride/trip/v1"
	"github.com/hexride/hexride/services/matching/matchingclient"
)

// Trips is the part of the trip client the console uses
// (*tripclient.Client implements it).
type Trips interface {
	ListTrips(ctx context.Context, req *tripv1.ListTripsRequest, opts ...grpc.CallOption) (*tripv1.ListTripsResponse, error)
	GetTrip(ctx context.Context, tripID string, opts ...grpc.CallOption) (*commonv1.Trip, error)
	Events(ctx context.Context, tripID string, opts ...grpc.CallOption) ([]*commonv1.TripEvent, error)
	Watch(ctx context.Context, req *tripv1.WatchTripsRequest, fn func(*commonv1.TripEvent) error, opts ...grpc.CallOption) error
	Transition(ctx context.Context, req *tripv1.TransitionRequest, opts ...grpc.CallOption) (*commonv1.Trip, *commonv1.TripEvent, error)
}

// Matching is the part of the matching client the console uses
// (*matchingclient.Client implements it).
type Matching interface {
	// Members lists the matching workers.
	Members() []matchingclient.Member
	// At returns a client of the worker at addr.
	At(addr string) (matchingv1.MatchingServiceClient, error)
	// Dispatch hands a trip to the owner of its pickup.
	Dispatch(ctx context.Context, req *matchingv1.DispatchRequest, opts ...grpc.CallOption) (*matchingv1.DispatchResponse, error)
}

// Drivers is the part of the driver gateway client the console uses
// (*driverclient.Client implements it).
type Drivers interface {
	TakeOffline(ctx context.Context, gateway, driverID, reason string) error
	ListFlagged(ctx context.Context, gateway string, limit int32) ([]*driverv1.FlaggedDriver, error)
}

// Deps are the console's collaborators. The clients' connections must not
// carry a per-connection principal: the console sends the dispatcher's on
// every call.
type Deps struct {
	Trips    Trips
	Matching Matching
	Drivers  Drivers
	Logger   *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Outgoing gives a call's context the credentials that make it act as
	// the principal (nil: the development principal header).
	Outgoing func(ctx context.Context, p auth.Principal) (context.Context, error)
	// Audit records dispatcher actions (nil: not recorded).
	Audit audit.Recorder
	// Verify checks a dispatcher's bearer token (required with
	// Config.RequireToken).
	Verify func(token string) (auth.Principal, error)
	// Streets is the road network the platform routes on, drawn under the
	// map (nil: none).
	Streets *StreetMap
}

// StreetMap is a road network to draw and the notice its data requires.
type StreetMap struct {
	Attribution string
	// Segments calls fn with the ends of every road segment.
	Segments func(fn func(a, b geo.LatLng))
}

//go:embed all:web/dist
var webDist embed.FS

// Console is the console's HTTP handler. Run feeds its live stream; without
// Run the JSON API still answers, and live clients get snapshots only.
type Console struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	kpis   *window
	hub    *hub
	bounds *boundaryCache
	roads  func() roadsView // built on first request
}

var _ http.Handler = (*Console)(nil)

// New returns the console.
func New(cfg Config, deps Deps) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Trips == nil || deps.Matching == nil || deps.Drivers == nil || cfg.RequireToken && deps.Verify == nil {
		return nil, ErrMissingDep
	}
	c := &Console{cfg: cfg, deps: deps, log: deps.Logger, now: deps.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.kpis = newWindow(cfg.KPIWindow, cfg.MaxWindowTrips)
	c.hub = newHub(cfg.ClientBuffer)
	c.bounds = newBoundaryCache(50000)
	c.roads = sync.OnceValue(func() roadsView { return newRoadsView(deps.Streets) })
	dist, err := fs.Sub(webDist, "web/dist")
	if err != nil {
		return nil, err
	}
	c.routes(http.FileServerFS(dist))
	return c, nil
}

func (c *Console) routes(static http.Handler) {
	m := http.NewServeMux()
	m.Handle("/", staticOnly(static))
	m.HandleFunc("GET /api/partitions", c.api(c.getPartitions))
	m.HandleFunc("GET /api/cells", c.api(c.getCells))
	m.HandleFunc("GET /api/drivers", c.api(c.getDrivers))
	m.HandleFunc("GET /api/kpis", c.api(c.getKPIs))
	m.HandleFunc("GET /api/snapshot", c.api(c.getSnapshot))
	m.HandleFunc("GET /api/roads", c.api(c.getRoads))
	m.HandleFunc("GET /api/trips", c.api(c.listTrips))
	m.HandleFunc("GET /api/trips/{id}", c.api(c.getTrip))
	m.HandleFunc("GET /api/trips/{id}/events", c.api(c.getTripEvents))
	m.HandleFunc("POST /api/trips/{id}/cancel", c.api(c.audited("trip.cancel", c.cancelTrip)))
	m.HandleFunc("POST /api/trips/{id}/redispatch", c.api(c.audited("trip.redispatch", c.redispatchTrip)))
	m.HandleFunc("POST /api/drivers/{id}/offline", c.api(c.audited("driver.offline", c.takeOffline)))
	m.HandleFunc("GET /api/live", c.live)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("no such API endpoint"))
	})
	c.mux = m
}

// staticOnly serves the web app to GET and HEAD.
func staticOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			c.log.Error("console handler panicked", "path", r.URL.Path, "panic", p)
			writeError(w, errInternal("internal error"))
		}
	}()
	c.mux.ServeHTTP(w, r)
}

// Run follows every trip event (feeding the KPI window and the live
// stream) and pushes a snapshot to live clients every SnapshotInterval,
// until ctx is cancelled; then it disconnects the live clients.
func (c *Console) Run(ctx context.Context) {
	defer c.hub.close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.followTrips(ctx) }()
	go func() { defer wg.Done(); c.pushSnapshots(ctx) }()
	wg.Wait()
}

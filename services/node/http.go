package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"

	"github.com/hexride/hexride/infra/dial"
	"github.com/hexride/hexride/services/console"
	"github.com/hexride/hexride/services/driver/driverclient"
	"github.com/hexride/hexride/services/matching/matchingclient"
	"github.com/hexride/hexride/services/trip/tripclient"
)

// httpReadHeaderTimeout bounds a client's request headers. There is no
// write timeout: the console's live stream is long-lived (it sets its own
// per-write deadlines).
const httpReadHeaderTimeout = 10 * time.Second

// httpServer is the node's HTTP side: the dispatcher console at / and
// whatever else shares the address (metrics) on the same mux.
type httpServer struct {
	srv         *http.Server
	ln          net.Listener
	mux         *http.ServeMux
	cancel      context.CancelFunc // ends the console's loops and live streams
	wg          sync.WaitGroup     // Serve and the console's Run
	closeEgress func()             // the console's client connections
}

// startHTTP serves /metrics and, with Config.Console, the console on
// cfg.HTTPAddr (nothing when empty).
func (n *Node) startHTTP() (err error) {
	if n.cfg.HTTPAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", n.Telemetry.MetricsHandler())
	if n.cfg.Pprof {
		n.mountPprof(mux)
	}
	closeEgress := func() {}
	var con *console.Console
	if n.cfg.Console {
		var deps console.Deps
		deps, closeEgress, err = n.consoleDeps()
		if err != nil {
			return err
		}
		defer func() {
			if err != nil {
				closeEgress()
			}
		}()
		ccfg := console.DefaultConfig()
		ccfg.RequireToken = !n.cfg.ConsoleOpen && !n.cfg.Security.DevHeader
		if con, err = console.New(ccfg, deps); err != nil {
			return err
		}
		mux.Handle("/", con)
	}
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", n.cfg.HTTPAddr, err)
	}
	if n.sec.httpTLS != nil {
		ln = tls.NewListener(ln, n.sec.httpTLS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &httpServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: httpReadHeaderTimeout,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		ln: ln, mux: mux, cancel: cancel, closeEgress: closeEgress,
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("http server stopped", "err", err)
		}
	}()
	if con != nil {
		h.wg.Add(1)
		go func() { defer h.wg.Done(); con.Run(ctx) }()
	}
	n.http = h
	n.logger.Info("http serving", "addr", ln.Addr().String(), "console", con != nil)
	return nil
}

// consoleDeps builds the console's clients on their own connections: the
// console sends each dispatcher's principal per call, so its connections
// carry none of their own (the node's carry its service principal).
func (n *Node) consoleDeps() (console.Deps, func(), error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(n.sec.anonymous),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(n.Telemetry.Tracer),
			otelgrpc.WithMeterProvider(n.Telemetry.Meter),
			otelgrpc.WithPropagators(n.Telemetry.Propagator))),
	}
	tripTarget := n.advertise
	if n.consul != nil {
		opts = append(opts, n.consul.builder.DialOptions()...)
		tripTarget = "consul:///" + ConsulName(Trip)
	}
	pool := dial.NewPool(opts...)
	tripConn, err := pool.Get(tripTarget)
	if err != nil {
		_ = pool.Close()
		return console.Deps{}, nil, err
	}
	// The console's matching client sees the node's own view of the
	// workers, placed by the same region map, so it routes where everyone
	// else does.
	deps := console.Deps{
		Trips:    tripclient.New(tripConn),
		Matching: matchingclient.New(n.membership, pool, n.cfg.Topology.PartitionResolution),
		Drivers:  driverclient.New(pool),
		Logger:   n.logger.With("service", "console"),
		Outgoing: n.sec.outgoing,
		Audit:    n.sec.audit,
		Verify:   n.sec.verify,
		Streets:  n.streetMap(),
	}
	return deps, func() { _ = pool.Close() }, nil
}

// HTTPMux is the mux the node's HTTP server serves (nil without
// Config.HTTPAddr). Add handlers to it (e.g. /metrics) at any time; the
// console answers every path nobody else claims.
func (n *Node) HTTPMux() *http.ServeMux {
	if n.http == nil {
		return nil
	}
	return n.http.mux
}

// HTTPAddr is the address the HTTP server listens on ("" without one).
func (n *Node) HTTPAddr() string {
	if n.http == nil {
		return ""
	}
	return n.http.ln.Addr().String()
}

// stopHTTP ends the live streams, stops taking requests, waits for the
// running ones (until ctx is done, then closes them) and closes the
// console's connections.
func (n *Node) stopHTTP(ctx context.Context) {
	h := n.http
	if h == nil {
		return
	}
	h.cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		_ = h.srv.Close()
	}
	h.wg.Wait()
	h.closeEgress()
}

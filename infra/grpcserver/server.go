// Package grpcserver builds the gRPC server every hexride process runs: one
// listener, per-service health, reflection, panic recovery, request
// validation against the protovalidate rules in proto/, InvalidArgument for
// requests that are not the expected message at all, keepalive that detects
// dead streams, and a drain that leaves without failing a client call.
// Optionally a second, plaintext listener serves the health service alone
// (Config.HealthAddr), for probes that cannot speak TLS.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	validateinterceptor "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Config configures a Server.
type Config struct {
	// Addr is the host:port to listen on; port 0 picks a free port.
	Addr string
	// DrainWait is how long Drain waits between reporting NOT_SERVING and
	// stopping, so discovery (Consul health checks, resolvers) sees the
	// instance leave before its connections close.
	DrainWait time.Duration
	// StopTimeout bounds GracefulStop; after it in-flight calls are cut.
	StopTimeout time.Duration
	// MaxRecvMsgBytes caps one received message.
	MaxRecvMsgBytes int
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it; KeepaliveTimeout is how long it waits for the answer before
	// closing it, ending the streams on it (a dead driver app is noticed).
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// ConnReadBufferBytes and ConnWriteBufferBytes size each connection's
	// transport buffers. Driver apps hold one mostly idle connection each,
	// so gRPC's 32 KiB defaults would dominate their cost; small messages
	// need little, and the write buffer is shared (pooled) between flushes.
	ConnReadBufferBytes  int
	ConnWriteBufferBytes int
	// StreamWindowBytes and ConnWindowBytes are the HTTP/2 flow-control
	// windows the server grants each stream and each connection. Fixed
	// windows turn off gRPC's bandwidth-delay estimation, which probes
	// with a PING after every DATA frame that follows a finished probe: on
	// a driver app's connection, one small message every few seconds, that
	// is a write (PING and WINDOW_UPDATE) and a read of the app's answer
	// for every location sample. A window is credit, not a buffer: memory
	// holds only what the handler has not read yet. 0 keeps gRPC's dynamic
	// windows.
	StreamWindowBytes int32
	ConnWindowBytes   int32
	// HealthAddr, when set, is a second listener serving only the health
	// service (grpc.health.v1.Health, the same statuses as the main
	// listener) in plaintext, with none of the Options' interceptors or
	// credentials: for probes that cannot speak TLS (the kubelet's gRPC
	// probe). Empty: none.
	HealthAddr string
}

// Errors returned by Config.Validate.
var (
	ErrNoAddr          = errors.New("grpcserver: listen address is required")
	ErrNegativeTimeout = errors.New("grpcserver: durations must not be negative")
	// ErrHealthListen: New could not listen on Config.HealthAddr.
	ErrHealthListen = errors.New("grpcserver: cannot listen for health")
)

// DefaultConfig returns the production defaults listening on addr.
func DefaultConfig(addr string) Config {
	return Config{
		Addr:             addr,
		DrainWait:        2 * time.Second,
		StopTimeout:      10 * time.Second,
		MaxRecvMsgBytes:  4 << 20,
		KeepaliveTime:    15 * time.Second,
		KeepaliveTimeout: 10 * time.Second,
		// Driver samples and offers are a few hundred bytes.
		ConnReadBufferBytes:  4 << 10,
		ConnWriteBufferBytes: 4 << 10,
		// Room for a full ingest batch (5,000 locations, ~0.5 MB) in
		// flight on a stream and a few on a connection, so peers are not
		// held back by fixed windows at in-region round trips.
		StreamWindowBytes: 1 << 20,
		ConnWindowBytes:   4 << 20,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.Addr == "" {
		return ErrNoAddr
	}
	if c.DrainWait < 0 || c.StopTimeout < 0 || c.KeepaliveTime < 0 || c.KeepaliveTimeout < 0 || c.MaxRecvMsgBytes < 0 ||
		c.ConnReadBufferBytes < 0 || c.ConnWriteBufferBytes < 0 || c.StreamWindowBytes < 0 || c.ConnWindowBytes < 0 {
		return ErrNegativeTimeout
	}
	return nil
}

// Server is a listening gRPC server with health and reflection.
type Server struct {
	cfg      Config
	logger   *slog.Logger
	grpc     *grpc.Server
	reg      *registrar
	health   *health.Server
	listener net.Listener
	draining chan struct{}
	drainOne sync.Once

	// The health-only listener (Config.HealthAddr); nil without one.
	healthGRPC     *grpc.Server
	healthListener net.Listener
	healthMu       sync.Mutex
	healthStopped  bool          // stopHealth ran: Serve must not start it
	healthServed   chan struct{} // closed when its Serve returns; nil before Serve
}

// Options are extra pieces a process plugs into its server.
type Options struct {
	// UnaryInterceptors and StreamInterceptors run after recovery and before
	// validation (authentication belongs here).
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// ServerOptions are appended to the grpc.NewServer options (stats
	// handlers, credentials). Forcing another server codec here turns off
	// the InvalidArgument answer to undecodable requests (see Registrar).
	ServerOptions []grpc.ServerOption
	// SkipValidation lists stream message types that handlers validate one
	// by one, so one bad message is refused without ending the stream.
	SkipValidation []protoreflect.MessageType
}

// New listens on cfg.Addr and builds the server. Register services on
// Registrar before Serve.
func New(cfg Config, logger *slog.Logger, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("grpcserver: build validator: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: listen on %s: %w", cfg.Addr, err)
	}
	recoverPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	validateOpts := []validateinterceptor.Option{validateinterceptor.WithIgnoreMessages(opts.SkipValidation...)}
	unary := append([]grpc.UnaryServerInterceptor{recovery.UnaryServerInterceptor(recoverPanic)}, opts.UnaryInterceptors...)
	unary = append(unary, validateinterceptor.UnaryServerInterceptor(validator, validateOpts...))
	stream := append([]grpc.StreamServerInterceptor{recovery.StreamServerInterceptor(recoverPanic)}, opts.StreamInterceptors...)
	stream = append(stream, validateinterceptor.StreamServerInterceptor(validator, validateOpts...))

	codec := newDecodeCodec()
	serverOpts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	serverOpts = append(serverOpts, TransportOptions(cfg)...)
	serverOpts = append(serverOpts, opts.ServerOptions...)
	gs := grpc.NewServer(serverOpts...)
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		grpc:     gs,
		reg:      &registrar{srv: gs, codec: codec, logger: logger},
		health:   health.NewServer(),
		listener: lis,
		draining: make(chan struct{}),
	}
	healthpb.RegisterHealthServer(s.reg, s.health)
	reflection.Register(s.reg)
	if cfg.HealthAddr != "" {
		hl, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			_ = lis.Close()
			return nil, fmt.Errorf("%w on %s: %w", ErrHealthListen, cfg.HealthAddr, err)
		}
		// Only the health service, no credentials, no interceptors: a probe
		// asks Check (or Watch, List) of the same health.Server, so it sees
		// exactly what the main listener reports, NOT_SERVING in a drain
		// included.
		s.healthGRPC = grpc.NewServer(
			grpc.MaxRecvMsgSize(4<<10),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		)
		healthpb.RegisterHealthServer(s.healthGRPC, s.health)
		s.healthListener = hl
	}
	return s, nil
}

// TransportOptions are the connection-level settings cfg asks for
// (keepalive, message size, transport buffers, flow-control windows),
// without interceptors or services: New uses them, and so does anything
// that must measure a bare gRPC server configured as hexride's are.
func TransportOptions(cfg Config) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.MaxRecvMsgBytes > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes))
	}
	if cfg.ConnReadBufferBytes > 0 {
		opts = append(opts, grpc.ReadBufferSize(cfg.ConnReadBufferBytes))
	}
	if cfg.ConnWriteBufferBytes > 0 {
		opts = append(opts, grpc.WriteBufferSize(cfg.ConnWriteBufferBytes), grpc.SharedWriteBuffer(true))
	}
	if cfg.StreamWindowBytes > 0 {
		opts = append(opts, grpc.StaticStreamWindowSize(cfg.StreamWindowBytes))
	}
	if cfg.ConnWindowBytes > 0 {
		opts = append(opts, grpc.StaticConnWindowSize(cfg.ConnWindowBytes))
	}
	return opts
}

// HealthAddr is the address the health-only listener listens on (with
// the real port), or "" without one.
func (s *Server) HealthAddr() string {
	if s.healthListener == nil {
		return ""
	}
	return s.healthListener.Addr().String()
}

// serveHealth starts serving the health-only listener, unless it has
// already been stopped.
func (s *Server) serveHealth() {
	if s.healthGRPC == nil {
		return
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.healthStopped || s.healthServed != nil {
		return
	}
	done := make(chan struct{})
	s.healthServed = done
	go func() {
		defer close(done)
		if err := s.healthGRPC.Serve(s.healthListener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.logger.Error("health listener failed", "addr", s.healthListener.Addr().String(), "err", err)
		}
	}()
}

// stopHealth stops the health-only listener (cutting Watch streams) and
// waits for its Serve to return. Safe to call more than once, and before
// or without Serve.
func (s *Server) stopHealth() {
	if s.healthGRPC == nil {
		return
	}
	s.healthMu.Lock()
	s.healthStopped = true
	done := s.healthServed
	s.healthMu.Unlock()
	s.healthGRPC.Stop()
	// Stop closes only listeners given to Serve; never served, it is ours.
	_ = s.healthListener.Close()
	if done != nil {
		<-done
	}
}

// Registrar is where services register their handlers. A request message
// that does not decode as the method's request type (garbage bytes, a string
// field that is not UTF-8) is answered with codes.InvalidArgument, "request
// is not a valid <full message name> message". A unary call ends there, no
// interceptor or handler runs; on a stream, the handler's Recv returns that
// error (the stream interceptors run around the handler as usual). Services
// registered any other way get grpc-go's codes.Internal. The health and
// reflection services are registered here too.
func (s *Server) Registrar() grpc.ServiceRegistrar { return s.reg }

// Addr is the address the server listens on (with the real port).
func (s *Server) Addr() string { return s.listener.Addr().String() }

// SetServing reports a service (its full gRPC name) SERVING or NOT_SERVING
// on the health service; the overall ("") status follows the last call.
func (s *Server) SetServing(service string, serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(service, st)
	s.health.SetServingStatus("", st)
}

// Draining is closed when Drain stops taking calls. Long-lived stream
// handlers select on it and return codes.Unavailable so their clients
// reconnect to another instance instead of holding GracefulStop open.
func (s *Server) Draining() <-chan struct{} { return s.draining }

// ErrDraining is what stream handlers return when the server drains.
var ErrDraining = status.Error(codes.Unavailable, "server is draining; reconnect")

// Serve serves until Drain or Stop; it returns nil after a drain. The
// health-only listener, if any, starts serving too (and stops with Drain
// or Stop).
func (s *Server) Serve() error {
	s.serveHealth()
	err := s.grpc.Serve(s.listener)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Drain leaves gracefully: every service reports NOT_SERVING, the server
// waits DrainWait for discovery to notice, then stops accepting calls and
// waits up to StopTimeout for the running ones before cutting them. Streams
// see their contexts cancelled when the connections close. The health-only
// listener reports NOT_SERVING throughout and closes last.
func (s *Server) Drain(ctx context.Context) {
	defer s.stopHealth()
	s.health.Shutdown() // every service NOT_SERVING, and stays so
	select {
	case <-time.After(s.cfg.DrainWait):
	case <-ctx.Done():
	}
	s.drainOne.Do(func() { close(s.draining) })
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.logger.Warn("graceful stop timed out; cutting remaining calls", "timeout", s.cfg.StopTimeout)
		s.grpc.Stop()
		<-done
	}
}

// Stop stops at once, cutting calls in flight.
func (s *Server) Stop() {
	s.drainOne.Do(func() { close(s.draining) })
	s.grpc.Stop()
	s.stopHealth()
}

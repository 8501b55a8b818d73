package consul

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// CheckConfig is the Consul gRPC health check of a registration: Consul
// calls grpc.health.v1.Health/Check for GRPCService at Address every
// Interval.
type CheckConfig struct {
	// GRPCService is the service name in the health request; empty means
	// the registration's Service. The server must report it SERVING.
	GRPCService string
	// Address Consul dials ("host:port"); empty means the registration's
	// Address and Port.
	Address string
	// UseTLS makes the check dial with TLS (GRPCUseTLS).
	UseTLS        bool
	TLSServerName string
	TLSSkipVerify bool
	// Interval between checks; a NOT_SERVING instance drops out of the
	// passing set within about one Interval.
	Interval time.Duration
	// Timeout of one check.
	Timeout time.Duration
	// DeregisterCriticalServiceAfter makes Consul remove an instance whose
	// check stays critical this long (a process that died without
	// deregistering). 0 disables it; Consul's minimum is 1m.
	DeregisterCriticalServiceAfter time.Duration
}

// RegistrationConfig describes one service instance. Start from
// DefaultRegistrationConfig.
type RegistrationConfig struct {
	// Service is the Consul service name, e.g. "hexride-matching".
	Service string
	// ID must be unique per process and service; empty means
	// "<service>-<hostname>-<pid>-<port>".
	ID string
	// Address and Port are what clients dial: a routable address, never a
	// wildcard like 0.0.0.0.
	Address string
	Port    int
	// Region and Zone become tags ("region=…", "zone=…") and meta keys.
	Region, Zone string
	// Version becomes the "version" meta key.
	Version string
	// Tags and Meta are extra tags and meta keys.
	Tags []string
	Meta map[string]string
	// Check is the gRPC health check.
	Check CheckConfig
	// ResyncInterval is how often Run re-registers, restoring the
	// registration on an agent that lost it (e.g. restarted without its data
	// dir). Re-registration keeps the current check status.
	ResyncInterval time.Duration
	// MinBackoff and MaxBackoff bound Run's retry delays after a failure.
	MinBackoff, MaxBackoff time.Duration
	// Logger for Run's failures; nil discards.
	Logger *slog.Logger
}

// DefaultRegistrationConfig returns a config for service at address:port
// with production defaults.
func DefaultRegistrationConfig(service, address string, port int) RegistrationConfig {
	return RegistrationConfig{
		Service: service,
		Address: address,
		Port:    port,
		Check: CheckConfig{
			Interval:                       5 * time.Second,
			Timeout:                        2 * time.Second,
			DeregisterCriticalServiceAfter: 5 * time.Minute,
		},
		ResyncInterval: 30 * time.Second,
		MinBackoff:     250 * time.Millisecond,
		MaxBackoff:     15 * time.Second,
	}
}

var metaKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Validate reports the first invalid field.
func (c RegistrationConfig) Validate() error {
	switch {
	case c.Service == "":
		return ErrNoService
	case c.Address == "":
		return ErrNoAddress
	case c.Port <= 0 || c.Port > 65535:
		return fmt.Errorf("%w: %d", ErrBadPort, c.Port)
	case c.Check.Interval <= 0:
		return fmt.Errorf("check %w: %v", ErrBadInterval, c.Check.Interval)
	case c.Check.Timeout <= 0:
		return fmt.Errorf("check %w: %v", ErrBadTimeout, c.Check.Timeout)
	case c.Check.DeregisterCriticalServiceAfter != 0 && c.Check.DeregisterCriticalServiceAfter < time.Minute:
		return fmt.Errorf("%w: %v", ErrDeregisterAfter, c.Check.DeregisterCriticalServiceAfter)
	case c.ResyncInterval <= 0:
		return fmt.Errorf("resync %w: %v", ErrBadInterval, c.ResyncInterval)
	case c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("%w: min %v, max %v", ErrBadBackoff, c.MinBackoff, c.MaxBackoff)
	}
	for k := range c.Meta {
		if !metaKeyRE.MatchString(k) {
			return fmt.Errorf("%w: %q", ErrBadMetaKey, k)
		}
	}
	if ip := net.ParseIP(c.Address); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: %q is a wildcard, not a dialable address", ErrNoAddress, c.Address)
	}
	return nil
}

// Registrar keeps one service instance registered on the local Consul
// agent.
//
// Shutdown order (drain): Deregister (leave discovery: watchers drop the
// instance as soon as their blocking query returns), set the gRPC health
// status to NOT_SERVING (for anything still checking), wait about one
// Check.Interval, then GracefulStop the server with a forced Stop after a
// deadline.
type Registrar struct {
	agent AgentAPI
	cfg   RegistrationConfig
	reg   *api.AgentServiceRegistration
	log   *slog.Logger

	mu   sync.Mutex // serialises agent calls; guards left
	left bool       // Deregister was called: Run stops re-registering
}

// NewRegistrar validates cfg (after filling ID) and returns a Registrar
// registering through agent (e.g. client.Agent()). It does not register.
func NewRegistrar(agent AgentAPI, cfg RegistrationConfig) (*Registrar, error) {
	if agent == nil {
		return nil, ErrNoAgentAPI
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%s-%d-%d", cfg.Service, host, os.Getpid(), cfg.Port)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registrar{
		agent: agent,
		cfg:   cfg,
		reg:   registration(cfg),
		log:   log.With("consul_service", cfg.Service, "consul_service_id", cfg.ID),
	}, nil
}

func registration(cfg RegistrationConfig) *api.AgentServiceRegistration {
	tags := slices.Clone(cfg.Tags)
	meta := maps.Clone(cfg.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	if cfg.Region != "" {
		tags = append(tags, "region="+cfg.Region)
		meta["region"] = cfg.Region
	}
	if cfg.Zone != "" {
		tags = append(tags, "zone="+cfg.Zone)
		meta["zone"] = cfg.Zone
	}
	if cfg.Version != "" {
		meta["version"] = cfg.Version
	}
	grpcService := cmp.Or(cfg.Check.GRPCService, cfg.Service)
	checkAddr := cmp.Or(cfg.Check.Address, net.JoinHostPort(cfg.Address, strconv.Itoa(cfg.Port)))
	check := &api.AgentServiceCheck{
		CheckID:       cfg.ID + ":grpc",
		Name:          "gRPC health " + grpcService,
		GRPC:          checkAddr + "/" + grpcService,
		GRPCUseTLS:    cfg.Check.UseTLS,
		TLSServerName: cfg.Check.TLSServerName,
		TLSSkipVerify: cfg.Check.TLSSkipVerify,
		Interval:      cfg.Check.Interval.String(),
		Timeout:       cfg.Check.Timeout.String(),
		Status:        api.HealthCritical, // passing only after the first check
	}
	if d := cfg.Check.DeregisterCriticalServiceAfter; d > 0 {
		check.DeregisterCriticalServiceAfter = d.String()
	}
	return &api.AgentServiceRegistration{
		ID:      cfg.ID,
		Name:    cfg.Service,
		Address: cfg.Address,
		Port:    cfg.Port,
		Tags:    tags,
		Meta:    meta,
		Checks:  api.AgentServiceChecks{check},
	}
}

// ID is the Consul service ID of the instance.
func (r *Registrar) ID() string { return r.cfg.ID }

// Register registers the instance (idempotent; replaces the checks and
// keeps the current check status). After Deregister it does nothing.
func (r *Registrar) Register(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left {
		return nil
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.agent.ServiceRegisterOpts(r.reg, opts); err != nil {
		return fmt.Errorf("consul: register %s: %w", r.cfg.ID, err)
	}
	return nil
}

// Deregister removes the instance from the agent and stops Run from
// registering it again.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.left = true
	if err := r.agent.ServiceDeregisterOpts(r.cfg.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: deregister %s: %w", r.cfg.ID, err)
	}
	return nil
}

// Run registers the instance and re-registers it every ResyncInterval,
// retrying failures with capped exponential backoff, until ctx is done or
// Deregister is called. It never deregisters: call Deregister on shutdown.
// It always returns nil.
func (r *Registrar) Run(ctx context.Context) error {
	failures := 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.mu.Lock()
		left := r.left
		r.mu.Unlock()
		if left {
			return nil
		}
		next := r.cfg.ResyncInterval
		if err := r.Register(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			next = backoff(r.cfg.MinBackoff, r.cfg.MaxBackoff, failures)
			r.log.Warn("consul registration failed", "err", err, "failures", failures, "retry_in", next)
		} else if failures > 0 {
			r.log.Info("consul registration restored", "failures", failures)
			failures = 0
		}
		t.Reset(next)
	}
}

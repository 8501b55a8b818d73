package consul

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme the Builder resolves.
const Scheme = "consul"

// RoundRobinServiceConfig is the default service config paired with the
// resolver: spread calls over every passing instance.
const RoundRobinServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// WithRoundRobin is the dial option installing RoundRobinServiceConfig as
// the default service config.
func WithRoundRobin() grpc.DialOption {
	return grpc.WithDefaultServiceConfig(RoundRobinServiceConfig)
}

// ResolverConfig configures a Builder. Start from DefaultResolverConfig.
type ResolverConfig struct {
	// Health serves targets without an authority (consul:///service).
	// Nil means a client for Consul's default agent address
	// (CONSUL_HTTP_ADDR, else 127.0.0.1:8500).
	Health HealthAPI
	// NewHealth serves targets naming an agent
	// (consul://127.0.0.1:8500/service). Nil means a client from
	// NewAPIClient(agentAddr).
	NewHealth func(agentAddr string) (HealthAPI, error)
	// Watch tunes the blocking queries.
	Watch WatchConfig
	// PushEmpty passes an empty passing set on to gRPC (calls then fail
	// with Unavailable). By default the resolver keeps the last non-empty
	// set instead: when Consul says "nobody passes" (a restarted dev agent,
	// every instance draining at once), trying the last known instances is
	// never worse than failing every call.
	PushEmpty bool
}

// DefaultResolverConfig returns production defaults.
func DefaultResolverConfig() ResolverConfig {
	return ResolverConfig{Watch: DefaultWatchConfig()}
}

// Validate reports the first invalid field.
func (c ResolverConfig) Validate() error { return c.Watch.Validate() }

// Builder builds resolvers for consul:// targets:
//
//	consul:///hexride-trip                     the default agent
//	consul://127.0.0.1:8500/hexride-trip       the agent at 127.0.0.1:8500
//	consul:///hexride-trip?tag=zone=eu-1a&dc=eu  only instances tagged zone=eu-1a, in datacenter eu
//
// Pass it per connection with grpc.WithResolvers (see DialOptions); it is
// never registered globally.
type Builder struct {
	cfg ResolverConfig

	mu      sync.Mutex
	health  HealthAPI            // default agent, created on first use
	byAgent map[string]HealthAPI // by authority
}

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder validates cfg and returns a Builder.
func NewBuilder(cfg ResolverConfig) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Builder{cfg: cfg, health: cfg.Health, byAgent: map[string]HealthAPI{}}, nil
}

// DialOptions returns the options a client needs to dial consul:// targets
// with round-robin over the passing instances. Add credentials, stats
// handlers etc. beside them.
func (b *Builder) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithResolvers(b), WithRoundRobin()}
}

// Scheme implements resolver.Builder.
func (b *Builder) Scheme() string { return Scheme }

// Target is a parsed consul:// target.
type Target struct {
	Agent      string // authority: agent "host:port", empty for the default agent
	Service    string
	Tag        string
	Datacenter string
}

// ParseTarget parses a consul:// target URL.
func ParseTarget(u url.URL) (Target, error) {
	if u.Scheme != "" && u.Scheme != Scheme {
		return Target{}, fmt.Errorf("%w: scheme %q", ErrBadTarget, u.Scheme)
	}
	t := Target{Agent: u.Host, Service: strings.TrimPrefix(u.Path, "/")}
	if t.Service == "" || strings.Contains(t.Service, "/") {
		return Target{}, fmt.Errorf("%w: service %q", ErrBadTarget, t.Service)
	}
	q := u.Query()
	for k := range q {
		if k != "tag" && k != "dc" {
			return Target{}, fmt.Errorf("%w: unknown parameter %q", ErrBadTarget, k)
		}
	}
	t.Tag, t.Datacenter = q.Get("tag"), q.Get("dc")
	return t, nil
}

func (b *Builder) healthFor(agent string) (HealthAPI, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if agent == "" {
		if b.health == nil {
			c, err := NewAPIClient("")
			if err != nil {
				return nil, err
			}
			b.health = c.Health()
		}
		return b.health, nil
	}
	if h, ok := b.byAgent[agent]; ok {
		return h, nil
	}
	var h HealthAPI
	if b.cfg.NewHealth != nil {
		var err error
		if h, err = b.cfg.NewHealth(agent); err != nil {
			return nil, err
		}
	} else {
		c, err := NewAPIClient(agent)
		if err != nil {
			return nil, err
		}
		h = c.Health()
	}
	b.byAgent[agent] = h
	return h, nil
}

// Build implements resolver.Builder: it starts a watch goroutine that ends
// when the resolver is closed.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := ParseTarget(target.URL)
	if err != nil {
		return nil, err
	}
	health, err := b.healthFor(t.Agent)
	if err != nil {
		return nil, fmt.Errorf("consul: client for agent %q: %w", t.Agent, err)
	}
	wcfg := b.cfg.Watch
	if t.Datacenter != "" {
		wcfg.Datacenter = t.Datacenter
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &consulResolver{
		cc:        cc,
		pushEmpty: b.cfg.PushEmpty,
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	r.q = newQuery(health, t.Service, t.Tag, wcfg)
	r.service, r.log = t.Service, r.q.log
	r.q.onUpdate = r.update
	r.q.onError = r.queryFailed
	go func() {
		defer close(r.done)
		r.q.run(ctx)
	}()
	return r, nil
}

type consulResolver struct {
	cc        resolver.ClientConn
	q         *query // nil for a MembershipBuilder's resolver
	service   string
	log       *slog.Logger
	pushEmpty bool
	cancel    context.CancelFunc
	done      chan struct{}

	// havePushed: a non-empty state was pushed. Only the watch goroutine
	// touches it.
	havePushed bool
}

// ResolveNow implements resolver.Resolver: it cuts a backoff after a failed
// query short (a blocking query in flight already returns on any change).
func (r *consulResolver) ResolveNow(resolver.ResolveNowOptions) {
	if r.q != nil {
		r.q.trigger()
	}
}

// Close implements resolver.Resolver: it stops the watch and waits for it.
func (r *consulResolver) Close() {
	r.cancel()
	<-r.done
}

func (r *consulResolver) queryFailed(err error, _ bool) {
	if !r.havePushed {
		// No instance known yet: fail calls fast with the cause instead of
		// letting them wait for their deadline. Once instances are known
		// the error is not passed on, so the balancer keeps them.
		r.cc.ReportError(fmt.Errorf("consul: resolving %q: %w", r.service, err))
	}
}

func (r *consulResolver) update(list []Instance) {
	if len(list) == 0 && r.havePushed && !r.pushEmpty {
		r.log.Warn("consul lists no passing instances; keeping the last known ones")
		return
	}
	var st resolver.State
	seen := make(map[string]bool, len(list))
	for _, in := range list {
		addr := in.HostPort()
		if seen[addr] { // a stale registration of the same server
			continue
		}
		seen[addr] = true
		a := resolver.Address{Addr: addr}
		st.Addresses = append(st.Addresses, a)
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{a}})
	}
	r.havePushed = r.havePushed || len(st.Addresses) > 0
	if err := r.cc.UpdateState(st); err != nil {
		// round_robin rejects an empty list (ErrBadResolverState); the next
		// change from Consul pushes again.
		r.log.Debug("gRPC rejected resolver state", "err", err, "instances", len(list))
	}
}

// MembershipBuilder resolves targets scheme:///service from a Membership
// (a Watcher, or a FederatedWatcher in failover mode for peers to prefer
// in the own region), with the consul resolver's rules: an empty list
// after instances were known keeps them (unless PushEmpty).
type MembershipBuilder struct {
	scheme     string
	membership func(ctx context.Context) Membership
	pushEmpty  bool
	log        *slog.Logger
}

// NewMembershipBuilder returns a builder for scheme. membership is called
// once per resolver, on the resolver's goroutine, so it may block (to ask
// the agent its datacenter, say); nil (its ctx ended) resolves nothing.
func NewMembershipBuilder(scheme string, membership func(ctx context.Context) Membership, pushEmpty bool, log *slog.Logger) *MembershipBuilder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &MembershipBuilder{scheme: scheme, membership: membership, pushEmpty: pushEmpty, log: log}
}

// Scheme implements resolver.Builder.
func (b *MembershipBuilder) Scheme() string { return b.scheme }

// DialOptions installs the builder and round-robin balancing.
func (b *MembershipBuilder) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithResolvers(b), WithRoundRobin()}
}

// Build implements resolver.Builder: a goroutine follows the membership of
// the target's service until the resolver is closed.
func (b *MembershipBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := strings.TrimPrefix(target.URL.Path, "/")
	if service == "" || strings.Contains(service, "/") || target.URL.Host != "" || target.URL.RawQuery != "" {
		return nil, fmt.Errorf("%w: %s", ErrBadTarget, target.URL.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &consulResolver{cc: cc, service: service, log: b.log.With("consul_service", service), pushEmpty: b.pushEmpty, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		m := b.membership(ctx)
		if m == nil {
			return
		}
		for list := range m.WatchService(ctx, service) {
			r.update(list)
		}
	}()
	return r, nil
}

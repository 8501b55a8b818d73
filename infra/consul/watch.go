package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// Instance is one passing instance of a service, as Consul lists it.
type Instance struct {
	ID      string            // Consul service ID, unique per process and service
	Service string            // service name, e.g. "hexride-matching"
	Node    string            // Consul node the instance is registered on
	Address string            // service address (the node's address when unset)
	Port    int               //
	Tags    []string          // e.g. "region=eu-west-1", "zone=eu-west-1a"
	Meta    map[string]string // e.g. "version", "region", "zone"
}

// HostPort is the instance's dialable "host:port".
func (i Instance) HostPort() string {
	return net.JoinHostPort(i.Address, strconv.Itoa(i.Port))
}

func (i Instance) equal(o Instance) bool {
	return i.ID == o.ID && i.Service == o.Service && i.Node == o.Node &&
		i.Address == o.Address && i.Port == o.Port &&
		slices.Equal(i.Tags, o.Tags) && maps.Equal(i.Meta, o.Meta)
}

// Membership is the live member list of a service: what the matching ring
// hashes partitions over. Watcher implements it over Consul; an in-process
// (static) implementation serves `hexride dev`.
type Membership interface {
	// WatchService returns a channel carrying the passing instances of
	// service sorted by ID: once the first answer is known, then after every
	// change. A reader that falls behind only gets the latest list (stale
	// lists are dropped, never queued). Errors never produce a list: the
	// last one stays current until the source answers again. The channel is
	// closed once ctx is done.
	WatchService(ctx context.Context, service string) <-chan []Instance
}

// Sentinel errors returned by the Validate methods.
var (
	ErrNoService       = errors.New("consul: service name is required")
	ErrNoAddress       = errors.New("consul: address is required")
	ErrBadPort         = errors.New("consul: port must be in 1..65535")
	ErrBadInterval     = errors.New("consul: interval must be positive")
	ErrBadTimeout      = errors.New("consul: timeout must be positive")
	ErrBadBackoff      = errors.New("consul: backoff must satisfy 0 < MinBackoff <= MaxBackoff")
	ErrBadWaitTime     = errors.New("consul: wait time must be in 1s..10m")
	ErrBadMetaKey      = errors.New("consul: meta keys must match [A-Za-z0-9_-]{1,128}")
	ErrNoHealthAPI     = errors.New("consul: a HealthAPI is required")
	ErrNoAgentAPI      = errors.New("consul: an AgentAPI is required")
	ErrBadTarget       = errors.New("consul: bad target, want consul://[agent-host:port]/service[?tag=…&dc=…]")
	ErrDeregisterAfter = errors.New("consul: DeregisterCriticalServiceAfter must be 0 (off) or at least 1m")
)

// WatchConfig tunes the blocking queries shared by the Watcher and the
// resolver. Start from DefaultWatchConfig.
type WatchConfig struct {
	// WaitTime bounds one blocking query (Consul caps it at 10m).
	WaitTime time.Duration
	// MinBackoff is the first retry delay after a failed query; each
	// further failure doubles it, up to MaxBackoff. Jittered.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Datacenter to query; empty means the agent's own.
	Datacenter string
	// QueryTimeout abandons one query (blocking or not) that has not
	// answered; zero means WaitTime + WaitTime/16 (Consul's jitter) + 10s.
	// A remote datacenter whose network was cut mid-query answers nothing
	// at all: this bounds how long that goes unnoticed.
	QueryTimeout time.Duration
	// direct keeps blocking queries off the agent's streaming backend
	// (see fetch); the federation sets it for remote datacenters.
	direct bool
	// Logger receives query failures and recoveries; nil discards them.
	Logger *slog.Logger
}

// DefaultWatchConfig returns production defaults.
func DefaultWatchConfig() WatchConfig {
	return WatchConfig{
		WaitTime:   time.Minute,
		MinBackoff: 250 * time.Millisecond,
		MaxBackoff: 15 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c WatchConfig) Validate() error {
	if c.WaitTime < time.Second || c.WaitTime > 10*time.Minute {
		return fmt.Errorf("%w: %v", ErrBadWaitTime, c.WaitTime)
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("%w: min %v, max %v", ErrBadBackoff, c.MinBackoff, c.MaxBackoff)
	}
	if c.QueryTimeout < 0 || (c.QueryTimeout > 0 && c.QueryTimeout <= c.WaitTime+c.WaitTime/16) {
		return fmt.Errorf("%w: query timeout %v must exceed the wait time %v plus Consul's jitter (1/16)", ErrBadTimeout, c.QueryTimeout, c.WaitTime)
	}
	return nil
}

func (c WatchConfig) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Watcher streams the passing instances of services from Consul. It
// implements Membership.
type Watcher struct {
	health HealthAPI
	cfg    WatchConfig
}

var _ Membership = (*Watcher)(nil)

// NewWatcher returns a Watcher querying health (e.g. client.Health()).
func NewWatcher(health HealthAPI, cfg WatchConfig) (*Watcher, error) {
	if health == nil {
		return nil, ErrNoHealthAPI
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Watcher{health: health, cfg: cfg}, nil
}

// WatchService implements Membership. The watch goroutine ends, and the
// channel is closed, when ctx is done.
func (w *Watcher) WatchService(ctx context.Context, service string) <-chan []Instance {
	ch := make(chan []Instance, 1)
	q := newQuery(w.health, service, "", w.cfg)
	q.onUpdate = func(list []Instance) { sendLatest(ch, list) }
	go func() {
		defer close(ch)
		q.run(ctx)
	}()
	return ch
}

// sendLatest replaces any unread list in ch (capacity 1) with list. It must
// only be called by the channel's single sender.
func sendLatest(ch chan []Instance, list []Instance) {
	for {
		select {
		case ch <- list:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// query is one blocking-query loop over the health endpoint of a service.
type query struct {
	health  HealthAPI
	service string
	tag     string
	cfg     WatchConfig
	log     *slog.Logger

	// onUpdate gets the first answer and every changed one, from the loop
	// goroutine. The slice is the caller's to keep.
	onUpdate func([]Instance)
	// onError gets every failed query; known says whether an answer was
	// ever delivered. Optional.
	onError func(err error, known bool)
	// updateOnRecovery: the first answer after a failed query goes to
	// onUpdate even when unchanged (the caller may have given the source
	// up in between).
	updateOnRecovery bool

	now chan struct{} // ResolveNow: cut a backoff short
}

func newQuery(health HealthAPI, service, tag string, cfg WatchConfig) *query {
	return &query{
		health:  health,
		service: service,
		tag:     tag,
		cfg:     cfg,
		log:     cfg.logger().With("consul_service", service),
		now:     make(chan struct{}, 1),
	}
}

// trigger asks for a prompt re-query; it never blocks. A blocking query in
// flight already returns as soon as Consul's answer changes, so the request
// only matters while the loop is backing off after an error.
func (q *query) trigger() {
	select {
	case q.now <- struct{}{}:
	default:
	}
}

func (q *query) run(ctx context.Context) {
	var (
		index    uint64
		last     []Instance
		known    bool
		failures int
	)
	for ctx.Err() == nil {
		started := time.Now()
		list, meta, err := q.fetch(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			if q.onError != nil {
				q.onError(err, known)
			}
			delay := backoff(q.cfg.MinBackoff, q.cfg.MaxBackoff, failures)
			q.log.Warn("consul health query failed; keeping last known instances",
				"err", err, "failures", failures, "retry_in", delay, "known_instances", len(last))
			q.sleep(ctx, delay, started)
			// Start over with a plain read: the agent may be a new one
			// whose index is unrelated to ours.
			index = 0
			continue
		}
		recovered := failures > 0
		if recovered {
			q.log.Info("consul health query recovered", "failures", failures, "instances", len(list))
			failures = 0
		}
		// Blocking-query hygiene (Consul docs): an index that goes
		// backwards resets the wait; never wait on index 0.
		switch {
		case meta.LastIndex < index:
			index = 0
		case meta.LastIndex == 0:
			index = 1
		default:
			index = meta.LastIndex
		}
		if !known || (recovered && q.updateOnRecovery) || !slices.EqualFunc(last, list, Instance.equal) {
			known, last = true, list
			q.onUpdate(slices.Clone(list))
		}
	}
}

// fetch runs one (blocking, when index > 0) query.
func (q *query) fetch(ctx context.Context, index uint64) ([]Instance, *api.QueryMeta, error) {
	// A blocking query returns after at most WaitTime plus Consul's jitter
	// of WaitTime/16; past that the connection is presumed dead.
	timeout := q.cfg.QueryTimeout
	if timeout == 0 {
		timeout = q.cfg.WaitTime + q.cfg.WaitTime/16 + 10*time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := &api.QueryOptions{
		Datacenter: q.cfg.Datacenter,
		WaitIndex:  index,
		WaitTime:   q.cfg.WaitTime,
	}
	if q.cfg.direct {
		// An agent answers blocking health queries from a materialized
		// view fed by a gRPC stream (use_streaming_backend, on by
		// default). For another datacenter whose network was cut, that
		// view keeps answering "unchanged" until the stream's keepalive
		// fails (about 40 s in the three-region drill). A query with a
		// source node (near) is forwarded as a plain RPC instead (Consul
		// 1.14 agent/rpcclient/health), which fails, or hangs into
		// QueryTimeout, as soon as the datacenter is gone. The sort it
		// asks for does not apply across datacenters.
		opts.Near = "_agent"
	}
	entries, meta, err := q.health.Service(q.service, q.tag, true, opts.WithContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	if meta == nil {
		meta = &api.QueryMeta{}
	}
	return toInstances(entries), meta, nil
}

// sleep waits delay, cut short by ctx or by a trigger; a trigger still
// waits until MinBackoff has passed since the failed attempt started, so a
// caller spinning on ResolveNow cannot hammer Consul.
func (q *query) sleep(ctx context.Context, delay time.Duration, started time.Time) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
		return
	case <-q.now:
	}
	if floor := time.Until(started.Add(q.cfg.MinBackoff)); floor > 0 {
		t.Reset(floor)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// backoff is MinBackoff·2^(failures-1) capped at max, with "equal jitter"
// (uniform in [d/2, d]).
func backoff(minB, maxB time.Duration, failures int) time.Duration {
	d := minB
	for i := 1; i < failures && d < maxB; i++ {
		d *= 2
	}
	d = min(d, maxB)
	half := d / 2
	return half + rand.N(d-half+1)
}

func toInstances(entries []*api.ServiceEntry) []Instance {
	out := make([]Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		in := Instance{
			ID:      e.Service.ID,
			Service: e.Service.Service,
			Address: e.Service.Address,
			Port:    e.Service.Port,
			Tags:    slices.Clone(e.Service.Tags),
			Meta:    maps.Clone(e.Service.Meta),
		}
		if e.Node != nil {
			in.Node = e.Node.Node
			if in.Address == "" {
				in.Address = e.Node.Address
			}
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Node, b.Node))
	})
	return out
}

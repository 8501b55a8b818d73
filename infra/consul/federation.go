package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Cross-datacenter membership: with one Consul datacenter per region,
// WAN-federated, a service's members are the passing instances of the own
// datacenter plus those of every other datacenter watched (the local agent
// forwards `?dc=` queries over the WAN). A remote datacenter that cannot
// be reached ("No path to datacenter", a failed or timed-out query) counts,
// after a grace, as having no passing instance: callers then see its
// members gone, as if they had all failed. The own datacenter keeps the
// Watcher's rule instead (errors keep the last known list).

// ErrBadFederation is returned by FederationConfig.Validate.
var ErrBadFederation = errors.New("consul: bad federation config")

// FederationConfig configures a FederatedWatcher. Start from
// DefaultFederationConfig.
type FederationConfig struct {
	// Local tunes the queries to the agent's own datacenter.
	Local WatchConfig
	// Remote names the other datacenters to watch (each once, none empty).
	Remote []string
	// RemoteWaitTime bounds one blocking query to a remote datacenter, and
	// RemoteQueryTimeout abandons one that has not answered (it must exceed
	// RemoteWaitTime plus Consul's jitter of 1/16): a datacenter cut off
	// mid-query answers nothing, so this is the longest a cut goes
	// unnoticed by a query already in flight.
	RemoteWaitTime     time.Duration
	RemoteQueryTimeout time.Duration
	// A remote datacenter counts as having no passing instance once
	// GraceFailures queries in a row have failed and GraceTime has passed
	// since the first of them; and, at start, once it has not answered
	// for GraceTime. Its first answer after that brings its instances back.
	GraceFailures int
	GraceTime     time.Duration
	// Failover picks one datacenter instead of merging: the own one while
	// it has a passing instance, else the first of Remote (in order) that
	// has one and is not given up. For peers a process should use in its
	// own region and reach across the WAN only when none is left there.
	Failover bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultFederationConfig returns production defaults: a remote cut is
// acted on 2 failed queries and 3s after it is first seen, at most 5s +
// 5s/16 + 2s after it happened.
func DefaultFederationConfig() FederationConfig {
	return FederationConfig{
		Local:              DefaultWatchConfig(),
		RemoteWaitTime:     5 * time.Second,
		RemoteQueryTimeout: 7500 * time.Millisecond,
		GraceFailures:      2,
		GraceTime:          3 * time.Second,
	}
}

// Validate reports the first invalid field.
func (c FederationConfig) Validate() error {
	if err := c.Local.Validate(); err != nil {
		return err
	}
	if err := c.remote("x").Validate(); err != nil {
		return fmt.Errorf("remote datacenters: %w", err)
	}
	seen := map[string]bool{}
	for _, dc := range c.Remote {
		if dc == "" || seen[dc] {
			return fmt.Errorf("%w: remote datacenter %q empty or listed twice", ErrBadFederation, dc)
		}
		seen[dc] = true
	}
	if c.GraceFailures < 1 || c.GraceTime < 0 {
		return fmt.Errorf("%w: grace of %d failures and %v", ErrBadFederation, c.GraceFailures, c.GraceTime)
	}
	return nil
}

// remote is the WatchConfig of the queries to datacenter dc.
func (c FederationConfig) remote(dc string) WatchConfig {
	w := c.Local
	w.Datacenter = dc
	w.WaitTime = c.RemoteWaitTime
	w.QueryTimeout = c.RemoteQueryTimeout
	w.direct = true
	return w
}

func (c FederationConfig) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// FederatedWatcher streams the passing instances of a service across the
// own datacenter and the remote ones. It implements Membership.
type FederatedWatcher struct {
	health HealthAPI
	cfg    FederationConfig
}

var _ Membership = (*FederatedWatcher)(nil)

// NewFederatedWatcher returns a FederatedWatcher querying health (the local
// agent, which forwards the remote queries).
func NewFederatedWatcher(health HealthAPI, cfg FederationConfig) (*FederatedWatcher, error) {
	if health == nil {
		return nil, ErrNoHealthAPI
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &FederatedWatcher{health: health, cfg: cfg}, nil
}

// dcEvent is one query's outcome, for the merging loop.
type dcEvent struct {
	dc   int // index in federation.dcs
	list []Instance
	err  error
}

// WatchService implements Membership: the first list is sent once the own
// datacenter has answered and every remote one has answered or been given
// up on; every change after that is sent. The channel is closed once ctx is
// done and every query has ended.
func (w *FederatedWatcher) WatchService(ctx context.Context, service string) <-chan []Instance {
	ch := make(chan []Instance, 1)
	fed := newFederation(len(w.cfg.Remote), w.cfg.GraceFailures, w.cfg.GraceTime, w.cfg.now())
	fed.failover = w.cfg.Failover
	events := make(chan dcEvent)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 1+len(w.cfg.Remote))
	start := func(i int, q *query) {
		send := func(ev dcEvent) {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		}
		q.onUpdate = func(list []Instance) { send(dcEvent{dc: i, list: list}) }
		q.onError = func(err error, _ bool) { send(dcEvent{dc: i, err: err}) }
		q.updateOnRecovery = true
		go func() {
			defer func() { done <- struct{}{} }()
			q.run(ctx)
		}()
	}
	start(0, newQuery(w.health, service, "", w.cfg.Local))
	for i, dc := range w.cfg.Remote {
		start(i+1, newQuery(w.health, service, "", w.cfg.remote(dc)))
	}
	log := w.cfg.Local.logger().With("consul_service", service)
	go func() {
		defer close(ch)
		defer func() {
			for range 1 + len(w.cfg.Remote) {
				<-done
			}
		}()
		defer cancel()
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		var sent []Instance
		haveSent := false
		for {
			now := w.cfg.now()
			for _, i := range fed.expire(now) {
				log.Warn("remote consul datacenter unreachable past the grace: its instances count as gone",
					"datacenter", w.cfg.Remote[i-1])
			}
			if list, ok := fed.merged(); ok && (!haveSent || !slices.EqualFunc(sent, list, Instance.equal)) {
				sent, haveSent = list, true
				sendLatest(ch, slices.Clone(list))
			}
			if at, ok := fed.nextExpiry(); ok {
				timer.Reset(max(at.Sub(now), time.Millisecond))
			} else {
				timer.Stop()
			}
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			case ev := <-events:
				if ev.err != nil {
					fed.failed(ev.dc, w.cfg.now())
				} else {
					if ev.dc > 0 && fed.dcs[ev.dc].down {
						log.Info("remote consul datacenter reachable again", "datacenter", w.cfg.Remote[ev.dc-1], "instances", len(ev.list))
					}
					fed.answered(ev.dc, ev.list)
				}
			}
		}
	}()
	return ch
}

// federation is the merge and grace logic, free of goroutines and clocks:
// dcs[0] is the own datacenter, the rest are remote.
type federation struct {
	dcs           []dcState
	graceFailures int
	graceTime     time.Duration
	failover      bool // preferred, not merged (FederationConfig.Failover)
}

type dcState struct {
	list     []Instance
	known    bool      // has answered since start or since it was given up
	down     bool      // remote, given up: counts as no instance
	failures int       // failed queries in a row
	since    time.Time // start, or the first failure of the current run
}

func newFederation(remotes, graceFailures int, graceTime time.Duration, now time.Time) *federation {
	f := &federation{dcs: make([]dcState, 1+remotes), graceFailures: graceFailures, graceTime: graceTime}
	for i := range f.dcs {
		f.dcs[i].since = now
	}
	return f
}

// answered records a datacenter's list: it is reachable.
func (f *federation) answered(dc int, list []Instance) {
	f.dcs[dc] = dcState{list: list, known: true}
}

// failed records a failed query at now. The own datacenter keeps its last
// list whatever happens.
func (f *federation) failed(dc int, now time.Time) {
	s := &f.dcs[dc]
	if s.failures == 0 && s.known {
		s.since = now
	}
	s.failures++
	f.expireOne(dc, now)
}

// expire gives up on the remote datacenters whose grace has run out at now
// and returns the ones given up just now.
func (f *federation) expire(now time.Time) []int {
	var out []int
	for i := 1; i < len(f.dcs); i++ {
		if f.expireOne(i, now) {
			out = append(out, i)
		}
	}
	return out
}

func (f *federation) expireOne(dc int, now time.Time) bool {
	s := &f.dcs[dc]
	if dc == 0 || s.down || now.Sub(s.since) < f.graceTime {
		return false
	}
	// Failing for long enough; or never heard from since the start for
	// long enough (a first query hanging on a dead WAN link).
	if s.failures >= f.graceFailures || (!s.known && s.failures == 0) {
		s.down, s.list = true, nil
		return true
	}
	return false
}

// nextExpiry is when expire would next give up on a datacenter, if ever
// without a further event.
func (f *federation) nextExpiry() (time.Time, bool) {
	var at time.Time
	found := false
	for i := 1; i < len(f.dcs); i++ {
		s := f.dcs[i]
		if s.down || (s.known && s.failures == 0) || (s.failures > 0 && s.failures < f.graceFailures) {
			continue
		}
		if t := s.since.Add(f.graceTime); !found || t.Before(at) {
			at, found = t, true
		}
	}
	return at, found
}

// merged is the instances of the own datacenter and of every remote one
// not given up, sorted by ID (an ID listed twice counts once: the own
// datacenter's, else the first remote's). ok is false until the own
// datacenter has answered and every remote one has answered or been given
// up on.
func (f *federation) merged() ([]Instance, bool) {
	if !f.dcs[0].known {
		return nil, false
	}
	if f.failover {
		return f.preferred()
	}
	var out []Instance
	seen := map[string]bool{}
	for i, s := range f.dcs {
		if i > 0 && !s.known && !s.down {
			return nil, false
		}
		if s.down {
			continue
		}
		for _, in := range s.list {
			if !seen[in.ID] {
				seen[in.ID] = true
				out = append(out, in)
			}
		}
	}
	sortInstances(out)
	return out, true
}

// sortInstances orders instances by ID, then node.
func sortInstances(list []Instance) {
	slices.SortFunc(list, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Node, b.Node))
	})
}

// preferred is the instances of the first datacenter, in order (own, then
// the remote ones as configured), that has any and is not given up; empty
// when none has. ok is false while a datacenter before the one chosen has
// neither answered nor been given up on (it may yet be the first with an
// instance).
func (f *federation) preferred() ([]Instance, bool) {
	for _, s := range f.dcs {
		if s.down {
			continue
		}
		if !s.known {
			return nil, false
		}
		if len(s.list) > 0 {
			out := slices.Clone(s.list)
			sortInstances(out)
			return out, true
		}
	}
	return []Instance{}, true
}

package consul_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/hexride/hexride/infra/consul"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    consul.Target
		wantErr bool
	}{
		{in: "consul:///hexride-trip", want: consul.Target{Service: "hexride-trip"}},
		{in: "consul://127.0.0.1:8500/hexride-trip", want: consul.Target{Agent: "127.0.0.1:8500", Service: "hexride-trip"}},
		{in: "consul:///hexride-trip?tag=zone%3Deu-1a&dc=eu", want: consul.Target{Service: "hexride-trip", Tag: "zone=eu-1a", Datacenter: "eu"}},
		{in: "consul:///hexride-trip?tag=zone=eu-1a", want: consul.Target{Service: "hexride-trip", Tag: "zone=eu-1a"}},
		{in: "consul:///", wantErr: true},
		{in: "consul:///a/b", wantErr: true},
		{in: "consul:///a?bogus=1", wantErr: true},
		{in: "dns:///a", wantErr: true},
	} {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := consul.ParseTarget(*u)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseTarget(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, consul.ErrBadTarget) {
			t.Errorf("ParseTarget(%q) error = %v, want ErrBadTarget", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRegistrationConfigValidate(t *testing.T) {
	ok := consul.DefaultRegistrationConfig("hexride-matching", "10.0.0.1", 7000)
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, tc := range map[string]struct {
		mut  func(*consul.RegistrationConfig)
		want error
	}{
		"no service":   {func(c *consul.RegistrationConfig) { c.Service = "" }, consul.ErrNoService},
		"no address":   {func(c *consul.RegistrationConfig) { c.Address = "" }, consul.ErrNoAddress},
		"wildcard":     {func(c *consul.RegistrationConfig) { c.Address = "0.0.0.0" }, consul.ErrNoAddress},
		"port":         {func(c *consul.RegistrationConfig) { c.Port = 70000 }, consul.ErrBadPort},
		"interval":     {func(c *consul.RegistrationConfig) { c.Check.Interval = 0 }, consul.ErrBadInterval},
		"timeout":      {func(c *consul.RegistrationConfig) { c.Check.Timeout = -1 }, consul.ErrBadTimeout},
		"dereg":        {func(c *consul.RegistrationConfig) { c.Check.DeregisterCriticalServiceAfter = time.Second }, consul.ErrDeregisterAfter},
		"resync":       {func(c *consul.RegistrationConfig) { c.ResyncInterval = 0 }, consul.ErrBadInterval},
		"backoff":      {func(c *consul.RegistrationConfig) { c.MaxBackoff = c.MinBackoff / 2 }, consul.ErrBadBackoff},
		"meta key":     {func(c *consul.RegistrationConfig) { c.Meta = map[string]string{"a.b": "x"} }, consul.ErrBadMetaKey},
		"dereg off ok": {func(c *consul.RegistrationConfig) { c.Check.DeregisterCriticalServiceAfter = 0 }, nil},
		"ipv6 ok":      {func(c *consul.RegistrationConfig) { c.Address = "::1" }, nil},
		"hostname ok":  {func(c *consul.RegistrationConfig) { c.Address = "matching-0.internal" }, nil},
	} {
		c := ok
		tc.mut(&c)
		if err := c.Validate(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Validate() = %v, want %v", name, err, tc.want)
		}
	}
	if _, err := consul.NewRegistrar(nil, ok); !errors.Is(err, consul.ErrNoAgentAPI) {
		t.Errorf("NewRegistrar(nil agent) = %v", err)
	}
	if err := (consul.WatchConfig{}).Validate(); !errors.Is(err, consul.ErrBadWaitTime) {
		t.Errorf("zero WatchConfig: %v", err)
	}
}

// fakeHealth replays scripted answers, then blocks like a blocking query
// until the request's context ends.
type fakeHealth struct {
	mu     sync.Mutex
	script []answer
	calls  []time.Time
	idle   chan struct{} // closed when the script is used up
}

type answer struct {
	entries []*api.ServiceEntry
	index   uint64
	err     error
}

func newFakeHealth(script ...answer) *fakeHealth {
	return &fakeHealth{script: script, idle: make(chan struct{})}
}

func (f *fakeHealth) Service(_, _ string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	if !passingOnly {
		panic("want passingOnly")
	}
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	if len(f.script) == 0 {
		select {
		case <-f.idle:
		default:
			close(f.idle)
		}
		f.mu.Unlock()
		<-q.Context().Done()
		return nil, nil, q.Context().Err()
	}
	a := f.script[0]
	f.script = f.script[1:]
	f.mu.Unlock()
	return a.entries, &api.QueryMeta{LastIndex: a.index}, a.err
}

func entry(id string, port int) *api.ServiceEntry {
	return &api.ServiceEntry{
		Node:    &api.Node{Node: "n1", Address: "127.0.0.1"},
		Service: &api.AgentService{ID: id, Service: "svc", Port: port, Meta: map[string]string{"version": "1"}},
	}
}

var errDown = errors.New("connection refused")

func fastWatch() consul.WatchConfig {
	c := consul.DefaultWatchConfig()
	c.WaitTime = 2 * time.Second
	c.MinBackoff = 5 * time.Millisecond
	c.MaxBackoff = 20 * time.Millisecond
	return c
}

func TestWatcherKeepsLastKnownOnErrors(t *testing.T) {
	fh := newFakeHealth(
		answer{err: errDown},
		answer{entries: []*api.ServiceEntry{entry("b", 2), entry("a", 1)}, index: 10},
		answer{err: errDown}, answer{err: errDown}, answer{err: errDown}, answer{err: errDown},
		answer{err: errDown}, answer{err: errDown}, answer{err: errDown}, answer{err: errDown},
		answer{entries: []*api.ServiceEntry{entry("b", 2), entry("a", 1)}, index: 12}, // unchanged: no emit
		answer{entries: []*api.ServiceEntry{entry("a", 1)}, index: 13},
	)
	w, err := consul.NewWatcher(fh, fastWatch())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := w.WatchService(ctx, "svc")
	start := time.Now()
	var got [][]consul.Instance
	for len(got) < 2 {
		select {
		case l := <-ch:
			got = append(got, l)
		case <-time.After(5 * time.Second):
			t.Fatalf("timed out; got %v", got)
		}
	}
	<-fh.idle
	cancel()
	for l := range ch { // closed after cancel
		got = append(got, l)
	}
	if len(got) != 2 || len(got[0]) != 2 || got[0][0].ID != "a" || got[0][1].ID != "b" || len(got[1]) != 1 {
		t.Fatalf("lists = %+v, want [[a b] [a]]", got)
	}
	if in := got[0][0]; in.Address != "127.0.0.1" || in.HostPort() != "127.0.0.1:1" || in.Meta["version"] != "1" {
		t.Errorf("instance = %+v", in)
	}
	// 9 failures with backoff capped at 20ms: well under a second.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v: backoff not capped?", d)
	}
}

// fakeCC records what the resolver tells gRPC.
type fakeCC struct {
	resolver.ClientConn // unused methods panic
	mu                  sync.Mutex
	states              []resolver.State
	errs                []error
	updated             chan struct{}
}

func (f *fakeCC) UpdateState(s resolver.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, s)
	select {
	case f.updated <- struct{}{}:
	default:
	}
	return nil
}

func (f *fakeCC) ReportError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fakeCC) ParseServiceConfig(string) *serviceconfig.ParseResult { return nil }

func TestResolverNeverPushesBecauseOfErrors(t *testing.T) {
	fh := newFakeHealth(
		answer{err: errDown}, // nothing known: reported
		answer{entries: []*api.ServiceEntry{entry("a", 1), entry("b", 2), entry("b-stale", 2)}, index: 5},
		answer{err: errDown}, answer{err: errDown}, // known: not reported, nothing pushed
		answer{entries: nil, index: 6}, // nobody passing: last known kept
		answer{entries: []*api.ServiceEntry{entry("a", 1)}, index: 7},
	)
	cfg := consul.DefaultResolverConfig()
	cfg.Watch = fastWatch()
	cfg.Health = fh
	b, err := consul.NewBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cc := &fakeCC{updated: make(chan struct{}, 1)}
	u, _ := url.Parse("consul:///svc")
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-fh.idle:
	case <-time.After(5 * time.Second):
		t.Fatal("script not consumed")
	}
	r.ResolveNow(resolver.ResolveNowOptions{}) // must not block
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the blocked watch")
	}

	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.errs) != 1 {
		t.Errorf("ReportError calls = %v, want exactly the first failure", cc.errs)
	}
	if len(cc.states) != 2 {
		t.Fatalf("states = %+v, want 2 (both instances, then a)", cc.states)
	}
	if got := addrs(cc.states[0]); len(got) != 2 || got[0] != "127.0.0.1:1" || got[1] != "127.0.0.1:2" {
		t.Errorf("first state = %v (duplicate address must be dropped)", got)
	}
	if got := addrs(cc.states[1]); len(got) != 1 || got[0] != "127.0.0.1:1" {
		t.Errorf("second state = %v", got)
	}
	for _, s := range cc.states {
		if len(s.Endpoints) != len(s.Addresses) {
			t.Errorf("endpoints %v vs addresses %v", s.Endpoints, s.Addresses)
		}
	}
}

func addrs(s resolver.State) []string {
	var out []string
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

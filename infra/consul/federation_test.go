package consul_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hexride/hexride/infra/consul"
)

// dcHealth answers each datacenter's queries from its own channel, so a
// test decides what every datacenter says and when; a query with nothing
// to say blocks like a blocking query until its context ends.
type dcHealth struct {
	mu  sync.Mutex
	dcs map[string]chan answer
}

func (h *dcHealth) ch(dc string) chan answer {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dcs == nil {
		h.dcs = map[string]chan answer{}
	}
	if h.dcs[dc] == nil {
		h.dcs[dc] = make(chan answer)
	}
	return h.dcs[dc]
}

func (h *dcHealth) Service(_, _ string, _ bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	select {
	case a := <-h.ch(q.Datacenter):
		return a.entries, &api.QueryMeta{LastIndex: a.index}, a.err
	case <-q.Context().Done():
		return nil, nil, q.Context().Err()
	}
}

// say delivers one answer to the next query of dc.
func (h *dcHealth) say(t *testing.T, dc string, a answer) {
	t.Helper()
	select {
	case h.ch(dc) <- a:
	case <-time.After(10 * time.Second):
		t.Fatalf("no query to datacenter %q", dc)
	}
}

func recvIDs(t *testing.T, ch <-chan []consul.Instance) []string {
	t.Helper()
	select {
	case l := <-ch:
		out := []string{}
		for _, in := range l {
			out = append(out, in.ID)
		}
		return out
	case <-time.After(10 * time.Second):
		t.Fatal("no list")
		return nil
	}
}

// The watcher merges the own datacenter with the remote ones, drops a
// remote one that keeps failing, and takes it back when it answers.
func TestFederatedWatcherMergesAndGivesUp(t *testing.T) {
	h := &dcHealth{}
	cfg := consul.DefaultFederationConfig()
	cfg.Local = fastWatch()
	cfg.RemoteWaitTime = 2 * time.Second
	cfg.RemoteQueryTimeout = time.Minute
	cfg.Remote = []string{"r2", "r3"}
	cfg.GraceFailures = 2
	cfg.GraceTime = time.Hour
	var clock atomic.Int64 // hours since t0, moved by the test
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Hour) }
	w, err := consul.NewFederatedWatcher(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.WatchService(ctx, "svc")

	h.say(t, "", answer{entries: []*api.ServiceEntry{entry("w1", 1)}, index: 5})
	h.say(t, "r2", answer{entries: []*api.ServiceEntry{entry("w2", 2)}, index: 7})
	h.say(t, "r3", answer{entries: []*api.ServiceEntry{entry("w3", 3)}, index: 9})
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1", "w2", "w3"}) {
		t.Fatalf("first list %v", got)
	}
	// r3: "No path to datacenter" three times within the grace (the
	// first is handled once the third is asked for), then once past it.
	noPath := answer{err: errDown}
	h.say(t, "r3", noPath)
	h.say(t, "r3", noPath)
	h.say(t, "r3", noPath)
	clock.Store(2)
	h.say(t, "r3", noPath)
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Fatalf("after r3 failed twice: %v", got)
	}
	// The own datacenter failing changes nothing; r2 changing does.
	h.say(t, "", noPath)
	h.say(t, "", noPath)
	h.say(t, "", noPath)
	h.say(t, "r2", answer{entries: []*api.ServiceEntry{entry("w2", 2), entry("w2b", 4)}, index: 8})
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1", "w2", "w2b"}) {
		t.Fatalf("after r2 changed: %v", got)
	}
	// r3 back.
	h.say(t, "r3", answer{entries: []*api.ServiceEntry{entry("w3", 3)}, index: 20})
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1", "w2", "w2b", "w3"}) {
		t.Fatalf("after r3 came back: %v", got)
	}
	cancel()
	for range ch { // closed once every query has ended
	}
}

// A remote datacenter whose first query never returns (a dead WAN link)
// does not hold the list back past the grace.
func TestFederatedWatcherSilentRemote(t *testing.T) {
	h := &dcHealth{}
	cfg := consul.DefaultFederationConfig()
	cfg.Local = fastWatch()
	cfg.Remote = []string{"r2"}
	cfg.GraceTime = 50 * time.Millisecond
	w, err := consul.NewFederatedWatcher(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.WatchService(ctx, "svc")
	h.say(t, "", answer{entries: []*api.ServiceEntry{entry("w1", 1)}, index: 5})
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1"}) {
		t.Fatalf("list %v", got)
	}
	h.say(t, "r2", answer{entries: []*api.ServiceEntry{entry("w2", 2)}, index: 7})
	if got := recvIDs(t, ch); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Fatalf("after r2 answered: %v", got)
	}
	cancel()
	for range ch {
	}
}

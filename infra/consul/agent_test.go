package consul_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/infra/consul/consultest"
)

// Tests against a real `consul agent -dev` (see consultest).

const (
	testService   = "hexride-test"
	checkInterval = time.Second
	instanceHdr   = "x-hexride-instance"
)

// testServer is a gRPC server exposing grpc.health.v1 that names itself in
// a response header, registered in Consul.
type testServer struct {
	id     string
	srv    *grpc.Server
	health *health.Server
	reg    *consul.Registrar
	runCtx context.CancelFunc
	runEnd chan struct{}
}

func startServer(t *testing.T, agentAddr, id string) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs(instanceHdr, id)); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	hs.SetServingStatus(testService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()

	client, err := consul.NewAPIClient(agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := consul.DefaultRegistrationConfig(testService, "127.0.0.1", lis.Addr().(*net.TCPAddr).Port)
	cfg.ID = id
	cfg.Region, cfg.Zone, cfg.Version = "local", "local-a", "test"
	cfg.Check.Interval = checkInterval
	cfg.Check.Timeout = time.Second
	cfg.Check.DeregisterCriticalServiceAfter = time.Minute
	cfg.ResyncInterval = 300 * time.Millisecond
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 300*time.Millisecond
	reg, err := consul.NewRegistrar(client.Agent(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := reg.Register(ctx); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{id: id, srv: srv, health: hs, reg: reg, runCtx: cancel, runEnd: make(chan struct{})}
	go func() {
		defer close(ts.runEnd)
		_ = reg.Run(ctx)
	}()
	t.Cleanup(func() {
		ts.runCtx()
		<-ts.runEnd
		hs.Shutdown()
		srv.Stop()
		<-served
	})
	return ts
}

func (s *testServer) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus(testService, st)
}

func dial(t *testing.T, agentAddr string) *grpc.ClientConn {
	t.Helper()
	cfg := consul.DefaultResolverConfig()
	cfg.Watch.WaitTime = 10 * time.Second
	cfg.Watch.MinBackoff, cfg.Watch.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	b, err := consul.NewBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(b.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient(fmt.Sprintf("consul://%s/%s", agentAddr, testService), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// callers returns which instance answered each of n calls.
func callers(t *testing.T, cc *grpc.ClientConn, n int) ([]string, error) {
	t.Helper()
	var out []string
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var md metadata.MD
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		cancel()
		if err != nil {
			return out, err
		}
		out = append(out, md.Get(instanceHdr)...)
	}
	return out, nil
}

// eventually retries cond until it returns nil or the timeout passes, and
// returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = cond(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
	return 0
}

// spreadOver checks that n calls reach exactly the instances ids, each at
// least once per round of the round robin.
func spreadOver(t *testing.T, cc *grpc.ClientConn, ids ...string) func() error {
	return func() error {
		n := 4 * len(ids)
		got, err := callers(t, cc, n)
		if err != nil {
			return err
		}
		count := map[string]int{}
		for _, id := range got {
			count[id]++
		}
		if len(count) != len(ids) {
			return fmt.Errorf("answered by %v, want %v", count, ids)
		}
		for _, id := range ids {
			if count[id] != n/len(ids) {
				return fmt.Errorf("answered by %v, want round robin over %v", count, ids)
			}
		}
		return nil
	}
}

func TestResolverRoundRobinHealthAndDeregister(t *testing.T) {
	agent := consultest.Start(t)
	a := startServer(t, agent.Addr(), "inst-a")
	b := startServer(t, agent.Addr(), "inst-b")
	cc := dial(t, agent.Addr())

	eventually(t, 10*time.Second, "round robin over a and b", spreadOver(t, cc, "inst-a", "inst-b"))

	b.setServing(false)
	took := eventually(t, 10*time.Second, "b drops out once NOT_SERVING", spreadOver(t, cc, "inst-a"))
	t.Logf("NOT_SERVING instance dropped after %v (check interval %v)", took, checkInterval)
	// Worst case: a check that ran just before the change, one interval,
	// the agent's sync and the blocking query; plus slack for loaded CI.
	if limit := 2*checkInterval + 2*time.Second; took > limit {
		t.Errorf("NOT_SERVING instance dropped after %v, want within %v (check interval %v)", took, limit, checkInterval)
	}

	b.setServing(true)
	eventually(t, 10*time.Second, "b back once SERVING", spreadOver(t, cc, "inst-a", "inst-b"))

	if err := a.reg.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, 5*time.Second, "a gone after Deregister", spreadOver(t, cc, "inst-b"))
	t.Logf("deregistered instance dropped after %v", took)
}

func TestWatcherMembership(t *testing.T) {
	agent := consultest.Start(t)
	client, err := consul.NewAPIClient(agent.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := consul.DefaultWatchConfig()
	cfg.WaitTime = 10 * time.Second
	w, err := consul.NewWatcher(client.Health(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := w.WatchService(ctx, testService)
	defer func() {
		cancel()
		for range ch { // wait for the watch goroutine
		}
	}()
	waitFor := func(want ...string) []consul.Instance {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case list := <-ch:
				var ids []string
				for _, in := range list {
					ids = append(ids, in.ID)
				}
				if slices.Equal(ids, want) {
					return list
				}
			case <-timeout:
				t.Fatalf("members never became %v", want)
			}
		}
	}
	waitFor() // nothing registered yet: an empty list, not silence

	startServer(t, agent.Addr(), "inst-b")
	a := startServer(t, agent.Addr(), "inst-a")
	list := waitFor("inst-a", "inst-b")
	if in := list[0]; in.Meta["version"] != "test" || in.Meta["zone"] != "local-a" ||
		!slices.Contains(in.Tags, "region=local") || in.Address != "127.0.0.1" || in.Port == 0 {
		t.Errorf("instance = %+v", in)
	}
	a.setServing(false)
	waitFor("inst-b")
	a.setServing(true)
	waitFor("inst-a", "inst-b")
}

func TestConsulDownKeepsMembers(t *testing.T) {
	agent := consultest.Start(t)
	a := startServer(t, agent.Addr(), "inst-a")
	startServer(t, agent.Addr(), "inst-b")
	cc := dial(t, agent.Addr())
	eventually(t, 10*time.Second, "round robin over a and b", spreadOver(t, cc, "inst-a", "inst-b"))

	client, err := consul.NewAPIClient(agent.Addr())
	if err != nil {
		t.Fatal(err)
	}
	wcfg := consul.DefaultWatchConfig()
	wcfg.MinBackoff, wcfg.MaxBackoff = 50*time.Millisecond, 300*time.Millisecond
	w, err := consul.NewWatcher(client.Health(), wcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := w.WatchService(ctx, testService)
	var (
		mu    sync.Mutex
		lists [][]consul.Instance
	)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for l := range ch {
			mu.Lock()
			lists = append(lists, l)
			mu.Unlock()
		}
	}()
	defer func() { cancel(); <-watchDone }()
	eventually(t, 10*time.Second, "watcher sees a and b", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lists) == 0 || len(lists[len(lists)-1]) != 2 {
			return fmt.Errorf("lists %v", lists)
		}
		return nil
	})

	if err := agent.Kill(); err != nil {
		t.Fatal(err)
	}
	// Several backoff rounds with the agent gone: calls keep reaching both.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := spreadOver(t, cc, "inst-a", "inst-b")(); err != nil {
			t.Fatalf("with Consul down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	if last := lists[len(lists)-1]; len(last) != 2 {
		t.Errorf("watcher pushed %v while Consul was down", last)
	}
	n := len(lists)
	mu.Unlock()

	// A fresh agent on the same address: the registrars' Run loops register
	// again and the resolver follows Consul again.
	if err := agent.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "watcher recovers", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(lists) == n || len(lists[len(lists)-1]) != 2 {
			return fmt.Errorf("lists since restart %v", lists[n:])
		}
		return nil
	})
	// The balancer may still be rebuilding its picker from the re-pushed
	// list for a moment; calls then settle back to round robin.
	eventually(t, 5*time.Second, "round robin after restart", spreadOver(t, cc, "inst-a", "inst-b"))
	a.setServing(false)
	eventually(t, 10*time.Second, "resolver follows Consul after restart", spreadOver(t, cc, "inst-b"))
}

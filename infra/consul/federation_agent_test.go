package consul_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/infra/consul/consultest"
)

// agentFederationConfig is a FederationConfig for agents on loopback:
// short waits and a one-second grace, watching the remote datacenters.
func agentFederationConfig(remote ...string) consul.FederationConfig {
	cfg := consul.DefaultFederationConfig()
	cfg.Local.WaitTime = 10 * time.Second
	cfg.Local.MinBackoff, cfg.Local.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
	cfg.RemoteWaitTime, cfg.RemoteQueryTimeout = 2*time.Second, 4*time.Second
	cfg.GraceFailures, cfg.GraceTime = 2, time.Second
	cfg.Remote = remote
	return cfg
}

// Two real Consul agents, each its own datacenter, WAN-joined on
// loopback: a FederatedWatcher on one sees both datacenters' passing
// instances, drops the other's when its agent goes away (after the grace),
// and takes them back when it returns.
func TestFederatedWatcherTwoDatacenters(t *testing.T) {
	a := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-a"})
	b := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-b"})
	if err := a.JoinWAN(b); err != nil {
		t.Fatal(err)
	}
	startServer(t, a.Addr(), "in-a")
	startServer(t, b.Addr(), "in-b")

	client, err := consul.NewAPIClient(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentFederationConfig("hxwan-b")
	w, err := consul.NewFederatedWatcher(client.Health(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := w.WatchService(ctx, testService)
	var last []string
	waitFor := func(what string, want ...string) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := time.After(60 * time.Second)
		for !slices.Equal(last, want) {
			select {
			case l := <-ch:
				last = nil
				for _, in := range l {
					last = append(last, in.ID)
				}
			case <-deadline:
				t.Fatalf("%s: members %v, want %v", what, last, want)
			}
		}
		return time.Since(start)
	}
	waitFor("both datacenters", "in-a", "in-b")

	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	d := waitFor("datacenter b gone", "in-a")
	t.Logf("datacenter b's instance dropped %v after its agent stopped", d.Round(time.Millisecond))

	// A fresh agent on b's ports (empty state), federated again; the
	// instance registers anew (its registrar resyncs).
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := b.JoinWAN(a); err != nil {
		t.Fatal(err)
	}
	d = waitFor("datacenter b back", "in-a", "in-b")
	t.Logf("datacenter b's instance back %v after it rejoined", d.Round(time.Millisecond))
}

// Peers in the own datacenter first: a client dialled through a
// MembershipBuilder over a failover FederatedWatcher (as hexride dials the
// trip service) calls the other datacenter's instance while its own has
// none, moves to its own as soon as one passes, and back across the WAN
// when that one stops passing.
func TestFailoverToRemoteDatacenter(t *testing.T) {
	a := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-fa"})
	b := consultest.StartWithOptions(t, consultest.Options{Datacenter: "hxwan-fb"})
	if err := a.JoinWAN(b); err != nil {
		t.Fatal(err)
	}
	startServer(t, b.Addr(), "in-b")

	client, err := consul.NewAPIClient(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentFederationConfig("hxwan-fb")
	cfg.Failover = true
	w, err := consul.NewFederatedWatcher(client.Health(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	builder := consul.NewMembershipBuilder("test-peers", func(context.Context) consul.Membership { return w }, false, nil)
	cc, err := grpc.NewClient("test-peers:///"+testService, append(builder.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	only := func(id string) func() error {
		return func() error {
			got, err := callers(t, cc, 4)
			if err != nil {
				return err
			}
			for _, g := range got {
				if g != id {
					return fmt.Errorf("calls reached %v, want only %s", got, id)
				}
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "calls cross to the other datacenter while the own has none", only("in-b"))
	local := startServer(t, a.Addr(), "in-a")
	d := eventually(t, 30*time.Second, "calls stay home once the own datacenter has one", only("in-a"))
	t.Logf("back to the own datacenter %v after its instance registered", d.Round(time.Millisecond))
	local.setServing(false)
	d = eventually(t, 30*time.Second, "calls cross again when the own instance fails", only("in-b"))
	t.Logf("across the WAN again %v after the own instance stopped passing", d.Round(time.Millisecond))
}

package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hexride/hexride/dispatch"
	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/services/matching/ring"
)

// consulClient is the node's handle on the local Consul agent.
type consulClient struct {
	api     *consul.Client
	builder *consul.Builder
	watcher *consul.Watcher
	wcfg    consul.WatchConfig
	logger  *slog.Logger
}

func newConsulClient(addr string, logger *slog.Logger) (*consulClient, error) {
	client, err := consul.NewAPIClient(addr)
	if err != nil {
		return nil, err
	}
	wcfg := consul.DefaultWatchConfig()
	wcfg.Logger = logger
	rcfg := consul.DefaultResolverConfig()
	rcfg.Health = client.Health()
	rcfg.Watch = wcfg
	builder, err := consul.NewBuilder(rcfg)
	if err != nil {
		return nil, err
	}
	watcher, err := consul.NewWatcher(client.Health(), wcfg)
	if err != nil {
		return nil, err
	}
	return &consulClient{api: client, builder: builder, watcher: watcher, wcfg: wcfg, logger: logger}, nil
}

// remoteDatacenters is what to watch for matching workers besides the
// agent's own datacenter agentDC. The convention is one Consul datacenter
// per region, named as the region: when agentDC is a region of the map,
// every other region of the map is a datacenter to watch (federate is
// true). Otherwise (no map, or one datacenter shared by every region, as
// "dc1" in tests) the own datacenter holds every worker there is.
func remoteDatacenters(regions *dispatch.RegionMap, agentDC string) (remote []string, federate bool) {
	if regions == nil || !regions.Has(agentDC) {
		return nil, false
	}
	for _, r := range regions.Regions() {
		if r != agentDC {
			remote = append(remote, r)
		}
	}
	return remote, true
}

// matchingMembership is where the matching workers are watched: the own
// datacenter, or with a region map and one datacenter per region, every
// region's (see remoteDatacenters). Asking the agent its datacenter waits
// for the agent; nil means ctx ended first.
func (c *consulClient) matchingMembership(ctx context.Context, regions *dispatch.RegionMap, region string, grace time.Duration) consul.Membership {
	return c.federatedMembership(ctx, regions, region, grace, false)
}

// peerMembership is where a peer service other than matching (the trip
// service) is found: in the own datacenter while it has a passing
// instance, else, with a region map and one datacenter per region, in the
// first region of the own region's fallback chain that has one. Peers are
// used in the own region first and across the WAN only when none is left.
func (c *consulClient) peerMembership(ctx context.Context, regions *dispatch.RegionMap, region string, grace time.Duration) consul.Membership {
	return c.federatedMembership(ctx, regions, region, grace, true)
}

func (c *consulClient) federatedMembership(ctx context.Context, regions *dispatch.RegionMap, region string, grace time.Duration, failover bool) consul.Membership {
	if regions == nil {
		return c.watcher
	}
	dc, err := c.agentDatacenter(ctx)
	if err != nil {
		return nil
	}
	remote, federate := remoteDatacenters(regions, dc)
	if !federate {
		c.logger.Info("consul datacenter is not a region of the region map: watching peers in it alone",
			"datacenter", dc, "regions", regions.Regions(), "failover", failover)
		return c.watcher
	}
	if failover {
		// The own region's fallbacks first, nearest first, then the rest.
		chain := regions.FallbackChain(dc)[1:]
		for _, r := range remote {
			if !slices.Contains(chain, r) {
				chain = append(chain, r)
			}
		}
		remote = chain
	}
	if dc != region {
		c.logger.Warn("consul datacenter is another region than --region: datacenters must be named after their region",
			"datacenter", dc, "region", region)
	}
	fcfg := consul.DefaultFederationConfig()
	fcfg.Local = c.wcfg
	fcfg.Remote = remote
	fcfg.GraceTime = grace
	fcfg.Failover = failover
	fw, err := consul.NewFederatedWatcher(c.api.Health(), fcfg)
	if err != nil { // only a bad config, which the flags exclude
		c.logger.Error("cross-datacenter membership off", "err", err)
		return c.watcher
	}
	c.logger.Info("watching peers across datacenters", "datacenter", dc, "remote", remote, "grace", grace, "failover", failover)
	return fw
}

// agentDatacenter asks the local agent its datacenter, retrying (capped
// backoff) until it answers or ctx ends.
func (c *consulClient) agentDatacenter(ctx context.Context) (string, error) {
	delay := c.wcfg.MinBackoff
	for {
		self, err := c.api.Agent().Self()
		if err == nil {
			if dc, ok := self["Config"]["Datacenter"].(string); ok && dc != "" {
				return dc, nil
			}
			err = fmt.Errorf("agent self names no datacenter")
		}
		c.logger.Warn("consul agent datacenter unknown; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, c.wcfg.MaxBackoff)
	}
}

// followMembers keeps the matching ring in step with the passing matching
// instances in Consul. When Consul is unreachable the watcher sends
// nothing, so the last known ring stays.
func followMembers(ctx context.Context, w consul.Membership, static *ring.Static) {
	if w == nil {
		return
	}
	for list := range w.WatchService(ctx, ConsulName(Matching)) {
		members := make([]ring.Member, len(list))
		for i, inst := range list {
			// A worker registered without a region (an older version)
			// owns nothing under a region map: unplaced, not guessed.
			members[i] = ring.Member{ID: inst.ID, Address: inst.HostPort(), Region: inst.Meta["region"]}
		}
		static.Set(members...)
	}
}

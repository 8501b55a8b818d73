package node

import (
	"context"
	"log/slog"

	"github.com/hexride/hexride/infra/consul"
	"github.com/hexride/hexride/services/matching/ring"
)

// consulClient is the node's handle on the local Consul agent.
type consulClient struct {
	api     *consul.Client
	builder *consul.Builder
	watcher *consul.Watcher
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
	return &consulClient{api: client, builder: builder, watcher: watcher}, nil
}

// followMembers keeps the matching ring in step with the passing matching
// instances in Consul. When Consul is unreachable the watcher sends
// nothing, so the last known ring stays.
func followMembers(ctx context.Context, w consul.Membership, static *ring.Static) {
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

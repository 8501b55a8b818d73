// Package consul is hexride's service discovery over a Consul agent: it
// registers service instances with a gRPC health check (Registrar), resolves
// consul:// gRPC targets to the passing instances of a service (Builder), and
// streams a service's passing members to the matching ring (Watcher, behind
// the Membership interface).
//
// This is the only package that imports github.com/hashicorp/consul/api. It
// talks to Consul only through the small consumer-side interfaces below, so
// tests and alternative implementations can stand in for the agent.
//
// All reads are blocking queries against the health endpoint with
// passing-only filtering. When Consul cannot be reached the last known
// members are kept, the query is retried with capped exponential backoff,
// and nothing is ever pushed because of an error.
package consul

import (
	"github.com/hashicorp/consul/api"
)

// AgentAPI is the subset of *api.Agent the Registrar uses, talking to the
// local agent's /v1/agent endpoints.
type AgentAPI interface {
	// ServiceRegisterOpts registers (or idempotently re-registers) a service
	// instance and its checks on the local agent; re-registration keeps the
	// current check status.
	//
	// ACL: service:write on the service name (plus service:read on any
	// destination of a Connect proxy, unused here).
	ServiceRegisterOpts(service *api.AgentServiceRegistration, opts api.ServiceRegisterOpts) error

	// ServiceDeregisterOpts removes a service instance and its checks from
	// the local agent.
	//
	// ACL: service:write on the service name.
	ServiceDeregisterOpts(serviceID string, q *api.QueryOptions) error
}

// HealthAPI is the subset of *api.Health the resolver and the Watcher use.
type HealthAPI interface {
	// Service lists the instances of a service with their node and checks;
	// with passingOnly only instances whose checks all pass. It is a
	// blocking query when q.WaitIndex is set.
	//
	// ACL: service:read on the service and node:read on the nodes hosting
	// it (instances on nodes the token cannot read are filtered out).
	Service(service, tag string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

// Compile-time checks that the real client satisfies the interfaces.
var (
	_ AgentAPI  = (*api.Agent)(nil)
	_ HealthAPI = (*api.Health)(nil)
)

// Client is the Consul API client, aliased so callers can hold one (and pass
// client.Agent() and client.Health() here) without importing consul/api.
type Client = api.Client

// NewAPIClient returns a Consul API client for the agent at addr
// ("host:port" or "http(s)://host:port"); an empty addr keeps Consul's
// defaults (CONSUL_HTTP_ADDR, else 127.0.0.1:8500). The token, TLS and
// datacenter settings come from the usual CONSUL_* environment variables.
//
// The client does not pool connections: hexride makes few, mostly
// long-polling requests, and a non-pooled client leaves no idle-connection
// goroutines behind when it is dropped.
func NewAPIClient(addr string) (*Client, error) {
	cfg := api.DefaultNonPooledConfig()
	if addr != "" {
		cfg.Address = addr
	}
	return api.NewClient(cfg)
}

# One hexride region: its network, a Consul datacenter (odd server count,
# WAN-federated with the other regions), NATS JetStream, the OpenTelemetry
# collector, and every hexride role with a gRPC health check.

locals {
  # The hexride roles. Each runs `hexride serve --services <services>`
  # (the console also --console) and is healthy when grpc.health.v1 on its
  # gRPC port answers SERVING: the same check each process registers in
  # Consul. Stopping: SIGTERM, then hexride drains (drain-wait 3s,
  # stop-timeout 10s); stop_grace leaves room for both.
  roles = {
    trip = {
      services     = "trip"
      instances    = 2
      extra_args   = []
      health_check = { grpc = 7070, interval = "2s", timeout = "1s" }
    }
    matching = {
      services     = "matching"
      instances    = 3
      extra_args   = []
      health_check = { grpc = 7070, interval = "2s", timeout = "1s" }
    }
    driver = {
      services     = "driver"
      instances    = 3
      extra_args   = []
      health_check = { grpc = 7070, interval = "2s", timeout = "1s" }
    }
    rider = {
      services     = "rider"
      instances    = 2
      extra_args   = []
      health_check = { grpc = 7070, interval = "2s", timeout = "1s" }
    }
    console = {
      services     = "rider"
      instances    = 1
      extra_args   = ["--console", "--http", "0.0.0.0:8080"]
      health_check = { grpc = 7070, interval = "5s", timeout = "1s" }
    }
  }
  stop_grace = "30s"
}

resource "terraform_data" "network" {
  input = {
    region  = var.name
    cidr    = var.cidr
    subnets = { for i, z in var.zones : z => cidrsubnet(var.cidr, 4, i) }
  }
}

resource "terraform_data" "consul_server" {
  count = var.consul_servers

  input = {
    datacenter       = var.name
    zone             = var.zones[count.index % length(var.zones)]
    subnet           = terraform_data.network.output.subnets[var.zones[count.index % length(var.zones)]]
    bootstrap_expect = var.consul_servers
    retry_join_wan   = var.wan_join
    acl_enabled      = true
    acl_default      = "deny"
  }
}

resource "terraform_data" "nats" {
  count = var.nats_url == "" ? 3 : 0

  input = {
    region    = var.name
    zone      = var.zones[count.index % length(var.zones)]
    jetstream = true
    cluster   = "hexride-${var.name}"
  }
}

resource "terraform_data" "otel_collector" {
  input = {
    region = var.name
    config = "infra/observability/otel-collector.yaml"
  }
}

resource "terraform_data" "hexride" {
  for_each = local.roles

  input = {
    region       = var.name
    role         = each.key
    image        = var.hexride_image
    instances    = each.value.instances
    zones        = var.zones
    args         = concat(["serve", "--services", each.value.services], each.value.extra_args)
    health_check = each.value.health_check
    stop_signal  = "SIGTERM"
    stop_grace   = local.stop_grace
    files = {
      "/etc/hexride/region-map.json" = var.region_map
    }
    environment = {
      HEXRIDE_REGION        = var.name
      HEXRIDE_REGION_MAP    = "/etc/hexride/region-map.json"
      HEXRIDE_CONSUL        = "127.0.0.1:8500"
      HEXRIDE_JWKS_URL      = var.jwks_url
      HEXRIDE_JWT_ISSUER    = var.jwt_issuer
      HEXRIDE_JWT_AUDIENCE  = "hexride"
      HEXRIDE_NATS          = var.nats_url
      HEXRIDE_OTLP_ENDPOINT = "otel-collector.${var.name}:4317"
    }
    secret_environment = {
      CONSUL_HTTP_TOKEN = var.consul_acl_token
      HEXRIDE_QUOTE_KEY = each.value.services == "rider" ? var.quote_key : ""
    }
  }
}

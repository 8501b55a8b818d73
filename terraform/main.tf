# Three regions and one CockroachDB multi-region cluster.
#
# local.regions is THE region map of a deployment: every region's name,
# network and Consul quorum, and the neighbour its trips and partitions
# fall back to when it has no passing matching worker. Everything
# region-shaped below derives from it; tools/deploycheck fails if any other
# list of regions appears. hexride reads the same facts, plus the H3 cells
# each region homes, from region-map.json (its --region-map file, see
# infra/deploy/README.md), which every hexride process gets;
# tools/deploycheck fails unless its regions, fallbacks and primary are
# these names, neighbours and var.primary_region.
locals {
  regions = {
    "us-east" = {
      cidr           = "10.10.0.0/16"
      zones          = ["us-east-a", "us-east-b", "us-east-c"]
      consul_servers = 3
      neighbour      = "us-central"
    }
    "us-central" = {
      cidr           = "10.20.0.0/16"
      zones          = ["us-central-a", "us-central-b", "us-central-c"]
      consul_servers = 3
      neighbour      = "us-east"
    }
    "us-west" = {
      cidr           = "10.30.0.0/16"
      zones          = ["us-west-a", "us-west-b", "us-west-c"]
      consul_servers = 3
      neighbour      = "us-central"
    }
  }
}

module "region" {
  source   = "./modules/region"
  for_each = local.regions

  name           = each.key
  cidr           = each.value.cidr
  zones          = each.value.zones
  consul_servers = each.value.consul_servers
  neighbour      = each.value.neighbour
  wan_join       = [for name, r in local.regions : name if name != each.key]
  region_map     = file("${path.module}/region-map.json")

  hexride_image    = var.hexride_image
  jwks_url         = var.jwks_url
  jwt_issuer       = var.jwt_issuer
  consul_acl_token = var.consul_acl_token
  quote_key        = var.quote_key
  nats_url         = var.nats_url
}

# CockroachDB: one cluster across every region of the map, REGIONAL BY ROW
# trips, SURVIVE REGION FAILURE (needs at least three regions; every trip
# write pays a cross-region round trip for it). Apply it, then run
# `hexride migrate --db … --region-map region-map.json --survive region`
# before any trip service starts.
resource "terraform_data" "cockroachdb" {
  input = {
    regions        = keys(local.regions)
    primary_region = var.primary_region
    survival_goal  = "REGION"
    nodes_per_zone = 1
    zones          = { for name, r in local.regions : name => r.zones }
    root_password  = var.cockroach_root_password
  }

  lifecycle {
    precondition {
      condition     = contains(keys(local.regions), var.primary_region)
      error_message = "primary_region must be a region of the region map."
    }
    precondition {
      condition     = length(local.regions) >= 3
      error_message = "SURVIVE REGION FAILURE needs at least three regions."
    }
  }
}

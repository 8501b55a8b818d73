variable "name" {
  description = "Region name: a key of the root module's region map."
  type        = string
}

variable "cidr" {
  description = "The region's network."
  type        = string
}

variable "zones" {
  description = "Availability zones; Consul servers and hexride roles spread over them."
  type        = list(string)
}

variable "consul_servers" {
  description = "Consul servers in this region's datacenter: an odd number (Raft quorum)."
  type        = number
  default     = 3

  validation {
    condition     = var.consul_servers % 2 == 1 && var.consul_servers >= 3
    error_message = "consul_servers must be odd and at least 3."
  }
}

variable "neighbour" {
  description = "Region that takes over this region's partitions when it has no passing matching worker."
  type        = string
}

variable "region_map" {
  description = "The deployment's region map (hexride --region-map JSON), the same file for every process."
  type        = string
}

variable "wan_join" {
  description = "Other regions' Consul datacenters to WAN-federate with."
  type        = list(string)
}

variable "hexride_image" {
  description = "The hexride OCI image."
  type        = string
}

variable "jwks_url" {
  description = "JWKS URL of the operator's IdP."
  type        = string
}

variable "jwt_issuer" {
  description = "Token issuer."
  type        = string
}

variable "nats_url" {
  description = "External NATS; empty runs this region's own."
  type        = string
  default     = ""
}

variable "consul_acl_token" {
  description = "Consul ACL token hexride registers with."
  type        = string
  sensitive   = true
}

variable "quote_key" {
  description = "Quote signing key (hex)."
  type        = string
  sensitive   = true
}

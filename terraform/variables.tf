variable "hexride_image" {
  description = "The hexride OCI image (make image), by digest."
  type        = string
  default     = "registry.example.com/hexride@sha256:0000000000000000000000000000000000000000000000000000000000000000"
}

variable "primary_region" {
  description = "CockroachDB's primary region: a key of local.regions."
  type        = string
  default     = "us-east"
}

variable "jwks_url" {
  description = "The operator's IdP JWKS (https) that verifies rider, driver and dispatcher tokens."
  type        = string
}

variable "jwt_issuer" {
  description = "The IdP's issuer (iss) tokens must carry."
  type        = string
}

variable "nats_url" {
  description = "The operator's NATS JetStream cluster, if not the per-region NATS this module runs (empty: per region)."
  type        = string
  default     = ""
}

# Secrets: no defaults, marked sensitive; pass them from a secret store
# (TF_VAR_… or a -var-file that is never committed).
variable "consul_acl_token" {
  description = "Consul ACL token for hexride (service:write on hexride-*, node:read, service:read)."
  type        = string
  sensitive   = true
}

variable "quote_key" {
  description = "Hex key (>= 32 bytes) signing quotes; shared by every rider instance in every region."
  type        = string
  sensitive   = true
}

variable "cockroach_root_password" {
  description = "CockroachDB root password (used once to create hexride's SQL user)."
  type        = string
  sensitive   = true
}

# Provider-agnostic on purpose: every piece is a terraform_data resource
# (built into Terraform, nothing to download) whose input is what a cloud
# resource needs. Replace each with your provider's resource (aws_vpc,
# google_compute_network, nomad_job, kubernetes_manifest, …) keeping the
# inputs; the structure — one module per region, a region map in one
# place, an odd Consul quorum, a health check per hexride role — is what
# tools/deploycheck tests.
terraform {
  required_version = ">= 1.6"
}

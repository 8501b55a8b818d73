output "consul_servers" {
  description = "This region's Consul servers."
  value       = [for s in terraform_data.consul_server : s.output.zone]
}

output "roles" {
  description = "The hexride roles run here."
  value       = keys(terraform_data.hexride)
}

output "regions" {
  description = "The region map's names, as every process's --region must spell them."
  value       = keys(local.regions)
}

output "consul_servers" {
  description = "Consul server addresses per region."
  value       = { for name, r in module.region : name => r.consul_servers }
}

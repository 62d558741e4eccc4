output "release_name" {
  description = "Helm release name."
  value       = helm_release.candor.name
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.candor.namespace
}

output "api_service" {
  description = "In-cluster address of the public gRPC API (the front doors)."
  value       = "${helm_release.candor.name}.${helm_release.candor.namespace}.svc:8700"
}

output "keys_secret" {
  description = "Secret holding the deployment's keys."
  value       = var.keys_dir == null ? "${helm_release.candor.name}-keys" : local.keys_secret
}

output "chart_version" {
  description = "Installed chart version."
  value       = helm_release.candor.metadata[0].version
}

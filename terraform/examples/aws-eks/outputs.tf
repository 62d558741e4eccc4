output "cluster_name" {
  description = "EKS cluster: aws eks update-kubeconfig --name <this>."
  value       = module.eks.cluster_name
}

output "api_service" {
  description = "In-cluster address of Candor's gRPC API."
  value       = module.candor.api_service
}

output "keys_secret" {
  description = "Secret with the Candor keys (encrypted at rest with secrets_kms_key_arn)."
  value       = module.candor.keys_secret
}

output "secrets_kms_key_arn" {
  description = "KMS key encrypting Kubernetes Secrets."
  value       = module.eks.secrets_kms_key_arn
}

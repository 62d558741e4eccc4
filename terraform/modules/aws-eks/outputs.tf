output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "HTTPS endpoint of the EKS API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "Base64 PEM of the cluster CA (for the kubernetes and helm providers)."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets, one per zone (nodes, internal load balancers)."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "Public subnets, one per zone (NAT gateways, internet-facing load balancers)."
  value       = aws_subnet.public[*].id
}

output "availability_zones" {
  description = "The three zones the cluster spans."
  value       = local.azs
}

output "secrets_kms_key_arn" {
  description = "KMS key encrypting Kubernetes Secrets (the Candor keys) at rest."
  value       = aws_kms_key.secrets.arn
}

output "ebs_kms_key_arn" {
  description = "KMS key for the members' EBS volumes: the chart's gp3 StorageClass parameter kmsKeyId."
  value       = aws_kms_key.ebs.arn
}

output "node_role_arn" {
  description = "IAM role of the worker nodes."
  value       = aws_iam_role.node.arn
}

output "member_node_selector" {
  description = "Node labels of the member node group (the chart's members.nodeSelector)."
  value       = { "candor.dev/pool" = "members" }
}

output "api_node_selector" {
  description = "Node labels of the front-door node group (the chart's api.nodeSelector)."
  value       = { "candor.dev/pool" = "api" }
}

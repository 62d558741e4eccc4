# The whole thing: an EKS footprint across three zones and Candor installed on it.
#
#   terraform init && terraform apply -var image_repository=... -var image_digest=sha256:...
#
# Keep the state in an encrypted remote backend (S3 + DynamoDB lock, KMS): it holds
# the cluster's credentials' references and, with keys_dir, the keys.

terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40.0, < 6.0.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.12.0, < 3.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.25.0, < 3.0.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { "candor/deployment" = var.name }
  }
}

module "eks" {
  source                       = "../../modules/aws-eks"
  name                         = var.name
  availability_zones           = var.availability_zones
  vpc_cidr                     = var.vpc_cidr
  kubernetes_version           = var.kubernetes_version
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
}

locals {
  exec = {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name, "--region", var.region]
  }
}

provider "kubernetes" {
  host                   = module.eks.cluster_endpoint
  cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority)
  exec {
    api_version = local.exec.api_version
    command     = local.exec.command
    args        = local.exec.args
  }
}

provider "helm" {
  kubernetes {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority)
    exec {
      api_version = local.exec.api_version
      command     = local.exec.command
      args        = local.exec.args
    }
  }
}

module "candor" {
  source                   = "../../modules/candor-chart"
  namespace                = "candor"
  profile                  = "production"
  member_replicas          = 5
  storage_class_kms_key_id = module.eks.ebs_kms_key_arn
  node_selectors = {
    members = module.eks.member_node_selector
    api     = module.eks.api_node_selector
  }
  image = {
    repository = var.image_repository
    digest     = var.image_digest
  }
  values = {
    config = { namespace = var.candor_namespace }
  }
}

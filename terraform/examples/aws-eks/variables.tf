variable "region" {
  description = "AWS region (needs three availability zones)."
  type        = string
  default     = "eu-west-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like eu-west-1."
  }
}

variable "name" {
  description = "Deployment name (EKS cluster, VPC, IAM and KMS prefixes)."
  type        = string
  default     = "candor-prod"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits and hyphens."
  }
}

variable "availability_zones" {
  description = "Three availability zones of the region."
  type        = list(string)
  default     = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "availability_zones must list exactly three zones."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/20 or larger)."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a valid IPv4 CIDR."
  }
}

variable "kubernetes_version" {
  description = "EKS version (1.28 or newer)."
  type        = string
  default     = "1.31"
  validation {
    condition     = can(regex("^1\\.(2[89]|[3-9][0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be 1.28 or newer."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API publicly (your CI and operators); empty: private endpoint only."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "endpoint_public_access_cidrs must be CIDRs."
  }
}

variable "image_repository" {
  description = "Repository of the Candor image you built from the Dockerfile and pushed."
  type        = string
  validation {
    condition     = length(var.image_repository) > 0
    error_message = "image_repository must not be empty."
  }
}

variable "image_digest" {
  description = "Digest of that image (sha256:...): deployments pin digests, not tags."
  type        = string
  validation {
    condition     = can(regex("^sha256:[0-9a-f]{64}$", var.image_digest))
    error_message = "image_digest must be sha256:<64 hex>."
  }
}

variable "candor_namespace" {
  description = "Candor deployment namespace bound into every signature (config.namespace); never change it after install."
  type        = string
  validation {
    condition     = length(var.candor_namespace) > 0 && length(var.candor_namespace) <= 255
    error_message = "candor_namespace must be 1-255 characters."
  }
}

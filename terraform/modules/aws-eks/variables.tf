variable "name" {
  description = "Name of the deployment: prefixes every resource (VPC, EKS cluster, IAM roles, KMS aliases)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC; split into three private and three public subnets (one each per zone)."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR of size /20 or larger."
  }
}

variable "availability_zones" {
  description = "Exactly three availability zones of the provider's region, e.g. [\"eu-west-1a\", \"eu-west-1b\", \"eu-west-1c\"]: one private and one public subnet, one NAT gateway each; the members spread across them."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) == 3 && length(distinct(var.availability_zones)) == 3
    error_message = "availability_zones must list exactly three distinct zones."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the chart supports 1.28 and newer)."
  type        = string
  default     = "1.31"
  validation {
    condition     = can(regex("^1\\.(2[89]|[3-9][0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be 1.28 or newer, as MAJOR.MINOR."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API endpoint publicly. Empty: the endpoint is private only (reach it from the VPC or a VPN)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs must be valid CIDRs, and not 0.0.0.0/0."
  }
}

variable "member_node_group" {
  description = "Node group for the Raft members (one node per member and zone): instance types, sizes and root volume size in GiB."
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size_gib  = number
  })
  default = {
    instance_types = ["m7i.xlarge"]
    min_size       = 3
    max_size       = 9
    desired_size   = 3
    disk_size_gib  = 50
  }
  validation {
    condition = (
      length(var.member_node_group.instance_types) > 0 &&
      var.member_node_group.min_size >= 3 &&
      var.member_node_group.min_size <= var.member_node_group.desired_size &&
      var.member_node_group.desired_size <= var.member_node_group.max_size &&
      var.member_node_group.disk_size_gib >= 20
    )
    error_message = "member_node_group needs instance types, min_size >= 3 (one per zone), min <= desired <= max, and disk_size_gib >= 20."
  }
}

variable "api_node_group" {
  description = "Node group for the stateless front doors and cluster add-ons: instance types, sizes and root volume size in GiB."
  type = object({
    instance_types = list(string)
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size_gib  = number
  })
  default = {
    instance_types = ["c7i.large"]
    min_size       = 2
    max_size       = 12
    desired_size   = 3
    disk_size_gib  = 30
  }
  validation {
    condition = (
      length(var.api_node_group.instance_types) > 0 &&
      var.api_node_group.min_size >= 1 &&
      var.api_node_group.min_size <= var.api_node_group.desired_size &&
      var.api_node_group.desired_size <= var.api_node_group.max_size &&
      var.api_node_group.disk_size_gib >= 20
    )
    error_message = "api_node_group needs instance types, min_size >= 1, min <= desired <= max, and disk_size_gib >= 20."
  }
}

variable "log_retention_days" {
  description = "Retention of the EKS control-plane and VPC flow logs, in days (at least a year)."
  type        = number
  default     = 365
  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least 365 days (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

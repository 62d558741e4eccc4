variable "release_name" {
  description = "Helm release name (prefixes the chart's objects)."
  type        = string
  default     = "candor"
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$", var.release_name))
    error_message = "release_name must be a DNS label of at most 30 characters."
  }
}

variable "namespace" {
  description = "Kubernetes namespace to install into."
  type        = string
  default     = "candor"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS label."
  }
}

variable "create_namespace" {
  description = "Create the namespace (labelled for the chart's NetworkPolicy selectors)."
  type        = bool
  default     = true
}

variable "chart_path" {
  description = "Path of the chart (helm/candor of this repository), or a chart reference with chart_repository."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Helm repository URL (OCI or HTTPS) when chart_path names a published chart; null for a local path."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version when installing from a repository."
  type        = string
  default     = null
}

variable "topology" {
  description = "embedded (Raft members on their own volumes) or foundationdb (shared state in FoundationDB)."
  type        = string
  default     = "embedded"
  validation {
    condition     = contains(["embedded", "foundationdb"], var.topology)
    error_message = "topology must be embedded or foundationdb."
  }
}

variable "profile" {
  description = "Values profile of the chart (helm/candor/profiles/<profile>.yaml), applied before values."
  type        = string
  default     = "production"
  validation {
    condition     = contains(["embedded", "foundationdb", "minimal", "production"], var.profile)
    error_message = "profile must be one of embedded, foundationdb, minimal, production."
  }
}

variable "image" {
  description = "Candor image: repository, and a digest (sha256:...) or tag."
  type = object({
    repository = string
    tag        = optional(string, "")
    digest     = optional(string, "")
  })
  validation {
    condition     = var.image.digest == "" || can(regex("^sha256:[0-9a-f]{64}$", var.image.digest))
    error_message = "image.digest must be sha256:<64 hex> or empty."
  }
  validation {
    condition     = var.image.tag != "" || var.image.digest != ""
    error_message = "image needs a tag or a digest."
  }
}

variable "member_replicas" {
  description = "Raft members (embedded topology): 3 tolerate one loss, 5 two. Scale with this variable (the chart removes members past it before shrinking)."
  type        = number
  default     = 5
  validation {
    condition     = var.member_replicas >= 1 && var.member_replicas <= 9 && floor(var.member_replicas) == var.member_replicas
    error_message = "member_replicas must be an integer from 1 to 9."
  }
}

variable "storage_class_kms_key_id" {
  description = "KMS key ARN for the gp3 StorageClass the chart creates (aws-eks module output ebs_kms_key_arn); null: the chart's default (account EBS key)."
  type        = string
  default     = null
  validation {
    condition     = var.storage_class_kms_key_id == null || can(regex("^arn:aws[a-z-]*:kms:", var.storage_class_kms_key_id))
    error_message = "storage_class_kms_key_id must be a KMS key ARN."
  }
}

variable "keys_dir" {
  description = "Directory from `candor keygen --dir` to load into the keys Secret. null: the chart's pre-install Job generates the keys inside the cluster (they never reach Terraform state; preferred)."
  type        = string
  default     = null
}

variable "values" {
  description = "Further chart values (merged last), e.g. config.namespace, config.api.tenants, tls.certManager.issuerRef."
  type        = any
  default     = {}
}

variable "node_selectors" {
  description = "Node labels for members and front doors (aws-eks module outputs member_node_selector and api_node_selector)."
  type = object({
    members = optional(map(string), {})
    api     = optional(map(string), {})
  })
  default = {}
}

variable "timeout_seconds" {
  description = "How long Helm waits for the release to become ready."
  type        = number
  default     = 900
  validation {
    condition     = var.timeout_seconds >= 60
    error_message = "timeout_seconds must be at least 60."
  }
}

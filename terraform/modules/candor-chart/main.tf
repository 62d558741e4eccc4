# Installs helm/candor: the namespace, the keys Secret when keys come from files, and
# the release (profile + the values below + var.values).

locals {
  chart_path  = coalesce(var.chart_path, "${path.module}/../../../helm/candor")
  keys_secret = var.keys_dir == null ? "" : "${var.release_name}-keys"
  values = {
    topology = var.topology
    image = {
      repository = var.image.repository
      tag        = var.image.tag
      digest     = var.image.digest
    }
    keys = {
      existingSecret = local.keys_secret
    }
    members = {
      replicas     = var.member_replicas
      nodeSelector = var.node_selectors.members
    }
    api = {
      nodeSelector = var.node_selectors.api
    }
    storageClass = {
      create = var.storage_class_kms_key_id != null
      parameters = merge(
        { type = "gp3", encrypted = "true" },
        var.storage_class_kms_key_id == null ? tomap({}) : tomap({ kmsKeyId = var.storage_class_kms_key_id }),
      )
    }
  }
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0
  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of"          = "candor"
      "pod-security.kubernetes.io/enforce" = "restricted"
    }
  }
}

# Only with keys_dir: the key files end up in Terraform state, so keep the state in an
# encrypted backend with restricted access (or leave keys_dir null and let the chart
# generate the keys in the cluster).
resource "kubernetes_secret_v1" "keys" {
  count = var.keys_dir == null ? 0 : 1
  metadata {
    name      = local.keys_secret
    namespace = var.namespace
    labels    = { "app.kubernetes.io/part-of" = "candor" }
  }
  data = {
    for f in ["vrf.key", "head.key", "smt.key", "dev-token"] : f => file("${var.keys_dir}/${f}")
  }
  depends_on = [kubernetes_namespace_v1.this]
}

resource "helm_release" "candor" {
  name       = var.release_name
  namespace  = var.namespace
  chart      = local.chart_path
  repository = var.chart_repository
  version    = var.chart_version
  values = [
    file("${local.chart_path}/profiles/${var.profile}.yaml"),
    yamlencode(local.values),
    yamlencode(var.values),
  ]
  wait            = true
  atomic          = false
  timeout         = var.timeout_seconds
  cleanup_on_fail = false
  depends_on      = [kubernetes_namespace_v1.this, kubernetes_secret_v1.keys]
}

# Three keys, each with rotation: Kubernetes Secrets (envelope encryption in EKS, so
# the Candor signing keys are encrypted at rest with a key of yours), the members'
# EBS volumes, and the CloudWatch logs.

data "aws_iam_policy_document" "kms_default" {
  # The standard key policy: the account's IAM decides who uses the key (a key policy
  # applies to its own key only, so "*" means this key).
  # checkov:skip=CKV_AWS_111: key policy of this key only; access is governed by IAM in the account
  # checkov:skip=CKV_AWS_109: key policy of this key only; without it the key becomes unmanageable
  # checkov:skip=CKV_AWS_356: in a key policy "*" is the key itself
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.arn}:iam::${local.account}:root"]
    }
  }
}

data "aws_iam_policy_document" "kms_logs" {
  # checkov:skip=CKV_AWS_111: key policy of this key only (see kms_default)
  # checkov:skip=CKV_AWS_109: key policy of this key only (see kms_default)
  # checkov:skip=CKV_AWS_356: in a key policy "*" is the key itself
  source_policy_documents = [data.aws_iam_policy_document.kms_default.json]
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.arn}:logs:${data.aws_region.current.name}:${local.account}:log-group:*"]
    }
  }
}

resource "aws_kms_key" "secrets" {
  description             = "${var.name}: EKS Secrets envelope encryption (Candor keys)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_default.json
  tags                    = local.tags
}

resource "aws_kms_alias" "secrets" {
  name          = "alias/${var.name}-eks-secrets"
  target_key_id = aws_kms_key.secrets.key_id
}

resource "aws_kms_key" "ebs" {
  description             = "${var.name}: EBS volumes of the Candor members"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_default.json
  tags                    = local.tags
}

resource "aws_kms_alias" "ebs" {
  name          = "alias/${var.name}-ebs"
  target_key_id = aws_kms_key.ebs.key_id
}

resource "aws_kms_key" "logs" {
  description             = "${var.name}: CloudWatch logs (EKS control plane, VPC flow logs)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_logs.json
  tags                    = local.tags
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${var.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

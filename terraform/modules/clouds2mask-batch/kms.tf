# One customer-managed key for the module's data at rest: output bucket, ECR images, job logs.
data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only; the root statement is the AWS default key policy that delegates access to IAM policies
  # checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only; write access is granted through IAM (the job role gets kms:GenerateDataKey via S3 only)
  # checkov:skip=CKV_AWS_356:Key policy: Resource "*" is this key only (a key policy cannot name other resources)
  # the account administers the key through IAM (the standard default key policy)
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  # CloudWatch Logs encrypts this module's log group only
  statement {
    sid       = "CloudWatchLogsForTheJobLogGroup"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.log_group_name}"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: output bucket, ECR images and job logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

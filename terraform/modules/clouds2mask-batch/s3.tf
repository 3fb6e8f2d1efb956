# The output bucket, when the module creates it: private, KMS-encrypted, versioned (noncurrent
# versions expire: reruns rewrite collection.json and catalog.json).
resource "aws_s3_bucket" "output" {
  count = var.create_output_bucket ? 1 : 0
  # checkov:skip=CKV_AWS_18:Server access logging needs a separate log bucket whose retention is a site decision; CloudTrail data events cover audits
  # checkov:skip=CKV_AWS_144:Masks are derived data, reproducible from the source scenes with the same settings; cross-region replication would double the storage cost
  # checkov:skip=CKV2_AWS_62:No consumer needs event notifications; downstream catalogs read catalog.json or the STAC API
  bucket = coalesce(var.output_bucket_name, "${var.name}-${local.account}-${local.region}")
  tags   = local.tags
}

resource "aws_s3_bucket_public_access_block" "output" {
  count                   = var.create_output_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.output[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "output" {
  count  = var.create_output_bucket ? 1 : 0
  bucket = aws_s3_bucket.output[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "output" {
  count  = var.create_output_bucket ? 1 : 0
  bucket = aws_s3_bucket.output[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "output" {
  count  = var.create_output_bucket ? 1 : 0
  bucket = aws_s3_bucket.output[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "output" {
  count  = var.create_output_bucket ? 1 : 0
  bucket = aws_s3_bucket.output[0].id

  rule {
    id     = "tidy"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.output]
}

# TLS only
data "aws_iam_policy_document" "output_bucket" {
  count = var.create_output_bucket ? 1 : 0
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.output[0].arn, "${aws_s3_bucket.output[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "output" {
  count      = var.create_output_bucket ? 1 : 0
  bucket     = aws_s3_bucket.output[0].id
  policy     = data.aws_iam_policy_document.output_bucket[0].json
  depends_on = [aws_s3_bucket_public_access_block.output]
}

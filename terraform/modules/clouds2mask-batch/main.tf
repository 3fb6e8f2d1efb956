# AWS Batch fleet for stac-clouds2mask: ECR repository, output bucket (or an existing bucket + prefix),
# GPU compute environment (min 0 vCPUs), job queue, job definition, least-privilege roles, logs.
# See docs/aws-batch.md for the walk-through from `terraform apply` to a submitted array job.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  output_bucket = var.create_output_bucket ? aws_s3_bucket.output[0].id : var.output_bucket_name
  plan_bucket   = coalesce(var.plan_bucket_name, local.output_bucket)

  # the only objects the jobs may write: the masks' static catalog (and its run records) under the prefix
  output_bucket_arn  = "arn:${local.partition}:s3:::${local.output_bucket}"
  output_objects_arn = "arn:${local.partition}:s3:::${local.output_bucket}/${var.output_prefix}/*"
  plan_bucket_arn    = "arn:${local.partition}:s3:::${local.plan_bucket}"
  plan_objects_arn   = "arn:${local.partition}:s3:::${local.plan_bucket}/${var.plan_prefix}/*"
  source_bucket_arns = [for b in var.source_buckets : "arn:${local.partition}:s3:::${b}"]
  source_object_arns = [for b in var.source_buckets : "arn:${local.partition}:s3:::${b}/*"]

  # the KMS key the output objects are encrypted with, when there is one
  output_kms_key_arns = var.create_output_bucket ? [aws_kms_key.this.arn] : compact([var.output_kms_key_arn])

  log_group_name = "/aws/batch/${var.name}"
  tags           = merge({ "app" = "stac-clouds2mask" }, var.tags)
}

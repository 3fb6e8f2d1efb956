resource "aws_cloudwatch_log_group" "jobs" {
  # checkov:skip=CKV_AWS_338:Job logs are operational (progress, per-item errors; the outcomes are also in the run records next to the masks); 30 days by default keeps cost down, set log_retention_days = 365 where audits need it
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

output "job_queue_arn" {
  description = "ARN of the GPU job queue (aws batch submit-job --job-queue)."
  value       = aws_batch_job_queue.gpu.arn
}

output "job_queue_name" {
  description = "Name of the GPU job queue."
  value       = aws_batch_job_queue.gpu.name
}

output "job_definition_arn" {
  description = "ARN (with revision) of the shard job definition (aws batch submit-job --job-definition)."
  value       = aws_batch_job_definition.shard.arn
}

output "job_definition_name" {
  description = "Name of the shard job definition (the latest active revision is used when submitting by name)."
  value       = aws_batch_job_definition.shard.name
}

output "ecr_repository_url" {
  description = "Push the CUDA image here: <url>:<image_tag>."
  value       = aws_ecr_repository.this.repository_url
}

output "output_url" {
  description = "Where the jobs publish masks: the static catalog root (stac-clouds2mask plan --masks)."
  value       = "s3://${local.output_bucket}/${var.output_prefix}"
}

output "plan_url_prefix" {
  description = "Where plans go (stac-clouds2mask plan --output <prefix>/<name>/); the jobs can read only here."
  value       = "s3://${local.plan_bucket}/${var.plan_prefix}"
}

output "log_group_name" {
  description = "CloudWatch log group of the jobs."
  value       = aws_cloudwatch_log_group.jobs.name
}

output "job_role_arn" {
  description = "Role the containers run with (read sources and plans, write the output prefix)."
  value       = aws_iam_role.job.arn
}

output "kms_key_arn" {
  description = "KMS key of the output bucket (when created), the images and the logs."
  value       = aws_kms_key.this.arn
}

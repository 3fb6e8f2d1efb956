output "job_queue" {
  description = "aws batch submit-job --job-queue"
  value       = module.clouds2mask.job_queue_name
}

output "job_definition" {
  description = "aws batch submit-job --job-definition"
  value       = module.clouds2mask.job_definition_name
}

output "ecr_repository_url" {
  description = "Push the CUDA image here."
  value       = module.clouds2mask.ecr_repository_url
}

output "output_url" {
  description = "stac-clouds2mask plan --masks"
  value       = module.clouds2mask.output_url
}

output "plan_url_prefix" {
  description = "stac-clouds2mask plan --output <this>/<plan name>/"
  value       = module.clouds2mask.plan_url_prefix
}

output "log_group_name" {
  description = "CloudWatch log group of the jobs."
  value       = module.clouds2mask.log_group_name
}

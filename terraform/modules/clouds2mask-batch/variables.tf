variable "name" {
  description = "Name prefix of every resource (ECR repository, bucket, compute environment, queue, job definition, roles, log group). Lower case letters, digits and hyphens."
  type        = string
  default     = "stac-clouds2mask"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 characters: lower case letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the GPU instances (for their security group)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets the GPU instances start in: private subnets with a NAT gateway or VPC endpoints for S3 (gateway), ECR (api, dkr) and CloudWatch Logs. Use several availability zones to find spot capacity."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "create_output_bucket" {
  description = "Create the output bucket (versioned, KMS-encrypted, private). false: use the existing bucket named in output_bucket_name."
  type        = bool
  default     = true
}

variable "output_bucket_name" {
  description = "Output bucket name. With create_output_bucket = true it defaults to '<name>-<account id>-<region>'; with false it must name the existing bucket."
  type        = string
  default     = null
}

variable "output_prefix" {
  description = "Key prefix the jobs publish masks under (the static catalog root: s3://<bucket>/<prefix>/catalog.json). The job role may write here and nowhere else."
  type        = string
  default     = "cloudmasks"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.output_prefix)) && !can(regex("\\*", var.output_prefix))
    error_message = "output_prefix must be a non-empty key prefix without leading or trailing '/' and without '*'."
  }
}

variable "output_kms_key_arn" {
  description = "KMS key of an existing output bucket that uses SSE-KMS (the job role gets encrypt/decrypt on it). Ignored when the module creates the bucket (it uses its own key)."
  type        = string
  default     = null
}

variable "plan_bucket_name" {
  description = "Bucket holding the plans written by `stac-clouds2mask plan` (default: the output bucket). The job role may only read it, under plan_prefix."
  type        = string
  default     = null
}

variable "plan_prefix" {
  description = "Key prefix of the plans (e.g. s3://<plan bucket>/plans/2024-summer/manifest.json)."
  type        = string
  default     = "plans"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.'()-]+(/[A-Za-z0-9!_.'()-]+)*$", var.plan_prefix))
    error_message = "plan_prefix must be a non-empty key prefix without leading or trailing '/' and without '*'."
  }
}

variable "source_buckets" {
  description = "Buckets the jobs read Sentinel-2 items and bands from (read only). Requester-pays buckets such as sentinel-s2-l1c (L1C JP2, eu-central-1) bill this account for the reads; sentinel-cogs holds public L2A COGs."
  type        = list(string)
  default     = ["sentinel-s2-l1c", "sentinel-cogs"]
}

variable "instance_types" {
  description = "GPU instance types for the compute environment (g5: NVIDIA A10G, g6: NVIDIA L4). One GPU each by default; bigger sizes add CPU and memory, not GPUs."
  type        = list(string)
  default     = ["g6.xlarge", "g6.2xlarge", "g5.xlarge", "g5.2xlarge"]

  validation {
    condition     = alltrue([for t in var.instance_types : can(regex("^(g5|g6|g6e)\\.", t))])
    error_message = "instance_types must be g5, g6 or g6e types."
  }
}

variable "use_spot" {
  description = "Run on spot instances (about 60-70 % cheaper; interrupted jobs are retried, done items are skipped). false: on-demand."
  type        = bool
  default     = true
}

variable "max_vcpus" {
  description = "Upper bound of the fleet in vCPUs (g6.xlarge: 4 vCPUs, 1 GPU). The minimum is 0: no instance runs, and nothing is billed for compute, while the queue is empty."
  type        = number
  default     = 64

  validation {
    condition     = var.max_vcpus >= 4
    error_message = "max_vcpus must be at least 4 (one g5/g6.xlarge)."
  }
}

variable "root_volume_gib" {
  description = "Encrypted gp3 root volume of each instance in GiB (the CUDA image is about 10 GiB)."
  type        = number
  default     = 100
}

variable "image_tag" {
  description = "Tag of the CUDA image in the ECR repository that the job definition runs (tags are immutable: push a new tag per release)."
  type        = string
  default     = "0.1.0"
}

variable "clouds2mask_environment" {
  description = "Extra STAC_CLOUDS2MASK_* variables for every job: allowlists and limits (docs/aws-batch.md section 6a), e.g. STAC_CLOUDS2MASK_ALLOWED_HOSTS. No secrets here."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for name in keys(var.clouds2mask_environment) : startswith(name, "STAC_CLOUDS2MASK_") && name != "STAC_CLOUDS2MASK_API_TOKEN"])
    error_message = "Only STAC_CLOUDS2MASK_* variables, and never the API token (a secret: use a Secrets Manager reference)."
  }
}

variable "job_vcpus" {
  description = "vCPUs per job (reading and COG writing run on the CPU while the GPU infers)."
  type        = number
  default     = 4
}

variable "job_memory_mib" {
  description = "Memory per job in MiB; leave room for the ECS agent (a g6.xlarge has 16 GiB)."
  type        = number
  default     = 14336
}

variable "job_attempts" {
  description = "Attempts per array child. Retries happen only when the host went away (spot interruption, instance failure); a job that ran and failed items is not retried (rerun it after a look at `status`)."
  type        = number
  default     = 3

  validation {
    condition     = var.job_attempts >= 1 && var.job_attempts <= 10
    error_message = "job_attempts must be 1 to 10 (AWS Batch's range)."
  }
}

variable "job_timeout_seconds" {
  description = "Time limit of one attempt of one shard; size shards so that one fits (about items per shard x seconds per scene x 2)."
  type        = number
  default     = 14400

  validation {
    condition     = var.job_timeout_seconds >= 60
    error_message = "job_timeout_seconds must be at least 60 (AWS Batch's minimum)."
  }
}

variable "log_retention_days" {
  description = "Retention of the job logs in CloudWatch Logs, in days."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

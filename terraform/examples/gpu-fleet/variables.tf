variable "region" {
  description = "AWS region of the fleet; eu-central-1 is next to the requester-pays L1C bucket (no inter-region transfer charges)."
  type        = string
  default     = "eu-central-1"
}

variable "project" {
  description = "Name prefix of the resources."
  type        = string
  default     = "stac-clouds2mask"
}

variable "vpc_id" {
  description = "VPC for the GPU instances."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (several availability zones) with a NAT gateway or VPC endpoints for S3, ECR and CloudWatch Logs."
  type        = list(string)
}

variable "output_prefix" {
  description = "Key prefix of the masks' static catalog in the output bucket."
  type        = string
  default     = "cloudmasks"
}

variable "plan_prefix" {
  description = "Key prefix of the plans in the output bucket."
  type        = string
  default     = "plans"
}

variable "source_buckets" {
  description = "Buckets the jobs read Sentinel-2 data from."
  type        = list(string)
  default     = ["sentinel-s2-l1c", "sentinel-cogs"]
}

variable "instance_types" {
  description = "GPU instance types (g5/g6 families)."
  type        = list(string)
  default     = ["g6.xlarge", "g5.xlarge"]
}

variable "use_spot" {
  description = "Spot (true) or on-demand (false) instances."
  type        = bool
  default     = true
}

variable "max_vcpus" {
  description = "Fleet ceiling in vCPUs: 64 = 16 single-GPU xlarge instances at once."
  type        = number
  default     = 64
}

variable "image_tag" {
  description = "CUDA image tag pushed to the ECR repository (make -C docker push ...)."
  type        = string
  default     = "0.1.0"
}

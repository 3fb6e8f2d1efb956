# Example root: a spot GPU fleet in eu-central-1 (where the requester-pays L1C bucket lives) that
# publishes masks to a new bucket. Copy terraform.tfvars.example to terraform.tfvars, fill in the
# VPC and subnets, then: terraform init && terraform apply. Next steps: docs/aws-batch.md.

provider "aws" {
  region = var.region

  default_tags {
    tags = { "project" = var.project }
  }
}

module "clouds2mask" {
  source = "../../modules/clouds2mask-batch"

  name           = var.project
  vpc_id         = var.vpc_id
  subnet_ids     = var.subnet_ids
  output_prefix  = var.output_prefix
  plan_prefix    = var.plan_prefix
  source_buckets = var.source_buckets
  instance_types = var.instance_types
  use_spot       = var.use_spot
  max_vcpus      = var.max_vcpus
  image_tag      = var.image_tag
}

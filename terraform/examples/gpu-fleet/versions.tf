terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80.0, < 6.0.0" # 6.x renames the compute environment name arguments
    }
  }

  # keep the state remote and locked for a shared fleet, e.g.
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "stac-clouds2mask/terraform.tfstate"
  #   region       = "eu-central-1"
  #   use_lockfile = true
  # }
}

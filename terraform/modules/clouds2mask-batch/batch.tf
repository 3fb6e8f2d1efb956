# GPU compute environment (scales to 0 vCPUs when idle), job queue and job definition.

resource "aws_security_group" "instances" {
  name        = "${var.name}-instances"
  description = "stac-clouds2mask GPU instances: no inbound; HTTPS out to S3, ECR, CloudWatch Logs and STAC APIs"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs (S3, ECR, CloudWatch Logs, ECS) and STAC APIs"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = local.tags
}

resource "aws_launch_template" "instances" {
  name_prefix = "${var.name}-"
  description = "stac-clouds2mask GPU instances: IMDSv2 only, encrypted gp3 root volume"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1 # containers cannot reach IMDS (and the instance role): jobs get the job role from ECS
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gib
      volume_type           = "gp3"
      encrypted             = true # the account's EBS key: a customer key would need grants for the EC2 Fleet service-linked role
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = local.tags
  }

  tags = local.tags
}

resource "aws_batch_compute_environment" "gpu" {
  compute_environment_name_prefix = "${var.name}-gpu-"
  type                            = "MANAGED"
  state                           = "ENABLED"

  compute_resources {
    type                = var.use_spot ? "SPOT" : "EC2"
    allocation_strategy = var.use_spot ? "SPOT_PRICE_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE"
    min_vcpus           = 0 # nothing runs, nothing is billed, while the queue is empty
    max_vcpus           = var.max_vcpus
    instance_type       = var.instance_types
    subnets             = var.subnet_ids
    security_group_ids  = [aws_security_group.instances.id]
    instance_role       = aws_iam_instance_profile.instance.arn

    ec2_configuration {
      image_type = "ECS_AL2023_NVIDIA" # ECS GPU-optimized Amazon Linux 2023: NVIDIA driver + container toolkit
    }

    launch_template {
      launch_template_id = aws_launch_template.instances.id
      version            = aws_launch_template.instances.latest_version
    }

    tags = local.tags
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
    ignore_changes        = [compute_resources[0].desired_vcpus]
  }
}

resource "aws_batch_job_queue" "gpu" {
  name     = "${var.name}-gpu"
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.gpu.arn
  }

  tags = local.tags
}

resource "aws_batch_job_definition" "shard" {
  name                  = "${var.name}-shard"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true

  # submit with: --parameters plan=s3://<plan bucket>/<plan prefix>/<plan>/ --array-properties size=<shards>
  parameters = {
    plan = "s3://${local.plan_bucket}/${var.plan_prefix}/"
  }

  container_properties = jsonencode({
    image            = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    command          = ["run-shard", "Ref::plan"]
    jobRoleArn       = aws_iam_role.job.arn
    executionRoleArn = aws_iam_role.execution.arn
    user             = "10001"
    privileged       = false
    resourceRequirements = [
      { type = "GPU", value = "1" },
      { type = "VCPU", value = tostring(var.job_vcpus) },
      { type = "MEMORY", value = tostring(var.job_memory_mib) },
    ]
    # trust boundary (docs/aws-batch.md section 6a): payloads may only write under the output prefix;
    # clouds2mask_environment adds the rest (STAC_CLOUDS2MASK_ALLOWED_HOSTS, limits, ...)
    environment = concat([
      { name = "AWS_DEFAULT_REGION", value = local.region },
      { name = "OMP_NUM_THREADS", value = tostring(var.job_vcpus) },
      { name = "STAC_CLOUDS2MASK_OUTPUT_ROOTS", value = "s3://${local.output_bucket}/${var.output_prefix}" },
    ], [for name, value in var.clouds2mask_environment : { name = name, value = value }])
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.jobs.name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "shard"
      }
    }
  })

  # retry only when the host went away (spot interruption, instance failure); a shard that ran and
  # failed some items exits 1 and is not retried: look at `status`, fix, rerun those indices
  retry_strategy {
    attempts = var.job_attempts
    evaluate_on_exit {
      on_status_reason = "Host EC2*"
      action           = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "CannotPullContainerError*"
      action    = "RETRY"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "EXIT"
    }
  }

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }

  tags = local.tags
}

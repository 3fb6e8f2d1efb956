# Roles. The job role is what the container's code may do: read the sources and the plans, write
# the masks under the output prefix, nothing else. The execution role pulls the image and writes
# the logs; the instance role is the standard one of ECS container instances.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# job role
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "job" {
  # source scenes: Sentinel-2 buckets (requester-pays ones bill this account for the reads)
  statement {
    sid       = "ReadSourceObjects"
    actions   = ["s3:GetObject"]
    resources = local.source_object_arns
  }
  statement {
    sid       = "ListSourceBuckets"
    actions   = ["s3:ListBucket"]
    resources = local.source_bucket_arns
  }

  # plans: read only, under the plan prefix
  statement {
    sid       = "ReadPlans"
    actions   = ["s3:GetObject"]
    resources = [local.plan_objects_arn]
  }
  statement {
    sid       = "ListPlans"
    actions   = ["s3:ListBucket"]
    resources = [local.plan_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.plan_prefix, "${var.plan_prefix}/*"]
    }
  }

  # outputs: COGs, items, collections, catalog and run records, under the output prefix only
  # (objects are written under a temporary key and moved: copy + delete)
  statement {
    sid       = "WriteOutputPrefix"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = [local.output_objects_arn]
  }
  statement {
    sid       = "ListOutputPrefix"
    actions   = ["s3:ListBucket"]
    resources = [local.output_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.output_prefix, "${var.output_prefix}/*"]
    }
  }

  # the output bucket's KMS key, for S3 only
  dynamic "statement" {
    for_each = length(local.output_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "OutputKmsViaS3"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.output_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "job" {
  name               = "${var.name}-job"
  description        = "stac-clouds2mask jobs: read sources and plans, write masks under s3://${local.output_bucket}/${var.output_prefix}/"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "job" {
  name   = "read-sources-and-plans-write-output-prefix"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# ---------------------------------------------------------------------------------------------
# execution role: pull the image, write the logs
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid       = "PullTheImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.this.arn]
  }
  statement {
    sid       = "DecryptTheImage"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this.arn]
  }
  statement {
    sid       = "WriteJobLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.jobs.arn}:*"]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  description        = "stac-clouds2mask jobs: pull the image from ECR, write the job logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-image-write-logs"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------------------------
# instance role of the GPU instances (ECS container instances)
# ---------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  description        = "stac-clouds2mask GPU instances: join the ECS cluster of the compute environment"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "instance_ecs" {
  role       = aws_iam_role.instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
  tags = local.tags
}

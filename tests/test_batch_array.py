"""The AWS Batch array job end to end on local stand-ins: `plan` writes the shards to moto S3, the job queue
and job definition of terraform/ (parsed from the HCL) are registered in moto's Batch backend, and moto
runs the CPU image once per array child as a real container on the host network. Then `status` must
report every item done, the catalog must be complete, and a rerun of one child after deleting its
outputs must restore them.

Stand-ins (what real AWS provides otherwise): moto S3 and its dummy credentials in the job's
environment (the job role on AWS), an UNMANAGED compute environment (moto cannot start GPU instances),
the local CPU image for the ECR image, one torch thread per child (this machine has 2 cores).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import boto3
import hcl2
import pytest
from servers import upload_tree
from test_terraform import MODULE, blocks, clean, load
from typer.testing import CliRunner

from stac_clouds2mask.cli import app
from stac_clouds2mask.search import search

D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
E = "s2b-t32upc-20200406-l1c-n0209-10x10"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"
G = "ccd-s2-l2a-20200403-epsg32737-512-labelled"
A = "s2a-t19udp-20170729-l1c-160m"  # in the collection, not planned
COLLECTION = {
    D: "sentinel-2-l1c-samples",
    E: "sentinel-2-l1c-samples",
    F: "sentinel-2-l2a-samples",
    G: "sentinel-2-l2a-samples",
}
SHARDS = 3
JOB_TIMEOUT_S = 600


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Terraform interpolations replaced by the stand-ins' values; KeyError names a reference not covered."""
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if isinstance(value, str):
        return re.sub(r"\$\{([^{}]+)\}", lambda m: refs[m.group(1)], value)
    return value


def terraform_refs(stand_ins: dict[str, str]) -> dict[str, str]:
    """The stand-ins' values plus every variable's default (as ``var.X`` and ``tostring(var.X)``)."""
    refs = dict(stand_ins)
    for block in load(MODULE)["variable"]:
        for name, body in block.items():
            if "default" in body and not isinstance(body["default"], (dict, list)):
                refs.setdefault(f"var.{name}", str(body["default"]))
                refs.setdefault(f"tostring(var.{name})", str(body["default"]))
    return refs


def variable_default(name: str) -> Any:
    for block in load(MODULE)["variable"]:
        if name in block:
            return block[name].get("default")
    raise KeyError(f"var.{name}")


def resolve_environment(expression: str, refs: dict[str, str]) -> list[dict[str, str]]:
    """The job definition's ``environment``: ``concat([{name, value}...], [for name, value in var.X : ...])``,
    the listed entries resolved and the map variable's default entries appended."""
    m = re.fullmatch(
        r"\$\{concat\((\[.*\]), \[for name, value in var\.(\w+) : \{name = name, value = value\}\]\)\}",
        expression,
        re.S,
    )
    assert m, f"unexpected environment expression: {expression[:200]}"
    listed = resolve(clean(hcl2.loads("x = " + m.group(1)))["x"], refs)
    extra = variable_default(m.group(2)) or {}
    return [*listed, *({"name": k, "value": str(v)} for k, v in extra.items())]


def terraform_resource(type_: str, name: str) -> dict[str, Any]:
    return blocks(load(MODULE), "resource", type_)[name]


def terraform_job_queue(refs: dict[str, str]) -> dict[str, Any]:
    """aws_batch_job_queue.gpu as boto3 create_job_queue arguments."""
    queue = {k: resolve(v, refs) for k, v in terraform_resource("aws_batch_job_queue", "gpu").items() if k != "tags"}
    return {
        "jobQueueName": queue["name"],
        "state": queue["state"],
        "priority": int(queue["priority"]),
        "computeEnvironmentOrder": [
            {"order": int(o["order"]), "computeEnvironment": o["compute_environment"]}
            for o in queue["compute_environment_order"]
        ],
    }


def terraform_job_definition(refs: dict[str, str]) -> dict[str, Any]:
    """aws_batch_job_definition.shard as boto3 register_job_definition arguments; its container properties are
    the HCL object inside jsonencode(...), parsed by python-hcl2."""
    job = terraform_resource("aws_batch_job_definition", "shard")
    props = job["container_properties"]
    assert props.startswith("${jsonencode(") and props.endswith(")}")
    container = clean(hcl2.loads("x = " + props[len("${jsonencode(") : -2]))["x"]
    environment = resolve_environment(container.pop("environment"), refs)
    container = {**resolve(container, refs), "environment": environment}
    [retry] = job["retry_strategy"]
    rules = [{camel(k): v for k, v in rule.items()} for rule in retry["evaluate_on_exit"]]
    return {
        "jobDefinitionName": resolve(job["name"], refs),
        "type": job["type"],
        "platformCapabilities": job["platform_capabilities"],
        "propagateTags": job["propagate_tags"],
        "parameters": resolve(job["parameters"], refs),
        "containerProperties": container,
        "retryStrategy": {"attempts": int(resolve(retry["attempts"], refs)), "evaluateOnExit": rules},
        "timeout": {"attemptDurationSeconds": int(resolve(job["timeout"][0]["attempt_duration_seconds"], refs))},
    }


def wait_for(client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The jobs once all have stopped (SUCCEEDED or FAILED)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        jobs = {j["jobId"]: j for j in client.describe_jobs(jobs=job_ids)["jobs"]}
        if len(jobs) == len(job_ids) and all(j["status"] in ("SUCCEEDED", "FAILED") for j in jobs.values()):
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"jobs still running after {JOB_TIMEOUT_S}s: {[(i, j['status']) for i, j in jobs.items()]}")
        time.sleep(1)


def job_logs(job: dict[str, Any]) -> str:
    """The container output moto copied into CloudWatch Logs (for failure messages)."""
    stream = job.get("container", {}).get("logStreamName")
    if not stream:
        return "(no log stream)"
    events = boto3.client("logs").get_log_events(logGroupName="/aws/batch/job", logStreamName=stream)["events"]
    return "\n".join(e["message"] for e in events[-40:])


def assert_succeeded(jobs: dict[str, dict[str, Any]]) -> None:
    failed = {i: j for i, j in jobs.items() if j["status"] != "SUCCEEDED"}
    assert not failed, "\n\n".join(
        f"{i} {j['status']} {j.get('statusReason', '')}:\n{job_logs(j)}" for i, j in failed.items()
    )


def test_array_job_on_moto_batch_masks_every_shard_and_a_child_rerun_restores_its_outputs(
    cpu_image, moto_s3, s3_bucket, sample_data_dir, monkeypatch
):
    monkeypatch.setenv("MOTO_DOCKER_NETWORK_MODE", "host")  # children reach moto S3 on 127.0.0.1
    fs = moto_s3.filesystem()
    for folder in ("sentinel-2-l1c-samples", "sentinel-2-l2a-samples", A, D, E, F, G):
        upload_tree(fs, sample_data_dir / folder, f"{s3_bucket}/data/{folder}")
    fs.put_file(str(sample_data_dir / "catalog.json"), f"{s3_bucket}/data/catalog.json")
    # the masks go where the job definition lets payloads write (STAC_CLOUDS2MASK_OUTPUT_ROOTS)
    output_prefix = variable_default("output_prefix")
    plan_url, masks = f"s3://{s3_bucket}/plans/e2e/", f"s3://{s3_bucket}/{output_prefix}"
    result = invoke(
        "plan",
        f"s3://{s3_bucket}/data/catalog.json",
        "--ids",
        f"{D},{E},{F},{G}",
        "--shards",
        str(SHARDS),
        "--output",
        plan_url,
        "--masks",
        masks,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["shards"] == SHARDS and summary["items"] == 4

    iam = boto3.client("iam")
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    roles = {
        name: iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        for name in ("batch-service", "job", "execution")
    }
    client = boto3.client("batch")
    repository, _, tag = cpu_image.rpartition(":")
    refs = terraform_refs(
        {
            "aws_ecr_repository.this.repository_url": repository,
            "var.image_tag": tag,
            "aws_iam_role.job.arn": roles["job"],
            "aws_iam_role.execution.arn": roles["execution"],
            "local.region": "us-east-1",
            "local.plan_bucket": s3_bucket,
            "local.output_bucket": s3_bucket,
            "aws_cloudwatch_log_group.jobs.name": "/aws/batch/stac-clouds2mask",
        }
    )
    ce_body = terraform_resource("aws_batch_compute_environment", "gpu")
    prefix = resolve(ce_body["compute_environment_name_prefix"], refs)
    ce = client.create_compute_environment(
        computeEnvironmentName=f"{prefix}moto", type="UNMANAGED", state="ENABLED", serviceRole=roles["batch-service"]
    )
    refs["aws_batch_compute_environment.gpu.arn"] = ce["computeEnvironmentArn"]
    job_queue, job_definition = terraform_job_queue(refs), terraform_job_definition(refs)
    container = job_definition["containerProperties"]
    assert container["command"] == ["run-shard", "Ref::plan"] and container["image"] == cpu_image
    assert {"name": "STAC_CLOUDS2MASK_OUTPUT_ROOTS", "value": masks} in container["environment"]
    assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]  # moto does not schedule GPUs
    stand_ins = {k: v for k, v in moto_s3.env.items() if v is not None} | {"OMP_NUM_THREADS": "1"}
    container["environment"] = [e for e in container["environment"] if e["name"] not in stand_ins] + [
        {"name": k, "value": v} for k, v in stand_ins.items()
    ]
    client.create_job_queue(**job_queue)
    client.register_job_definition(**job_definition)

    t0 = time.monotonic()
    parent = client.submit_job(
        jobName="e2e",
        jobQueue=job_queue["jobQueueName"],
        jobDefinition=job_definition["jobDefinitionName"],
        arrayProperties={"size": SHARDS},
        parameters={"plan": plan_url},
    )["jobId"]
    children = wait_for(client, [f"{parent}:{i}" for i in range(SHARDS)])
    seconds = time.monotonic() - t0
    assert_succeeded(children)
    print(f"\n[array job] {SHARDS} children, 4 items, {seconds:.0f}s on moto Batch")

    result = invoke("status", plan_url, "--json")
    st = json.loads(result.stdout)
    assert result.exit_code == 0 and st["complete"] and st["done"] == list(range(SHARDS)), result.output
    root = f"{s3_bucket}/{output_prefix}"
    expected = sorted(f"{s}_cloudmask" for s in (D, E, F, G))
    assert sorted(i.id for i in search(f"s3://{root}/catalog.json")) == expected  # every item linked once

    # delete shard 1's outputs: status reports it missing; one job rerunning index 1 restores them
    manifest = json.loads(fs.cat(f"{s3_bucket}/plans/e2e/manifest.json"))
    lost = [key.split("/")[1] for key in manifest["shards"][1]["items"]]
    for source in lost:
        fs.rm(f"{root}/{COLLECTION[source]}-cloudmask/{source}_cloudmask", recursive=True)
    st = json.loads(invoke("status", plan_url, "--json").stdout)
    assert st["missing"] == [1] and not st["complete"]
    rerun = client.submit_job(
        jobName="e2e-1",
        jobQueue=job_queue["jobQueueName"],
        jobDefinition=job_definition["jobDefinitionName"],
        parameters={"plan": plan_url},
        containerOverrides={"command": ["run-shard", plan_url, "--index", "1"]},
    )["jobId"]
    assert_succeeded(wait_for(client, [rerun]))
    result = invoke("status", plan_url, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["complete"], result.output
    for source in lost:
        assert fs.exists(f"{root}/{COLLECTION[source]}-cloudmask/{source}_cloudmask/{source}_cloudmask.tif")
    assert sorted(i.id for i in search(f"s3://{root}/catalog.json")) == expected

#!/bin/sh
# Container entrypoint: run the stac-clouds2mask CLI from the image's virtual environment with the
# container's arguments, so `docker run IMAGE run SOURCE -o OUT`, an AWS Batch job's command
# `run-shard s3://bucket/plan/` and a laptop run use the same CLI. Exit status is the CLI's
# (0 ok, 1 some items failed, 2 bad invocation); AWS Batch retries only host/spot failures.
#
#   CLOUDS2MASK_VENV  virtual environment holding the CLI (default /opt/venv)
#
# No credentials live in the image: on AWS Batch the job role provides them; locally pass
# AWS_PROFILE / AWS_* variables or mount ~/.aws read-only when you need signed S3 requests.
set -eu

venv="${CLOUDS2MASK_VENV:-/opt/venv}"
cli="$venv/bin/stac-clouds2mask"
if [ ! -x "$cli" ]; then
    echo "entrypoint: $cli not found or not executable (CLOUDS2MASK_VENV=$venv)" >&2
    exit 127
fi
# the engine takes a thread per core the container was given (cpuset, --cpus quota); OMP_NUM_THREADS caps it.
exec "$cli" "$@"

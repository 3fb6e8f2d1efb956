"""Docker for the container tests (no test functions here): whether an engine answers, the CPU image and
runs of it. The image is built once per session by docker/build-local.sh, as users build it here, or
taken from $STAC_CLOUDS2MASK_IMAGE when that names one already built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_LOCAL = REPO / "docker" / "build-local.sh"
IMAGE_ENV = "STAC_CLOUDS2MASK_IMAGE"
# .ci/run starts dockerd and sets this: there a missing engine is a failure, not a skip
REQUIRE_ENV = "STAC_CLOUDS2MASK_REQUIRE_DOCKER"


def engine_problem() -> str | None:
    """Why no container can run here (None when a Docker engine answers)."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH (install Debian's docker.io and start dockerd as root)"
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"no Docker engine answers ({reason}); start dockerd as root"
    return None


def cpu_image(log_dir: Path) -> tuple[str, float]:
    """The CPU image reference and the seconds it took to build (0 when given); RuntimeError with the
    build log's tail when the build fails."""
    given = os.environ.get(IMAGE_ENV)
    if given:
        if subprocess.run(["docker", "image", "inspect", given], capture_output=True).returncode != 0:
            raise RuntimeError(f"${IMAGE_ENV}={given} names no image known to the Docker engine")
        return given, 0.0
    log = log_dir / "build-local.log"
    t0 = time.monotonic()
    with log.open("w") as err:
        result = subprocess.run(
            ["bash", str(BUILD_LOCAL)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=1800,
            stdin=subprocess.DEVNULL,
        )
    if result.returncode != 0 or not result.stdout.strip():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"docker/build-local.sh failed (exit {result.returncode}); log {log}:\n{tail}")
    return result.stdout.strip().splitlines()[-1], time.monotonic() - t0


def docker_run(
    image: str,
    *args: str,
    network: str = "none",
    volumes: dict[Path, str] | None = None,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """``docker run --rm`` of the image with its entrypoint, read-only root file system, a /tmp tmpfs."""
    cmd = ["docker", "run", "--rm", "--network", network, "--read-only", "--tmpfs", "/tmp", *extra]
    for host, target in (volumes or {}).items():
        cmd += ["-v", f"{host}:{target}"]
    for name, value in (env or {}).items():
        cmd += ["-e", f"{name}={value}"]
    return subprocess.run([*cmd, image, *args], capture_output=True, text=True, timeout=timeout)

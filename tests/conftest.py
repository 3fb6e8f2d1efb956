"""Session fixtures: shared data paths, real servers (moto S3, stac-fastapi-pgstac), schema validation.

Servers are started lazily by the first test that asks for them and stopped at session end
(also when tests fail). See tests/servers.py and DESIGN.md section 8.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import containers  # noqa: E402
import servers  # noqa: E402
import stac_fields  # noqa: E402
import stac_schemas  # noqa: E402
from servers import MotoS3, StacApi, upload_tree  # noqa: E402,F401  (re-exported for tests)

# ------------------------------------------------------------------------------------------
# shared data
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared/ folder: $STAC_CLOUDS2MASK_SHARED, else the repo's sibling ../shared."""
    path = stac_schemas.shared_dir()
    if not path.is_dir():
        pytest.fail(
            f"shared data folder {path} not found: set STAC_CLOUDS2MASK_SHARED to the "
            "folder holding data/ and stac-schemas/"
        )
    return path


@pytest.fixture(scope="session")
def sample_data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


def item_dict(sample_data_dir: Path, item_id: str) -> dict[str, Any]:
    """A sample item's JSON with absolute asset hrefs and no links, ready to go into an ItemCollection."""
    import json

    d = json.loads((sample_data_dir / item_id / f"{item_id}.json").read_text())
    for asset in d["assets"].values():
        asset["href"] = str(sample_data_dir / item_id / Path(asset["href"]).name)
    d["links"] = []
    return d


def unchanged_items(items: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """For module-scoped fixtures of pystac Items: yields them, and fails at teardown if a test changed
    one (tests change clones), so no result depends on which tests ran before."""
    import json

    def state(item: Any) -> str:
        return json.dumps(item.to_dict(transform_hrefs=False), sort_keys=True, default=str)

    before = {key: state(item) for key, item in items.items()}
    yield items
    changed = sorted(key for key, item in items.items() if state(item) != before[key])
    assert not changed, f"a test changed the shared items {changed}: change a clone() instead"


@pytest.fixture(scope="session")
def sample_catalog(shared_dir: Path) -> Path:
    """shared/data/catalog.json (STAC 1.1.0 static catalog, relative links)."""
    return shared_dir / "data" / "catalog.json"


# ------------------------------------------------------------------------------------------
# STAC validation (offline)
# ------------------------------------------------------------------------------------------


def validate_published(d: dict[str, Any]) -> None:
    """Offline STAC validation, then what it cannot see: every extension field's extension declared
    and the clouds2mask:* fields as the package's own schema says (tests/stac_fields.py)."""
    stac_schemas.validate_stac(d)
    stac_fields.check_published(d)


@pytest.fixture(scope="session")
def validate_stac() -> Callable[[dict[str, Any]], None]:
    """``validate_stac(d)`` for documents the package published: offline STAC validation of a dict plus
    the checks of tests/stac_fields.py; raises on invalid. (Schema validation alone, for documents
    of others such as the sample data: ``from stac_schemas import validate_stac``.)"""
    return validate_published


# ------------------------------------------------------------------------------------------
# S3: moto server
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server on 127.0.0.1 for the whole session.

    Yields a :class:`servers.MotoS3` (``endpoint_url``, ``host``, ``port``, ``storage_options``,
    ``env``, ``filesystem()``, ``reset()``, ``create_bucket(name)``). While it runs the process
    environment points boto3/s3fs/GDAL at it (AWS_* dummy credentials, AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL, AWS_S3_ENDPOINT, AWS_VIRTUAL_HOSTING=FALSE, AWS_HTTPS=NO); restored after.
    """
    t0 = time.monotonic()
    s3 = servers.start_moto()
    try:
        with servers.patched_env(s3.env):
            print(f"\n[moto_s3] {s3.endpoint_url} up in {time.monotonic() - t0:.2f}s")
            yield s3
    finally:
        s3.stop()


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> str:
    """Resets moto (all buckets gone) and creates a fresh, empty bucket; returns its name."""
    moto_s3.reset()
    name = f"test-{uuid.uuid4().hex[:12]}"
    moto_s3.create_bucket(name)
    return name


@pytest.fixture
def s3fs_fs(moto_s3: MotoS3):
    """A fresh s3fs filesystem talking to the moto server."""
    return moto_s3.filesystem()


# ------------------------------------------------------------------------------------------
# STAC API: stac-fastapi-pgstac on PostgreSQL + PostGIS
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def stac_api() -> Iterator[StacApi]:
    """A running stac-fastapi-pgstac with Transactions for the whole session (a real
    PostgreSQL 15 + PostGIS + pypgstac on 127.0.0.1). Yields a :class:`servers.StacApi`:
    ``url``, ``port``, ``dsn``, ``pg`` (``env``/``port``/``dsn()``), ``session`` (requests),
    ``create_collection(dict)``, ``add_items(collection_id, [dict])``, ``update_item(dict)``,
    ``get_item(cid, iid)``, ``collection_ids()``, ``reset()`` (deletes every collection),
    ``log_tail()``, ``timings``. State persists between tests: call ``reset()`` or use
    ``clean_stac_api``."""
    try:
        api = servers.start_stac_api()
    except servers.ServerStartError as e:
        pytest.fail(f"could not start the STAC API test server: {e}", pytrace=False)
    t = api.timings
    print(
        f"\n[stac_api] {api.url} up in {t['total']:.1f}s (postgres {t['postgres']:.1f}s, "
        f"migrate {t['migrate']:.1f}s, uvicorn {t['uvicorn']:.1f}s; pgstac {api.pgstac_version})"
    )
    try:
        yield api
    finally:
        servers.stop_stac_api(api)


@pytest.fixture
def clean_stac_api(stac_api: StacApi) -> StacApi:
    """``stac_api`` emptied (all collections deleted) before the test."""
    stac_api.reset()
    return stac_api


# ------------------------------------------------------------------------------------------
# containers: a Docker engine and the CPU image
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skips (with the reason) where no Docker engine answers; fails instead under .ci/run, which starts one."""
    problem = containers.engine_problem()
    if problem is None:
        return
    if os.environ.get(containers.REQUIRE_ENV):
        pytest.fail(f"{containers.REQUIRE_ENV} is set but {problem}", pytrace=False)
    pytest.skip(f"needs a Docker engine: {problem}")


@pytest.fixture(scope="session")
def cpu_image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CPU image built from docker/Dockerfile.cpu by docker/build-local.sh (once per session)."""
    try:
        image, seconds = containers.cpu_image(tmp_path_factory.mktemp("image-build"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\n[cpu_image] {image}" + (f" built in {seconds:.0f}s" if seconds else " (given)"))
    return image


def pytest_report_header(config: pytest.Config) -> list[str]:
    env = os.environ.get("STAC_CLOUDS2MASK_SHARED", "")
    return [f"shared dir: {stac_schemas.shared_dir()} (STAC_CLOUDS2MASK_SHARED={env!r})"]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Every skipped test, named with its reason under a heading of its own at the very end, and listed in
    $STAC_CLOUDS2MASK_NOT_RUN (a file, for .ci/run's closing summary): a check that did not run (terraform
    missing, no Docker engine) must be seen, not only counted."""
    skipped = []
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        skipped.append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")
    if not skipped:
        return
    terminalreporter.section(f"NOT RUN: {len(skipped)} test(s) skipped", sep="!", bold=True, yellow=True)
    for line in skipped:
        terminalreporter.line(f"NOT RUN {line}", yellow=True)
    target = os.environ.get("STAC_CLOUDS2MASK_NOT_RUN")
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.writelines(f"{line}\n" for line in skipped)

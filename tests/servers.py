"""Start and stop the real servers the test suite runs against (no test functions here).

* S3: moto 5.2.5 in server mode, in-process (``ThreadedMotoServer``) on 127.0.0.1.
* STAC API with Transactions: stac-fastapi-pgstac 7.2.0 (uvicorn subprocess) on a throw-away
  PostgreSQL 15 + PostGIS 3 cluster (initdb into a temp dir, run as the OS user ``postgres``) with
  pypgstac 0.10.0 migrations.

Everything listens on 127.0.0.1 on free ports only. See DESIGN.md section 8. The pytest fixtures
using these helpers live in ``tests/conftest.py``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

INSTALL_HINT = "run `bash .ci/install-test-deps` (installs postgresql-15 and postgresql-15-postgis-3)"

DUMMY_KEY = "testing"
DUMMY_SECRET = "testing"
REGION = "us-east-1"


class ServerStartError(RuntimeError):
    """A test server could not be started (message says why and how to fix it)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def patched_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) environment variables; restore the old values on exit."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _piddir() -> Path | None:
    """Where .ci/run wants the PIDs of server processes (so its exit trap can kill leftovers
    if pytest itself is killed). Unset: nothing recorded."""
    d = os.environ.get("STAC_CLOUDS2MASK_PIDDIR")
    return Path(d) if d else None


def record_pid(kind: str, pid: int, cleanup_dir: Path | None = None) -> None:
    d = _piddir()
    if d is None:
        return
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{kind}-{pid}.pid").write_text(f"{pid}\n{cleanup_dir or ''}\n")


def forget_pid(kind: str, pid: int) -> None:
    d = _piddir()
    if d is not None:
        (d / f"{kind}-{pid}.pid").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# S3 (moto)
# --------------------------------------------------------------------------------------------


@dataclass
class MotoS3:
    """A running moto S3 server."""

    server: Any
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs storage options (the region comes from AWS_DEFAULT_REGION only:
        a region in client_kwargs makes bucket creation fail on moto)."""
        return {
            "key": DUMMY_KEY,
            "secret": DUMMY_SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    @property
    def env(self) -> dict[str, str | None]:
        """Environment for boto3/s3fs/GDAL (rasterio /vsis3/) to talk to this server."""
        return s3_env(self.host, self.port)

    def filesystem(self, **kwargs: Any):
        """A fresh (non-cached) s3fs filesystem talking to this server."""
        import s3fs

        opts = {**self.storage_options, "skip_instance_cache": True, **kwargs}
        return s3fs.S3FileSystem(**opts)

    def reset(self) -> None:
        """Drop every bucket and object (moto keeps state between tests otherwise)."""
        r = requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30)
        r.raise_for_status()

    def create_bucket(self, name: str) -> str:
        fs = self.filesystem()
        fs.mkdir(name)
        return name

    def stop(self) -> None:
        self.server.stop()


def s3_env(host: str, port: int) -> dict[str, str | None]:
    """Values to set (None: unset) so boto3, s3fs and GDAL use the moto server."""
    return {
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
        # GDAL (rasterio /vsis3/)
        "AWS_S3_ENDPOINT": f"{host}:{port}",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_HTTPS": "NO",
        "AWS_NO_SIGN_REQUEST": "NO",
        "AWS_REQUEST_PAYER": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    }


def start_moto(host: str = "127.0.0.1") -> MotoS3:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    h, port = server.get_host_and_port()
    return MotoS3(server=server, host=host, port=int(port))


def upload_tree(fs, local_dir: str | os.PathLike[str], s3_prefix: str) -> list[str]:
    """Copy every file under ``local_dir`` to ``s3_prefix`` ("bucket/some/prefix" or
    "s3://bucket/some/prefix"), keeping relative paths. Returns the ``s3://`` URLs written."""
    local_dir = Path(local_dir)
    prefix = s3_prefix.removeprefix("s3://").rstrip("/")
    written = []
    for path in sorted(local_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(local_dir).as_posix()
        key = f"{prefix}/{rel}"
        fs.put_file(str(path), key)
        written.append(f"s3://{key}")
    return written


# --------------------------------------------------------------------------------------------
# PostgreSQL + PostGIS
# --------------------------------------------------------------------------------------------


def find_pg_bindir() -> Path:
    """Directory holding initdb/pg_ctl/postgres. ``PG_BINDIR`` overrides."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    candidates.append("/usr/lib/postgresql/15/bin")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    for c in candidates:
        p = Path(c)
        if all((p / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return p
    raise ServerStartError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {candidates}: {INSTALL_HINT}"
    )


def pg_sharedir(bindir: Path) -> Path:
    cfg = bindir / "pg_config"
    if cfg.is_file():
        try:
            out = subprocess.run([str(cfg), "--sharedir"], capture_output=True, text=True, timeout=30).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    return Path("/usr/share/postgresql") / bindir.parent.name


def check_postgis(bindir: Path) -> None:
    control = pg_sharedir(bindir) / "extension" / "postgis.control"
    if not control.is_file():
        raise ServerStartError(f"PostGIS is not installed ({control} missing): {INSTALL_HINT}")


def _pg_user_prefix() -> list[str]:
    """initdb/postgres refuse to run as root: run them as the OS user postgres then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", "postgres"],
            check=True,
        )
    return ["runuser", "-u", "postgres", "--"]


def _run(cmd: list[str], what: str, timeout: float = 120) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise ServerStartError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    user: str = "postgres"
    password: str = "postgres"
    database: str = "pgstac"
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, database: str | None = None) -> str:
        db = database or self.database
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:]
        except OSError:
            return "(no postgres log)"

    def start(self) -> None:
        prefix = _pg_user_prefix()
        if prefix:
            shutil.chown(self.root, user="postgres", group=None)
            os.chmod(self.root, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if prefix:
            shutil.chown(pwfile, user="postgres")
        _run(
            prefix
            + [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        # Loopback only; unix socket inside our own temp dir; no durability (test data).
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        try:
            _run(
                prefix
                + [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    opts,
                ],
                "pg_ctl start",
            )
        except ServerStartError as e:
            raise ServerStartError(f"{e}\n--- postgres log ---\n{self.log_tail()}") from None
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        record_pid("postgres", self.pid, self.root.parent)

    def setup_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except psycopg.Error as e:
                raise ServerStartError(f"CREATE EXTENSION postgis failed: {e}. {INSTALL_HINT}")

    def migrate(self) -> str:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        db = PgstacDB(dsn=self.dsn())
        try:
            return Migrate(db).run_migration()
        finally:
            db.close()

    def stop(self) -> None:
        if not self.datadir.exists():
            return
        prefix = _pg_user_prefix()
        subprocess.run(
            prefix + [str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "immediate", "-w"],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if self.pid is not None:
            forget_pid("postgres", self.pid)


# --------------------------------------------------------------------------------------------
# stac-fastapi-pgstac
# --------------------------------------------------------------------------------------------


@dataclass
class StacApi:
    """A running stac-fastapi-pgstac (Transactions enabled) on its own PostgreSQL."""

    url: str
    port: int
    pg: PostgresServer
    process: subprocess.Popen
    root: Path
    pgstac_version: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def logfile(self) -> Path:
        return self.root / "uvicorn.log"

    @property
    def dsn(self) -> str:
        return self.pg.dsn()

    def log_tail(self, n: int = 6000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:]
        except OSError:
            return "(no uvicorn log)"

    def _check(self, r: requests.Response, what: str) -> requests.Response:
        if r.status_code >= 400:
            raise RuntimeError(f"STAC API {what} -> HTTP {r.status_code}: {r.text[:2000]}")
        return r

    # --- Transactions helpers -------------------------------------------------------------

    def create_collection(self, collection: dict[str, Any]) -> dict[str, Any]:
        r = self.session.post(f"{self.url}/collections", json=collection, timeout=60)
        self._check(r, f"POST /collections ({collection.get('id')})")
        return r.json()

    def add_items(self, collection_id: str, items: Iterable[dict[str, Any]]) -> None:
        items = [dict(it, collection=collection_id) for it in items]
        if not items:
            return
        if len(items) == 1:
            body: dict[str, Any] = items[0]
        else:
            body = {"type": "FeatureCollection", "features": items}
        r = self.session.post(f"{self.url}/collections/{collection_id}/items", json=body, timeout=120)
        self._check(r, f"POST /collections/{collection_id}/items")

    def update_item(self, item: dict[str, Any]) -> dict[str, Any]:
        cid, iid = item["collection"], item["id"]
        r = self.session.put(f"{self.url}/collections/{cid}/items/{iid}", json=item, timeout=60)
        self._check(r, f"PUT /collections/{cid}/items/{iid}")
        return r.json()

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any]:
        r = self.session.get(f"{self.url}/collections/{collection_id}/items/{item_id}", timeout=60)
        self._check(r, f"GET /collections/{collection_id}/items/{item_id}")
        return r.json()

    def collection_ids(self) -> list[str]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute("SELECT id FROM pgstac.collections ORDER BY id").fetchall()
        return [r[0] for r in rows]

    def reset(self) -> None:
        """Delete every collection (and so every item) through the Transactions API."""
        for cid in self.collection_ids():
            r = self.session.delete(f"{self.url}/collections/{cid}", timeout=60)
            if r.status_code != 404:
                self._check(r, f"DELETE /collections/{cid}")

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        stop_process(self.process)
        self.session.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    forget_pid("uvicorn", proc.pid)
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


def _wait_http(url: str, proc: subprocess.Popen, logfile: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: str = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"uvicorn exited with code {proc.returncode} before answering {url}\n"
                f"--- uvicorn log ---\n{logfile.read_text(errors='replace')[-6000:]}"
            )
        try:
            r = requests.get(url, timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:500]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.2)
    raise ServerStartError(
        f"STAC API at {url} did not answer within {timeout:.0f}s (last: {last})\n"
        f"--- uvicorn log ---\n{logfile.read_text(errors='replace')[-6000:]}"
    )


def start_stac_api(timeout: float = 90) -> StacApi:
    """initdb + pg_ctl start + postgis + pypgstac migrate + uvicorn. Caller must call
    :func:`stop_stac_api` (also on failure: this function cleans up after itself if it raises)."""
    bindir = find_pg_bindir()
    check_postgis(bindir)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="stac-clouds2mask-pgstac-"))
    os.chmod(root, 0o755)
    pgroot = root / "pg"
    pgroot.mkdir()
    pg = PostgresServer(bindir=bindir, root=pgroot, port=free_port())
    proc: subprocess.Popen | None = None
    try:
        pg.start()
        timings["postgres"] = time.monotonic() - t0
        t = time.monotonic()
        pg.setup_database()
        version = pg.migrate()
        timings["migrate"] = time.monotonic() - t
        t = time.monotonic()
        port = free_port()
        env = {
            **os.environ,
            **pg.env,
            "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "5",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("ENABLED_EXTENSIONS", None)
        logfile = root / "uvicorn.log"
        with open(logfile, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=root,  # no stray .env file is read by pydantic-settings
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        record_pid("uvicorn", proc.pid, root)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/", proc, logfile, timeout)
        timings["uvicorn"] = time.monotonic() - t
        timings["total"] = time.monotonic() - t0
        return StacApi(
            url=url,
            port=port,
            pg=pg,
            process=proc,
            root=root,
            pgstac_version=version,
            timings=timings,
        )
    except BaseException:
        if proc is not None:
            stop_process(proc)
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise


def stop_stac_api(api: StacApi) -> None:
    try:
        api.stop()
    finally:
        try:
            api.pg.stop()
        finally:
            shutil.rmtree(api.root, ignore_errors=True)

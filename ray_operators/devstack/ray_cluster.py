"""An embedded local Ray head for the demo, the tests and the benchmarks.

It starts ``ray start --head --block`` in its own process group on free loopback ports, with
token auth on (a fresh token in a private file), and stops it by that pid. It never touches
``~/.ray`` and never runs ``ray stop`` (which would stop every Ray cluster on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRayHead:
    """
    A single-node Ray cluster with the Jobs API on ``127.0.0.1``.

    :param workdir: folder for the token file and the head's log (created if missing).
    :param num_cpus: CPUs the node offers to tasks.
    :param object_store_memory: bytes of shared memory for Ray's object store.
    :param python_bin: folder whose ``python`` the job drivers run (default: this interpreter's).
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str],
        num_cpus: int = 2,
        object_store_memory: int = 1_500_000_000,
        python_bin: str | os.PathLike[str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.python_bin = Path(python_bin) if python_bin else Path(sys.executable).parent
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(24)
        self.dashboard_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._temp_dir: str | None = None

    @property
    def address(self) -> str:
        """The Jobs API (dashboard) address."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def token_path(self) -> Path:
        return self.workdir / "auth_token"

    @property
    def log_path(self) -> Path:
        return self.workdir / "ray-head.log"

    def connection(self, conn_id: str = "ray_default") -> dict[str, Any]:
        """The ``ray`` Airflow connection for this head, as the JSON form of ``AIRFLOW_CONN_*``."""
        return {
            "conn_type": "ray",
            "host": "127.0.0.1",
            "port": self.dashboard_port,
            "schema": "http",
            "password": self.token,
        }

    def connection_env(self, conn_id: str = "ray_default") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<ID>": json}`` to put in an environment."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(self.connection(conn_id))}

    def start(self) -> LocalRayHead:
        """Start the head and wait until its Jobs API accepts the token."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        # Ray's unix sockets live under the temp dir, whose path must stay short.
        self._temp_dir = tempfile.mkdtemp(prefix="rayh")
        self.dashboard_port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                # The job driver runs the first `python` on PATH: make it ours.
                "PATH": f"{self.python_bin}{os.pathsep}{env.get('PATH', '')}",
                "RAY_USAGE_STATS_ENABLED": "0",
            }
        )
        env.pop("RAY_ADDRESS", None)
        command = [
            str(self.python_bin / "ray"),
            "start",
            "--head",
            "--block",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_memory}",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={self._temp_dir}",
            "--disable-usage-stats",
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()  # its process group may still hold workers or agents
                raise RuntimeError(f"ray start exited with {code}; see {self.log_path}")
            if self._ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Ray head did not come up in {self.startup_timeout}s; see {self.log_path}")

    def _ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.address}/api/jobs/", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, grace: float = 20.0) -> None:
        """Stop the head by its pid: SIGTERM (Ray drains), then SIGKILL its process group."""
        process, self.process = self.process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever the head left in its own process group (workers, agents) goes too.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

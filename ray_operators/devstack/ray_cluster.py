"""A local Ray cluster for the demo, the tests and the benchmarks: a head, and worker nodes.

Each node is ``ray start --block`` in its own process group on free loopback ports, with its own
temp dir and token auth on (a fresh token in a private file), stopped by that pid. It never
touches ``~/.ray`` and never runs ``ray stop`` (which would stop every Ray cluster on the machine).

The production shape (:mod:`ray_operators.devstack.stack`) runs a head with no CPUs for tasks, as
KubeRay recommends, and a worker node that carries the CPUs and a custom resource: every Ray Data
and Ray Train task runs on the worker node, the job drivers on the head. A node's secrets (S3 keys,
the catalog credential) come from its own environment (``env``), as a real node's come from its
instance role or a secret, never from the jobs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ray_operators.devstack.ports import free_ports

#: Seconds a node gets to stop after SIGTERM before its process group is killed. ``ray start
#: --block`` stops its processes one after another, each with a grace of its own: after a demo's
#: jobs it took the whole 20 s it was once given, and 4 s when given 4. Nothing of a local node
#: needs saving (every commit is made, the temp dir is removed after), so a second is enough.
STOP_GRACE_SECONDS = 1.0

#: Ray settings that cut a local node's CPU, each overridden by the same variable in the caller's
#: environment. On a small machine (the demo on a laptop, the tests on 2 cores) every process
#: start is wall time. Measured over a whole `make test` with per-process accounting (acct(2)):
#: a quarter of the CPU went to Ray's 254 worker processes (2.1 CPU-s each, mostly their start),
#: and the log monitors of the two long-lived heads took 50 CPU-seconds. A real cluster (KubeRay)
#: keeps Ray's defaults: these are for the nodes this module starts.
LEAN_NODE_ENV = {
    # No workers started ahead of demand (when a driver connects, or for queued leases): a task
    # waits for its worker's start instead, about a second, once per worker.
    "RAY_prestart_worker_first_driver": "0",
    "RAY_enable_worker_prestart": "0",
    # The log monitor looks for new worker log files every 0.5 s, not on every pass of its loop
    # (ten or more a second; each a glob of a logs folder that grows by three files per worker).
    # It reads a new file from its start; a job's logs hold its driver's output, and the worker
    # lines the driver echoes are the ones that reach it before the driver exits, now within
    # 0.5 s of the worker's start rather than 0.1 s.
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
}


class LocalRayHead:
    """
    A single-node Ray cluster with the Jobs API on ``127.0.0.1``.

    :param workdir: folder for the token file and the head's log (created if missing).
    :param num_cpus: CPUs the node offers to tasks.
    :param object_store_memory: bytes of shared memory for Ray's object store.
    :param python_bin: folder whose ``python`` the job drivers run (default: this interpreter's).
    :param resources: custom resources the node offers (``{"lakehouse_worker": 100}``).
    :param env: environment for the node's processes on top of this one's (its secrets).
    :param token: the cluster's auth token (default: a fresh random one).
    """

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str],
        num_cpus: int = 2,
        object_store_memory: int = 1_500_000_000,
        python_bin: str | os.PathLike[str] | None = None,
        startup_timeout: float = 90.0,
        resources: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
        token: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.python_bin = Path(python_bin) if python_bin else Path(sys.executable).parent
        self.startup_timeout = startup_timeout
        self.resources = dict(resources or {})
        self.env = dict(env or {})
        self.token = token or secrets.token_hex(24)
        self.dashboard_port = 0
        self.gcs_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._temp_dir: str | None = None
        self._launched = 0.0

    @property
    def address(self) -> str:
        """The Jobs API (dashboard) address."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def gcs_address(self) -> str:
        """Where worker nodes join (``ray start --address``)."""
        return f"127.0.0.1:{self.gcs_port}"

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
        return self.launch().wait_ready()

    def launch(self) -> LocalRayHead:
        """Start the head's processes and return at once (:meth:`wait_ready` waits for it): its
        start-up (a few seconds) can run beside other work."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token_path.write_text(self.token)
        self.token_path.chmod(0o600)
        # Ray's unix sockets live under the temp dir, whose path must stay short.
        self._temp_dir = tempfile.mkdtemp(prefix="rayh")
        self.dashboard_port, self.gcs_port, client_port = free_ports(3)
        command = [
            "--head",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={client_port}",
        ]
        self.process = _start_node(self, command, taken=(self.dashboard_port, self.gcs_port, client_port))
        self._launched = time.monotonic()
        return self

    def wait_ready(self) -> LocalRayHead:
        """Wait until the launched head's Jobs API accepts the token (``startup_timeout`` from
        :meth:`launch`); a head that exits or never answers is stopped, with an error."""
        assert self.process is not None, "launch() first"
        deadline = self._launched + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()  # its process group may still hold workers or agents
                raise RuntimeError(f"ray start exited with {code}; see {self.log_path}")
            if self._ready():
                return self
            time.sleep(0.2)
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

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the head by its pid: SIGTERM (Ray drains), then SIGKILL its process group."""
        _stop_node(self.process, grace)
        self.process = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalRayWorker:
    """A worker node joined to a :class:`LocalRayHead` (``ray start --address``), with its own
    temp dir, the head's token, and custom resources to schedule work onto it.

    :param head: the running head to join.
    :param workdir: folder for the node's log (created if missing).
    :param num_cpus: CPUs the node offers to tasks.
    :param resources: custom resources (``{"lakehouse_worker": 100}``).
    :param env: environment for the node's processes on top of this one's (its secrets).
    """

    def __init__(
        self,
        head: LocalRayHead,
        *,
        workdir: str | os.PathLike[str],
        num_cpus: int = 2,
        object_store_memory: int = 1_000_000_000,
        resources: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.head = head
        self.workdir = Path(workdir)
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.resources = dict(resources or {})
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.python_bin = head.python_bin
        self.token_path = head.token_path
        self.process: subprocess.Popen[bytes] | None = None
        self._temp_dir: str | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "ray-worker.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> LocalRayWorker:
        """Join the head and wait until the cluster lists this node's resources."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._temp_dir = tempfile.mkdtemp(prefix="rayw")
        self.node_id: str | None = None  # the Ray node id, once joined
        before = self._alive_nodes()  # ids: a node killed just now may still be listed as alive
        self.process = _start_node(self, [f"--address={self.head.gcs_address}"])
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"ray start (worker) exited with {code}; see {self.log_path}")
            joined = self._alive_nodes() - before
            if joined:
                self.node_id = sorted(joined)[0]
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Ray worker did not join in {self.startup_timeout}s; see {self.log_path}")

    def _alive_nodes(self) -> set[str]:
        """Ids of the cluster's alive worker nodes (not the head)."""
        request = urllib.request.Request(
            f"{self.head.address}/nodes?view=summary",
            headers={"Authorization": f"Bearer {self.head.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                summary = json.load(response)["data"]["summary"]
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return set()
        return {
            str(node["raylet"].get("nodeId"))
            for node in summary
            if node.get("raylet", {}).get("state") == "ALIVE"
            and node["raylet"].get("nodeId")
            and not node["raylet"].get("isHeadNode")  # the head may show up late in the summary
        }

    def kill(self) -> None:
        """Kill the node at once (SIGKILL to its process group): a node lost mid-job."""
        self.stop(grace=0)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        _stop_node(self.process, grace)
        self.process = None
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalRayWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_node(
    node: LocalRayHead | LocalRayWorker, role_args: list[str], taken: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    """``ray start --block`` for a head or a worker node, in a process group of its own, on ports
    picked together (distinct from each other and from ``taken``)."""
    ports = [p for p in free_ports(4 + len(taken)) if p not in taken][:4]
    env = dict(os.environ)
    env.update(
        {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(node.token_path),
            # The job driver runs the first `python` on PATH: make it ours.
            "PATH": f"{node.python_bin}{os.pathsep}{env.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Nodes on one machine are never preempted: Ray Train's preemption watcher (an actor
            # per training run, a process start on a small machine) has nothing to watch.
            "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
            **node.env,
        }
    )
    for key, value in LEAN_NODE_ENV.items():
        env.setdefault(key, value)
    env.pop("RAY_ADDRESS", None)
    command = [
        str(node.python_bin / "ray"),
        "start",
        *role_args,
        "--block",
        f"--num-cpus={node.num_cpus}",
        "--num-gpus=0",
        f"--object-store-memory={node.object_store_memory}",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={ports[0]}",
        f"--dashboard-agent-grpc-port={ports[1]}",
        f"--runtime-env-agent-port={ports[2]}",
        f"--metrics-export-port={ports[3]}",
        f"--temp-dir={node._temp_dir}",
        "--disable-usage-stats",
    ]
    if node.resources:
        command.append(f"--resources={json.dumps(node.resources)}")
    with node.log_path.open("ab") as log:
        # Its own folder as cwd: job drivers must not import this checkout from the cwd (on a real
        # cluster there is none; the job's runtime_env brings the package).
        return subprocess.Popen(
            command, cwd=node.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop_node(process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM (Ray drains) then SIGKILL the node's process group (its workers and agents)."""
    if process is None:
        return
    if process.poll() is None and grace > 0:
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

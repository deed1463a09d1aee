"""The real Airflow stack on one machine: ``airflow standalone`` in its own home, on free ports.

Used by the asset-driven and backfill tests and by ``make airflow``: the real scheduler,
dag-processor, triggerer and API server (LocalExecutor), started in their own process group and
stopped by that pid. The metadata database is SQLite in the home by default, or PostgreSQL when
given a ``database_url`` (the tests use :class:`ray_operators.devstack.postgres.LocalPostgres`):
SQLite takes one writer at a time, so CLI commands beside the scheduler may find it locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ray_operators.devstack.ports import free_ports

#: ``[ray_lakehouse] resume_hold_seconds`` in an environment (ray_operators/triggers/_resume.py).
RESUME_HOLD_ENV = "AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS"


class StandaloneAirflow:
    """
    :param home: the AIRFLOW_HOME (created); its ``airflow.db`` is the metadata database unless
        ``database_url`` is given.
    :param dags_folder: folder the dag-processor parses.
    :param env: extra environment (connections as ``AIRFLOW_CONN_*``...).
    :param database_url: a PostgreSQL SQLAlchemy URL (``postgresql+psycopg2://USER@HOST:PORT/DB``)
        of an empty or Airflow database: Airflow's ``sql_alchemy_conn``, and what :meth:`query`
        reads (with psycopg2). ``airflow standalone`` creates or migrates the schema when it starts
        (``airflow db migrate``'s work, as it does for SQLite), before its components start.
    """

    def __init__(
        self,
        *,
        home: Path,
        dags_folder: Path,
        env: dict[str, str] | None = None,
        plugins_folder: Path | None = None,
        database_url: str | None = None,
    ) -> None:
        if database_url is not None and not database_url.startswith("postgresql"):
            raise ValueError(f"database_url must be a PostgreSQL URL, not {database_url.split(':')[0]}")
        self.home = Path(home)
        self.dags_folder = Path(dags_folder)
        self.plugins_folder = plugins_folder
        self.extra_env = dict(env or {})
        self.database_url = database_url
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._token: str | None = None
        self._first_job_id = 0
        self._ports: tuple[int, int, int] | None = None  # worker log, trigger log, health check
        self._started: list[subprocess.Popen[bytes]] = []  # components restarted by hand

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    @property
    def log_path(self) -> Path:
        return self.home / "standalone.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        # All ports picked in one go, so they are distinct (from a port given by the caller too),
        # and kept: the CLI and a restarted triggerer must agree with the running components.
        if self._ports is None:
            picked = [p for p in free_ports(5) if p != self.port]
            self.port = self.port or picked.pop()
            self._ports = (picked[0], picked[1], picked[2])
        worker_log, trigger_log, health = self._ports
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health),
                # Short loop periods: a local stack reacts within a second to a new file, a run
                # created by the CLI or the API, a trigger's event or an asset event, instead of
                # Airflow's production defaults (tens of seconds to minutes, sized for many DAGs).
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                # A worker that cannot load its DAG yet (a file parsed a moment ago) tries again
                # in 2 s, not 60.
                "AIRFLOW__WORKERS__MISSING_DAG_RETRY_DELAY": "2",
                # A worker's call to the execution API (recording a deferral, a heartbeat) that
                # times out is sent again, and the worker exits only after it: on 2 busy cores a
                # call took 9 s against the default 5 s timeout (ray_operators/triggers/_resume.py).
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
                # `airflow standalone` migrates the database before it starts its components: the
                # components and later CLI calls need not check the migrations again.
                "AIRFLOW__DATABASE__CHECK_MIGRATIONS": "False",
                "RAY_USAGE_STATS_ENABLED": "0",
                # standalone starts its components as `airflow ...` from PATH.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        if self.plugins_folder:
            env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(self.plugins_folder)
        # A real scheduler needs the resume hold (ray_operators/triggers/_resume.py): the caller's
        # own AIRFLOW__ settings (a dag.test() process may have a hold of 0) are not inherited
        # above; a hold given in ``env`` is the caller's choice, and kept.
        env.update(self.extra_env)
        if self.database_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database_url
        return env

    def start(self, timeout: float = 180.0) -> StandaloneAirflow:
        if self.process is not None and self.process.poll() is None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        # A kept metadata database may hold rows of components stopped uncleanly: only jobs
        # started from now on count as up.
        self._first_job_id = (
            max((row[0] or 0 for row in self.query("SELECT MAX(id) FROM job")), default=0) + 1
        )
        env = self.environment()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"airflow standalone exited {code}; see {self.log_path}")
            # Up means every component, the API server too: a task's worker reports to the
            # execution API, and one that starts before the API answers backs off for seconds to
            # minutes (more on a slower machine), or fails into its retry delay.
            if self._jobs_alive({"SchedulerJob", "TriggererJob", "DagProcessorJob"}) and self._api_up():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"airflow standalone did not come up in {timeout}s; see {self.log_path}")

    def _api_up(self) -> bool:
        try:
            self._http("GET", "/api/v2/version", None, None, 5)
        except (OSError, RuntimeError, ValueError):
            return False
        return True

    def _jobs_alive(self, kinds: set[str]) -> bool:
        rows = self.query("SELECT job_type FROM job WHERE state = 'running' AND id >= ?", self._first_job_id)
        return kinds <= {row[0] for row in rows}

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata database directly (no Airflow import in the caller's process).

        ``sql`` takes ``?`` placeholders on either database; a table not created yet reads as no
        rows. On PostgreSQL, JSON columns come back as their text, as SQLite returns them.
        """
        if self.database_url:
            return self._query_postgres(sql, params)
        if not self.db_path.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as conn:
                return list(conn.execute(sql, params))
        except sqlite3.OperationalError:
            return []

    def _query_postgres(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg2
        import psycopg2.errors
        import psycopg2.extras

        assert self.database_url is not None
        dsn = re.sub(r"^postgresql(\+\w+)?://", "postgresql://", self.database_url)
        conn = psycopg2.connect(dsn, connect_timeout=10)
        try:
            conn.set_session(readonly=True, autocommit=True)
            psycopg2.extras.register_default_json(conn, loads=lambda text: text)
            psycopg2.extras.register_default_jsonb(conn, loads=lambda text: text)
            with conn.cursor() as cursor:
                try:
                    if params:  # psycopg2's placeholders are %s, and a literal % is then %%
                        cursor.execute(sql.replace("%", "%%").replace("?", "%s"), params)
                    else:
                        cursor.execute(sql)
                except psycopg2.errors.UndefinedTable:
                    return []  # airflow standalone has not created the schema yet
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            conn.close()

    def cli(self, *args: str, check: bool = True, attempts: int = 5) -> subprocess.CompletedProcess[str]:
        """Run an ``airflow`` CLI command against this stack.

        SQLite allows one writer at a time and the scheduler writes often: there, a command that
        finds the database locked is tried again (``attempts`` times in all). PostgreSQL has no
        such lock: a command runs once.
        """
        if self.database_url:
            attempts = 1
        for attempt in range(1, attempts + 1):
            done = subprocess.run(
                [str(Path(sys.executable).parent / "airflow"), *args],
                env=self.environment(),
                capture_output=True,
                text=True,
            )
            if done.returncode == 0 or "database is locked" not in done.stderr or attempt == attempts:
                break
            time.sleep(2 * attempt)
        if check:
            done.check_returncode()
        return done

    # -- components -----------------------------------------------------------------------------
    def component_pids(self, name: str) -> list[int]:
        """The pids of one component (``scheduler``, ``triggerer``, ...): the ``airflow <name>``
        processes this stack started (standalone's, or restarted ones), the component's main
        process first, then its children."""
        if self.process is None:
            return []
        groups = {os.getpgid(self.process.pid), *(p.pid for p in self._started)}
        parents: dict[int, int] = {}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            pid, ppid, pgid = int(entry.name), int(stat[1]), int(stat[2])
            if pgid not in groups or stat[0] == "Z":
                continue
            parents[pid] = ppid
            # `airflow <name>` runs as `<python> <venv>/bin/airflow <name>` (or `airflow <name>`).
            if any(a.endswith(b"airflow") for a in argv[:2]) and name.encode() in argv[1:3]:
                found.append(pid)
        return sorted(found, key=lambda pid: (parents.get(pid) in found, pid))

    def restart_triggerer(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Stop the triggerer (``sig``: SIGTERM is a restart, SIGKILL a crash) and start a new one
        (in a process group of its own, which :meth:`stop` stops too); returns the new one's pid."""
        self.stop_triggerer(sig, timeout)
        return self.start_triggerer()

    def stop_triggerer(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> None:
        """Stop the running triggerer and wait until its processes are gone (SIGKILL after
        ``timeout``). Its triggers wait in the database until :meth:`start_triggerer`."""
        assert self.process is not None, "start the stack first"
        old = self.component_pids("triggerer")
        if not old:
            raise RuntimeError(f"no triggerer process in the stack; see {self.log_path}")
        os.kill(old[0], sig)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in old):
            if time.monotonic() > deadline:
                for pid in old:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.2)

    def start_triggerer(self) -> int:
        """Start a triggerer (after :meth:`stop_triggerer`); returns its pid."""
        assert self.process is not None, "start the stack first"
        log = (self.home / "triggerer-restarted.log").open("ab")
        new = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "triggerer"],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: another session's group cannot be joined
        )
        log.close()
        self._started.append(new)
        return new.pid

    # -- the REST API, as a logged-in user ----------------------------------------------------
    @property
    def passwords_path(self) -> Path:
        """Where Airflow's simple auth manager writes the generated password of ``admin``."""
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self, user: str = "admin", timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return json.loads(self.passwords_path.read_text())[user]
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no password for {user!r} in {self.passwords_path}") from None
                time.sleep(1)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """Call the REST API (``/api/v2/...``) as ``admin``, with a JWT from ``/auth/token``.

        Returns the decoded JSON answer; an error answer raises with its status and detail.
        """
        for attempt in (1, 2):
            if self._token is None:
                login = {"username": "admin", "password": self.password()}
                self._token = self._http("POST", "/auth/token", login, None, timeout)["access_token"]
            try:
                return self._http(method, path, body, self._token, timeout)
            except PermissionError:
                self._token = None  # expired: log in again, once
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _http(self, method: str, path: str, body: Any, token: str | None, timeout: float) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            # A validation error echoes the request body: never the login's (it holds the password).
            detail = "(not shown)" if path == "/auth/token" else error.read().decode(errors="replace")[:2000]
            if error.code == 401 and token:
                raise PermissionError(f"{method} {path}: 401 {detail}") from None
            raise RuntimeError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return json.loads(text) if text else None

    def wait_api(self, timeout: float = 180.0) -> None:
        """Wait until the API server answers (:meth:`start` waits for it too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._api_up():
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Airflow API did not answer at {self.url} in {timeout}s; see {self.log_path}")

    def wait_parsed(self, wanted: set[str], timeout: float = 300.0) -> set[str]:
        """Wait until the dag-processor has stored every DAG in ``wanted``; returns all DAG ids.

        A spec that fails to import breaks only its own DAG: other import errors are the caller's
        to judge (``SELECT ... FROM import_error``); they are named when ``wanted`` times out."""
        deadline = time.monotonic() + timeout
        while True:
            found = {row[0] for row in self.query("SELECT dag_id FROM dag")}
            if wanted <= found:
                return found
            if time.monotonic() > deadline:
                errors = self.query("SELECT filename, stacktrace FROM import_error")
                raise RuntimeError(
                    f"DAGs not parsed in {timeout}s: missing {sorted(wanted - found)}; import errors: "
                    f"{errors or 'none'}; see {self.log_path}"
                )
            time.sleep(0.5)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run as the UI's "Trigger" button does (``POST .../dagRuns``); returns its run id."""
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900.0) -> str:
        """Wait until the run ends; returns its state (``success`` or ``failed``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
            if rows and rows[0][0] in ("success", "failed"):
                return rows[0][0]
            time.sleep(0.5)
        raise RuntimeError(f"run {dag_id}/{run_id} did not finish in {timeout}s; see {self.log_path}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM each process group started (standalone's, and restarted components'): every
        component gets it and shuts down cleanly (ending its job row); SIGKILL what is left after
        ``grace`` seconds."""
        self._token = None
        self._ports = None  # a later start picks free ones again
        started = [p for p in (self.process, *self._started) if p is not None]
        self.process, self._started = None, []
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in started:
            # standalone itself exits at once: wait for its components, the rest of its group.
            while _group_alive(process.pid) and time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.2)  # reaps the leader, so it stops counting as alive
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> StandaloneAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":
            return True
    return False

"""The real Airflow stack on one machine: ``airflow standalone`` in its own home, on free ports.

Used by the asset-driven and backfill tests and by ``make airflow``: the real scheduler,
dag-processor, triggerer and API server (LocalExecutor), started in their own process group and
stopped by that pid. The metadata database is SQLite in the home by default, or PostgreSQL when
given a ``database_url`` (the tests use :class:`ray_operators.devstack.postgres.LocalPostgres`):
SQLite takes one writer at a time, so CLI commands beside the scheduler may find it locked.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ray_operators.devstack.ports import free_ports


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
        # All ports picked in one go, so they are distinct (from a port given by the caller too).
        picked = [p for p in free_ports(5) if p != self.port]
        self.port = self.port or picked.pop()
        worker_log, trigger_log, health = picked[:3]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "RAY_USAGE_STATS_ENABLED": "0",
                # standalone starts its components as `airflow ...` from PATH.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        if self.plugins_folder:
            env["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(self.plugins_folder)
        env.update(self.extra_env)
        if self.database_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.database_url
        return env

    def start(self, timeout: float = 180.0) -> StandaloneAirflow:
        if self.process is not None and self.process.poll() is None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
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
            if self._jobs_alive({"SchedulerJob", "TriggererJob", "DagProcessorJob"}):
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"airflow standalone did not come up in {timeout}s; see {self.log_path}")

    def _jobs_alive(self, kinds: set[str]) -> bool:
        rows = self.query("SELECT job_type FROM job WHERE state = 'running'")
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

    def stop(self, grace: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> StandaloneAirflow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Shared fixtures: a temporary Airflow home (set before Airflow is imported) and a real Ray head."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest_plugins = ["tests.helpers.iceberg_fixtures"]

REPO = Path(__file__).resolve().parent.parent
TEST_DAGS = REPO / "tests" / "dags"

# Airflow reads its configuration when first imported: point it at a throwaway home first.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "RAY_USAGE_STATS_ENABLED": "0",
        # The shipped pipeline specs read their raw data from here (make demo / make airflow set it).
        "LAKEHOUSE_RAW_ROOT": os.path.join(_AIRFLOW_HOME, "raw"),
    }
)
os.environ.pop("RAY_ADDRESS", None)

#: A token the cluster does not know; tests check it never leaks either.
BAD_TOKEN = "bad-token-0123456789abcdef"


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata database in the temporary Airflow home."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory):
    """A real local Ray head with token auth, plus ``ray_default`` and ``ray_bad`` connections."""
    from ray_operators.devstack.ray_cluster import LocalRayHead

    head = LocalRayHead(workdir=tmp_path_factory.mktemp("ray-head"), num_cpus=2).start()
    os.environ.update(head.connection_env("ray_default"))
    os.environ["AIRFLOW_CONN_RAY_BAD"] = json.dumps(dict(head.connection(), password=BAD_TOKEN))
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
def hook(ray_head):
    from ray_operators.hooks.ray import RayJobsHook

    return RayJobsHook("ray_default")


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server on loopback (``LocalPostgres``), for the real-scheduler tests.

    Each test creates its own database on it (``postgres.create_database(name)`` returns the URL).
    Skips where the server binaries or the psycopg2/asyncpg drivers are missing.
    """
    import importlib.util

    from ray_operators.devstack.postgres import INSTALL_HINT, LocalPostgres, find_postgres_bin

    if find_postgres_bin() is None:
        pytest.skip(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
    missing = [name for name in ("psycopg2", "asyncpg") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"PostgreSQL drivers missing ({', '.join(missing)}): {INSTALL_HINT}")
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.stop()

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

from tests.helpers.suite_report import (
    FileTimes,
    allowed_skip,
    ci_skip_failure,
    fast_jvm_options,
    lane_scheduler,
    skip_reason,
    under_ci,
)

pytest_plugins = ["tests.helpers.iceberg_fixtures", "tests.helpers.demo_runs", "pytester"]

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
        # dag.test() runs a deferred task and its trigger in this one process: no scheduler, so no
        # stale executor event for the hold to wait out (ray_operators/triggers/_resume.py). The
        # real-scheduler stacks (devstack/standalone.py) keep the default 10 s, and the test of
        # the hold itself sets it back (test_log_streaming.py).
        "AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS": "0",
        # Every JVM the tests start (spark-submit, local mode: one JVM a run) runs seconds, not
        # hours: C1 only and the serial collector cut its CPU by about 40% (measured on one
        # spark-submit: 29 to 18 CPU-seconds), which on 2 shared cores is wall time. Nothing a run
        # computes depends on the JIT tier or the collector.
        "JAVA_TOOL_OPTIONS": fast_jvm_options(os.environ.get("JAVA_TOOL_OPTIONS")),
    }
)
os.environ.pop("RAY_ADDRESS", None)

_FILE_TIMES = FileTimes()


class _Lanes:
    """Under pytest-xdist with ``--dist loadfile`` (``make test``: ``-n 2``), one lane per worker:
    whole files, balanced by their time budgets in tests/README.md (``lanes()`` in
    tests/helpers/suite_report.py). Static lanes keep the two longest files on two workers (xdist's
    own file scheduling hands a worker its next file before the current one ends, which could queue
    the two longest on one), keep module fixtures whole, and keep SAME_LANE files apart in time."""

    @staticmethod
    def pytest_xdist_make_scheduler(config, log):
        return lane_scheduler(config, log)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") == "loadfile":
        config.pluginmanager.register(_Lanes(), "ray-lakehouse-lanes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true, a skip outside the allowlist fails (tests/helpers/suite_report.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and under_ci():
        reason = skip_reason(report.longrepr)
        if allowed_skip(item.nodeid) is None:
            report.outcome = "failed"
            report.longrepr = ci_skip_failure(item.nodeid, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under CI=true, a module skipped as it is collected (``pytest.importorskip``, a module-level
    ``pytest.skip``) fails too, unless allowlisted."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and under_ci() and allowed_skip(report.nodeid) is None:
        report.outcome = "failed"
        report.longrepr = ci_skip_failure(report.nodeid, skip_reason(report.longrepr))


def pytest_runtest_logreport(report):
    # Under pytest-xdist the controller gets every worker's reports here: one table for the run.
    _FILE_TIMES.add(report.nodeid, report.duration)


def pytest_terminal_summary(terminalreporter):
    if _FILE_TIMES.seconds and not hasattr(terminalreporter.config, "workerinput"):
        terminalreporter.write_sep("=", "slowest test files (time budgets: tests/README.md)")
        for line in _FILE_TIMES.lines():
            terminalreporter.write_line(line)


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


#: The database on the session's PostgreSQL that holds Airflow's migrated schema, to copy.
AIRFLOW_TEMPLATE_DB = "airflow_migrated"


@pytest.fixture(scope="session")
def airflow_postgres(postgres, tmp_path_factory):
    """``new(name) -> URL``: a PostgreSQL database with Airflow's schema at head, for one stack.

    ``airflow db migrate`` runs once a session (about half a minute on 2 cores); each stack gets a
    file-level copy of that database (``CREATE DATABASE ... TEMPLATE``, well under a second), which
    ``airflow standalone`` then finds at head and does not migrate again.
    """
    url = postgres.create_database(AIRFLOW_TEMPLATE_DB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-migrate")),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]

    def new(name: str) -> str:
        return postgres.create_database(name, template=AIRFLOW_TEMPLATE_DB)

    return new

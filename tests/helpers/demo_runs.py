"""`make demo` twice on one state folder, once a session (a worker's session under xdist), shared
by the two files that need it, so the suite runs the embedded demo twice instead of five times:

- ``tests/integration/test_demo.py`` checks both runs' reports, then runs `make airflow` on their
  state. The second run is `make demo DEMO_ARGS="--curate-engine spark"` where Spark can run: the
  engine of ``spark_logs`` switches on a state the Ray engine curated, as a team moving its
  curation to Spark does, and Spark must curate the new folders only (one curation protocol,
  ``ray_operators/curation/protocol.py``, for both engines);
- ``tests/integration/test_production_shape.py`` compares `make demo-stack` with the first run's
  export, row for row.

The two files share a lane (``SAME_LANE`` in tests/helpers/suite_report.py), so one worker runs both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Raw CSV rows per batch.
ROWS = 400


def clean_env() -> dict[str, str]:
    """This environment without the test suite's Airflow, Ray and lakehouse settings: as a user's
    shell. A developer's own ``RAY_LAKEHOUSE_*`` settings stay (``RAY_LAKEHOUSE_SPARK_HOME``,
    ``RAY_LAKEHOUSE_SQLITE_JDBC_JAR``: where Spark is, which decides the second run's engine)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RAY_LAKEHOUSE_") or not k.startswith(("AIRFLOW", "RAY_", "LAKEHOUSE_"))
    }


def run_demo(
    state: Path, report: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[dict, str, str]:
    """``python -m ray_operators.devstack.demo`` (what `make demo` runs) at ROWS rows: its JSON
    report, its stdout and its stderr. Fails with the output's tail when it fails."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_operators.devstack.demo",
            "--state-dir",
            str(state),
            "--rows",
            str(ROWS),
            "--json",
            str(report),
            *extra,
        ],
        cwd=REPO,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    return json.loads(report.read_text()), done.stdout, done.stderr


def demo_catalog(state: Path) -> Any:
    from pyiceberg.catalog import load_catalog

    return load_catalog(
        "iceberg_default",
        type="sql",
        uri=f"sqlite:///{state / 'lakehouse' / 'catalog.db'}",
        warehouse=f"file://{state / 'lakehouse' / 'warehouse'}",
    )


@dataclass
class DemoRuns:
    state: Path
    first: dict[str, Any]
    first_stdout: str
    #: The first run's tables as parquet files (``--export``), as the production shape compares them.
    first_export: Path
    #: Rows of the curated and quarantine tables right after the first run, read from the catalog.
    first_rows: dict[str, int]
    second: dict[str, Any]
    second_stdout: str
    #: ``spark`` where Spark can run here (``runtime.missing()`` is None), else ``ray``.
    second_engine: str
    #: ``pgrep -f STATE`` right after the second run: what the runs left running (nothing).
    leftovers: str
    #: The summary of ``logs.spark``'s head snapshot right after the second run.
    second_logs_head: dict[str, str]


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    root = tmp_path_factory.mktemp("demo")
    state = root / "state"
    first, first_stdout, _ = run_demo(state, root / "first.json", "--export", str(root / "export"))
    catalog = demo_catalog(state)
    first_rows = {
        table: len(catalog.load_table(table).scan().to_arrow())
        for table in ("curated.samples", "curated.samples_quarantine")
    }
    from ray_operators.spark import runtime

    engine = "ray" if runtime.missing() else "spark"
    second, second_stdout, _ = run_demo(state, root / "second.json", "--curate-engine", engine)
    leftovers = subprocess.run(["pgrep", "-af", str(state)], capture_output=True, text=True).stdout
    head = dict(catalog.load_table("logs.spark").current_snapshot().summary.additional_properties)
    return DemoRuns(
        state,
        first,
        first_stdout,
        root / "export",
        first_rows,
        second,
        second_stdout,
        engine,
        leftovers,
        head,
    )

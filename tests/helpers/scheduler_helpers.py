"""What the real-scheduler tests share: the daily slice data, spec folders, the sequential run a
backfill is compared with, and rows read back for comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from tests.helpers.airflow_helpers import RUNNER

REPO = Path(__file__).resolve().parents[2]
DAILY = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("value", pa.float64())])
EVENTS = pa.schema([("id", pa.int64()), ("x", pa.float64())])
#: The three March days a backfill covers: a run at midnight of day N covers [N-1, N).
BACKFILL_DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


def daily_rows() -> pa.Table:
    """Five days of rows, about five a day, from 2026-03-01."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ts = [start + timedelta(hours=5 * i) for i in range(24)]
    return pa.table({"ts": ts, "value": [float(i * i % 17) for i in range(24)]}, schema=DAILY)


def table_rows(catalog, table: str, columns: list[str]) -> list[tuple]:
    """A table's current rows, sorted: to compare two tables row for row."""
    data = catalog.load_table(table).scan().to_arrow().select(columns).to_pylist()
    return sorted(tuple(r[c] for c in columns) for r in data)


def spec_folder(path: Path, specs: dict[str, str]) -> Path:
    """A dags folder with the shipped DAG file and these pipeline specs."""
    folder = path / "dags"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "lakehouse_pipelines.py").write_text((REPO / "dags" / "lakehouse_pipelines.py").read_text())
    for name, text in specs.items():
        (folder / "pipelines" / name).write_text(text)
    return folder


def run_backfill_days_in_order(dag_id: str, folder: Path) -> None:
    """What a clean sequential run writes: ``dag.test()`` of each backfilled interval, in order.

    dag.test() syncs the DAG's bundle, the configured dags folder: a child process with it. A
    manual run at midnight of day N covers the interval [N-1, N), as the backfill's runs do.
    """
    ends = [
        (datetime.fromisoformat(day) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00+00:00")
        for day in BACKFILL_DAYS
    ]
    # One process for the three runs, in order (Airflow's import and the DAG's parse happen once).
    done = subprocess.run(
        [sys.executable, str(RUNNER), dag_id, ",".join(ends), str(folder)],
        env={**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    states = [line for line in done.stdout.splitlines() if line.startswith("DAG RUN STATE ")]
    assert states == ["DAG RUN STATE success"] * len(ends), (done.stdout + done.stderr)[-3000:]

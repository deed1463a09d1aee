"""Generated pipelines under the real scheduler, triggerer and dag-processor (``airflow standalone``).

One stack, four ways a pipeline runs, each checked in the tables it writes:
- a scheduled run (cron) curating raw Spark logs;
- ``airflow backfill create`` over three daily intervals, equal to a clean sequential run of the
  same spec, and a second backfill that reprocesses the completed runs without changing the table;
- a UI-style trigger (``airflow dags trigger --conf``) that reprocesses exactly the given snapshot;
- an asset-driven run started by a commit to the watched table, reading exactly that snapshot.

The stack's metadata database is PostgreSQL (the ``postgres`` fixture; skipped without it).

Time: about 2.5 minutes: one `airflow standalone` for four ways a pipeline runs; the second
backfill waits for the scheduler to close the first (Airflow marks backfills complete every 30 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import INPUT_PREFIX, RUN_KEY
from ray_operators.devstack.demo_data import generate_spark_logs
from ray_operators.devstack.standalone import StandaloneAirflow
from ray_operators.triggers.iceberg import cursor_key
from tests.conftest import wait_for
from tests.helpers.iceberg_helpers import connection_env
from tests.helpers.scheduler_helpers import (
    DAILY,
    EVENTS,
    daily_rows,
    run_backfill_days_in_order,
    spec_folder,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SPECS = {
    "sched_logs.yaml": """
name: sched_logs
start_date: 2026-01-01
schedule: "@hourly"
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: curate
    kind: curate
    raw_paths: ${TEST_RAW_ROOT}
    output: logs.spark
""",
    "backfill_daily.yaml": """
name: backfill_daily
start_date: 2026-03-01
schedule: "@daily"
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: prep
    kind: preprocess
    input: {table: raw.daily, read: current, slice_column: ts}
    output: {table: feat.daily, mode: overwrite, slice_column: day}
    standardize: [value]
""",
    "ui_reprocess.yaml": """
name: ui_reprocess
start_date: 2026-01-01
schedule: null
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: wait
    kind: sense
    table: raw.events
    start_from: latest
    poke_interval: 1
    timeout: 600
  - name: prep
    kind: preprocess
    input: raw.events
    output: feat.events
    standardize: [x]
""",
    "live.yaml": """
name: live
start_date: 2026-01-01
schedule:
  on_snapshot: [{table: raw.live, operations: [append], poll_interval: 1}]
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: prep
    kind: preprocess
    input: raw.live
    output: feat.live
""",
}


def _interval_snapshots(catalog) -> list[int]:
    """Snapshots of feat.daily written for the backfilled March intervals (the scheduler also runs
    the latest interval of the @daily schedule on its own)."""
    table = catalog.load_table("feat.daily")
    return [
        s.snapshot_id
        for s in table.metadata.snapshots
        if "interval=2026-03" in (s.summary or {}).get(RUN_KEY, "")
    ]


def _backfill(stack: StandaloneAirflow, *extra: str) -> None:
    """``airflow backfill create`` over the three March days the test checks, one run at a time.

    A backfill runs up to 10 runs at once by default (its own limit, not the DAG's
    ``max_active_runs: 1``). The preprocess stage fits its state once and later runs apply it;
    concurrent first runs all apply the one fitted by whichever claims version 1 first, which
    need not be the first interval. Equal row for row to a clean sequential run (the first
    interval fits) therefore needs the runs in order.
    """
    done = stack.cli(
        "backfill",
        "create",
        "--dag-id",
        "backfill_daily",
        "--from-date",
        "2026-03-01",
        "--to-date",
        "2026-03-03",
        "--max-active-runs",
        "1",
        *extra,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _runs(stack: StandaloneAirflow, dag_id: str, run_type: str | None = None):
    sql = "SELECT run_id, state, run_type, logical_date FROM dag_run WHERE dag_id = ?"
    rows = stack.query(sql, dag_id)
    return [r for r in rows if run_type is None or r[2] == run_type]


def _finished(stack: StandaloneAirflow, dag_id: str, count: int, run_type: str | None = None):
    rows = _runs(stack, dag_id, run_type)
    if len(rows) >= count and all(r[1] in ("success", "failed") for r in rows):
        return rows
    return None


def test_schedule_backfill_ui_trigger_and_asset_runs(
    airflow_db, ray_head, iceberg, airflow_postgres, tmp_path, monkeypatch
):
    catalog = iceberg.catalog
    raw_root = tmp_path / "raw"
    counts = generate_spark_logs(raw_root, apps=2, executors=1, lines_per_file=40, seed=7)
    monkeypatch.setenv("TEST_RAW_ROOT", str(raw_root))
    for ns in ("raw", "feat", "logs"):
        catalog.create_namespace_if_not_exists(ns)
    daily = catalog.create_table("raw.daily", schema=DAILY)
    daily.append(daily_rows())
    events = catalog.create_table("raw.events", schema=EVENTS)
    events.append(pa.table({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]}, schema=EVENTS))
    events.append(pa.table({"id": [4, 5], "x": [4.0, 8.0]}, schema=EVENTS))
    wanted = events.metadata.current_snapshot_id  # reprocess exactly this one: ids 4 and 5
    events.append(pa.table({"id": [6], "x": [6.0]}, schema=EVENTS))
    live = catalog.create_table("raw.live", schema=EVENTS)
    live.append(pa.table({"id": [0], "x": [0.0]}, schema=EVENTS))

    folder = spec_folder(tmp_path, SPECS)
    stack = StandaloneAirflow(
        home=tmp_path / "airflow",
        dags_folder=folder,
        env={**connection_env(iceberg.conn_id, iceberg.root), "TEST_RAW_ROOT": str(raw_root)},
        # PostgreSQL: `airflow backfill create` writes beside the scheduler without lock waits.
        database_url=airflow_postgres("pipelines_scheduler"),
    )
    with stack:
        wait_for(
            lambda: (
                {"sched_logs", "backfill_daily", "ui_reprocess", "live"}
                <= {r[0] for r in stack.query("SELECT dag_id FROM dag")}
            ),
            timeout=180,
            interval=1,
            what=f"the pipelines to be parsed (see {stack.log_path})",
        )
        assert not stack.query("SELECT filename, stacktrace FROM import_error")

        _backfill(stack)
        trigger = stack.cli(
            "dags", "trigger", "ui_reprocess", "--conf", json.dumps({"snapshot_ids": [wanted]}), check=False
        )
        assert trigger.returncode == 0, trigger.stderr

        wait_for(
            lambda: stack.query(
                "SELECT value FROM asset_state_store WHERE key = ?", cursor_key("raw.live", "main")
            ),
            timeout=240,
            interval=1,
            what=f"the watcher of raw.live (see {stack.log_path})",
        )
        live.append(pa.table({"id": [10, 11], "x": [1.0, 2.0]}, schema=EVENTS))
        live_snapshot = catalog.load_table("raw.live").metadata.current_snapshot_id

        scheduled = wait_for(
            lambda: _finished(stack, "sched_logs", 1, "scheduled"),
            600,
            2,
            f"the scheduled run ({stack.log_path})",
        )
        backfilled = wait_for(
            lambda: _finished(stack, "backfill_daily", 3, "backfill"),
            600,
            2,
            f"the backfill ({stack.log_path})",
        )
        manual = wait_for(
            lambda: _finished(stack, "ui_reprocess", 1), 600, 2, f"the UI run ({stack.log_path})"
        )
        asset_runs = wait_for(
            lambda: _finished(stack, "live", 1), 600, 2, f"the asset-driven run ({stack.log_path})"
        )
        assert all(r[1] == "success" for r in [*scheduled, *backfilled, *manual, *asset_runs]), (
            scheduled,
            backfilled,
            manual,
            asset_runs,
        )

        # A second backfill over the same dates reprocesses the completed runs: nothing changes.
        # (One backfill per DAG at a time: wait until the scheduler has closed the first.)
        wait_for(
            lambda: stack.query("SELECT id FROM backfill WHERE completed_at IS NOT NULL"),
            120,
            1,
            "the first backfill to be closed",
        )
        snapshots_before = _interval_snapshots(catalog)
        rows_before = table_rows(catalog, "feat.daily", ["ts", "value", "day"])
        _backfill(stack, "--reprocess-behavior", "completed")
        wait_for(
            lambda: (
                len(stack.query("SELECT id FROM backfill WHERE completed_at IS NOT NULL")) == 2
                and _finished(stack, "backfill_daily", 3, "backfill")
            ),
            600,
            2,
            "the second backfill",
        )
        # The completed runs really ran again (second try), and wrote nothing new.
        tries = stack.query(
            "SELECT try_number FROM task_instance WHERE dag_id = 'backfill_daily' AND run_id LIKE 'backfill__%'"
        )
        assert sorted(t for (t,) in tries) == [2, 2, 2]

    # Scheduled: the curated table holds every good line; bad lines are quarantined.
    assert len(catalog.load_table("logs.spark").scan().to_arrow()) == counts["good"]
    assert len(catalog.load_table("logs.spark_quarantine").scan().to_arrow()) == counts["bad_total"]

    # Backfill: three daily slices, each equal to what a clean sequential run writes.
    assert {str(r[3])[:10] for r in backfilled} == {"2026-03-01", "2026-03-02", "2026-03-03"}
    seq = SPECS["backfill_daily.yaml"].replace("name: backfill_daily", "name: sequential_daily")
    seq = seq.replace("table: feat.daily,", "table: feat.daily_seq,")
    seq_folder = spec_folder(tmp_path / "seq", {"sequential_daily.yaml": seq})
    run_backfill_days_in_order("sequential_daily", seq_folder)
    backfilled_rows = table_rows(catalog, "feat.daily", ["ts", "value", "day"])
    assert backfilled_rows == table_rows(catalog, "feat.daily_seq", ["ts", "value", "day"])
    assert [r[2] for r in backfilled_rows] == ["2026-03-01"] * 5 + ["2026-03-02"] * 5 + ["2026-03-03"] * 5
    # The replayed backfill: the same rows, no new snapshot.
    assert _interval_snapshots(catalog) == snapshots_before
    assert table_rows(catalog, "feat.daily", ["ts", "value", "day"]) == rows_before

    # UI trigger: exactly the requested snapshot's rows, with that snapshot in the lineage.
    feat = catalog.load_table("feat.events")
    assert sorted(feat.scan().to_arrow()["id"].to_pylist()) == [4, 5]
    summary = feat.metadata.snapshots[-1].summary
    assert summary[INPUT_PREFIX + "raw.events"] == str(wanted)
    assert summary[RUN_KEY] == f"ui_reprocess/prep/snapshots={wanted}"

    # Asset-driven: exactly the committed snapshot.
    fl = catalog.load_table("feat.live")
    assert sorted(fl.scan().to_arrow()["id"].to_pylist()) == [10, 11]
    assert fl.metadata.snapshots[-1].summary[INPUT_PREFIX + "raw.live"] == str(live_snapshot)

"""A DAG scheduled on an Iceberg table runs when a commit lands: real scheduler, triggerer, dag-processor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_operators.devstack.standalone import StandaloneAirflow
from ray_operators.triggers.iceberg import cursor_key
from tests.conftest import wait_for
from tests.helpers.iceberg_helpers import connection_env

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_asset_watcher_starts_the_dag_with_exactly_the_new_snapshots(tmp_path, iceberg, postgres):
    out = tmp_path / "runs"
    out.mkdir()
    stack = StandaloneAirflow(
        home=tmp_path / "airflow",
        dags_folder=REPO / "tests" / "dags_scheduler",
        env={**connection_env(iceberg.conn_id, iceberg.root), "WATCH_OUT": str(out)},
        database_url=postgres.create_database("asset_watcher_scheduler"),
    )
    before = iceberg.commit("db.events", "append", "1")
    with stack:
        # The watcher is live once it has stored its cursor in the asset state store.
        key = cursor_key("db.events", "main")
        stored = wait_for(
            lambda: stack.query("SELECT value FROM asset_state_store WHERE key = ?", key),
            timeout=240,
            interval=1,
            what=f"the watcher cursor (see {stack.log_path})",
        )
        assert json.loads(stored[0][0])["snapshot_id"] == before[0]

        committed = iceberg.commit("db.events", "append", "2")

        def recorded() -> list[int]:
            ids: list[int] = []
            for path in sorted(out.glob("*.json")):
                ids.extend(json.loads(path.read_text())["snapshot_ids"])
            return ids if sorted(ids) == sorted(committed) else []

        ids = wait_for(recorded, timeout=240, interval=1, what=f"the consumer run (see {stack.log_path})")
        events = stack.query("SELECT extra FROM asset_event ORDER BY id")

        def finished_runs():
            rows = stack.query(
                "SELECT state, logical_date FROM dag_run WHERE dag_id = 'asset_watch_consumer'"
            )
            return rows if rows and all(state in ("success", "failed") for state, _ in rows) else None

        runs = wait_for(finished_runs, timeout=120, interval=1, what="the consumer runs to finish")

    # Exactly the new commits, in order, no replay of what existed before the watcher started.
    assert ids == committed
    assert before[0] not in ids
    payload_ids = [sid for (extra,) in events for sid in json.loads(extra)["payload"]["snapshot_ids"]]
    assert payload_ids == committed
    assert all(state == "success" for state, _ in runs)
    # Asset-triggered runs have no logical date, and nothing depended on one.
    assert all(logical_date is None for _, logical_date in runs)

"""The real triggerer, scheduler and dag-processor (``airflow standalone`` on PostgreSQL), one stack
for the module, and what runs in the triggerer:

- an AssetWatcher on an Iceberg table starts its DAG with exactly the new snapshots;
- a triggerer restart while commits land neither replays nor skips a snapshot: the watcher's
  cursor lives in Airflow's asset state store, not in the triggerer;
- a Ray job whose task is deferred keeps running through a triggerer restart, and is stopped when
  a user marks the task failed (Airflow cancels the trigger and calls its ``on_kill``).

Time: about 2.5 minutes: one `airflow standalone` for the module (its start is a third of it);
the triggerer restarts twice, and each new triggerer picks its triggers up within seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ray_operators.devstack.standalone import StandaloneAirflow
from ray_operators.triggers.iceberg import cursor_key
from tests.conftest import wait_for
from tests.helpers.airflow_helpers import jobs_of
from tests.helpers.iceberg_fixtures import IcebergEnv
from tests.helpers.iceberg_helpers import connection_env, create, open_catalog

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
CONN_ID = "iceberg_test"
TABLE = "db.events"
CONSUMER = "asset_watch_consumer"


class Stack:
    def __init__(self, airflow: StandaloneAirflow, lake: IcebergEnv, out: Path) -> None:
        self.airflow, self.lake, self.out = airflow, lake, out

    def cursor(self) -> int | None:
        rows = self.airflow.query(
            "SELECT value FROM asset_state_store WHERE key = ?", cursor_key(TABLE, "main")
        )
        return json.loads(rows[0][0])["snapshot_id"] if rows else None

    def event_ids(self) -> list[list[int]]:
        """The snapshot ids of each asset event, in order."""
        rows = self.airflow.query("SELECT extra FROM asset_event ORDER BY id")
        return [json.loads(extra)["payload"]["snapshot_ids"] for (extra,) in rows]

    def recorded(self) -> list[int]:
        """Snapshot ids the consumer's runs saw (each run writes a file)."""
        ids: list[int] = []
        for path in sorted(self.out.glob("*.json")):
            ids.extend(json.loads(path.read_text())["snapshot_ids"])
        return ids

    def finished_consumer_runs(self) -> list[tuple] | None:
        rows = self.airflow.query(f"SELECT state, logical_date FROM dag_run WHERE dag_id = '{CONSUMER}'")
        return rows if rows and all(state in ("success", "failed") for state, _ in rows) else None

    def logs(self) -> str:
        home = self.airflow.home
        return "\n".join(p.read_text(errors="replace") for p in sorted(home.rglob("*.log*")) if p.is_file())


@pytest.fixture(scope="module")
def stack(tmp_path_factory, airflow_postgres, ray_head, airflow_db):
    root = tmp_path_factory.mktemp("triggerer")
    lake_root = root / "lake"
    catalog = open_catalog(lake_root, CONN_ID)
    create(catalog, TABLE)
    out = root / "runs"
    out.mkdir()
    airflow = StandaloneAirflow(
        home=root / "airflow",
        dags_folder=REPO / "tests" / "dags_scheduler",
        # The session's Ray head (its `ray_default` connection is in this process's environment).
        env={
            **connection_env(CONN_ID, lake_root),
            **ray_head.connection_env("ray_default"),
            "WATCH_OUT": str(out),
        },
        database_url=airflow_postgres("triggerer_scheduler"),
    )
    lake = IcebergEnv(lake_root, CONN_ID, catalog)
    before = lake.commit(TABLE, "append", "1")
    with airflow:
        airflow.wait_parsed({CONSUMER, "ray_kill_deferred"})
        assert not airflow.query("SELECT filename, stacktrace FROM import_error")
        yield Stack(airflow, lake, out), before


def test_asset_watcher_starts_the_dag_with_exactly_the_new_snapshots(stack):
    stack, before = stack
    # The watcher is live once it has stored its cursor in the asset state store.
    wait_for(stack.cursor, timeout=240, interval=0.5, what=f"the watcher cursor ({stack.airflow.log_path})")
    assert stack.cursor() == before[0]

    committed = stack.lake.commit(TABLE, "append", "2")
    ids = wait_for(
        lambda: (ids := stack.recorded()) and sorted(ids) == sorted(committed) and ids,
        timeout=240,
        interval=0.5,
        what=f"the consumer run ({stack.airflow.log_path})",
    )
    runs = wait_for(stack.finished_consumer_runs, 120, 0.5, "the consumer runs to finish")

    # Exactly the new commits, in order, no replay of what existed before the watcher started.
    assert ids == committed
    assert before[0] not in ids
    assert [i for event in stack.event_ids() for i in event] == committed
    assert all(state == "success" for state, _ in runs)
    # Asset-triggered runs have no logical date, and nothing depended on one.
    assert all(logical_date is None for _, logical_date in runs)


def test_a_triggerer_restart_neither_replays_nor_skips_a_snapshot(stack):
    stack, _ = stack
    head = stack.lake.head(TABLE)
    # The watcher has reported and saved everything up to the head (saved one poll after its
    # event): what it reports from here on is new.
    wait_for(lambda: stack.cursor() == head, 240, 0.5, "the watcher's cursor at the head")
    reported = len(stack.event_ids())

    stack.airflow.stop_triggerer()  # SIGTERM: a restart (no user action, so no on_kill)
    during = stack.lake.commit(TABLE, "append", "2")  # lands while no triggerer runs
    stack.airflow.start_triggerer()

    def new_ids() -> list[int]:
        return [i for event in stack.event_ids()[reported:] for i in event]

    wait_for(
        lambda: len(new_ids()) >= len(during),
        240,
        0.5,
        f"the new triggerer's event ({stack.airflow.log_path})",
    )
    after = stack.lake.commit(TABLE, "append", "1")
    wait_for(lambda: len(new_ids()) >= len(during) + len(after), 240, 0.5, "the event after the restart")
    wait_for(lambda: stack.cursor() == after[-1], 120, 0.5, "the cursor saved after the last event")

    # Exactly the commits made during and after the restart: nothing before it came again.
    assert new_ids() == during + after
    assert head not in new_ids()
    # The consumer's runs saw them too. Wait for the run that records the last snapshot: the runs
    # that exist may all be finished before the scheduler has created the run of the last event.
    wait_for(lambda: after[-1] in stack.recorded(), 240, 0.5, "the consumer run of the last event")
    runs = wait_for(stack.finished_consumer_runs, 240, 0.5, "the consumer runs to finish")
    assert all(state == "success" for state, _ in runs)
    assert stack.recorded()[-len(during + after) :] == during + after


def _task_state(stack: Stack, run_id: str) -> str | None:
    rows = stack.airflow.query(
        "SELECT state FROM task_instance WHERE dag_id = 'ray_kill_deferred' AND run_id = ? AND task_id = 'count'",
        run_id,
    )
    return rows[0][0] if rows else None


def test_a_deferred_ray_job_survives_a_triggerer_restart_and_stops_when_the_task_is_marked_failed(
    stack, hook
):
    stack, _ = stack
    airflow = stack.airflow
    run_id = airflow.trigger("ray_kill_deferred")
    wait_for(lambda: _task_state(stack, run_id) == "deferred", 300, 0.5, "the task to defer")
    (job,) = wait_for(lambda: jobs_of(hook, "ray_kill_deferred", run_id), 60, 0.5, "the Ray job")
    task_logs = airflow.home / "logs" / "dag_id=ray_kill_deferred" / f"run_id={run_id}" / "task_id=count"
    # One trigger log per triggerer that ran the trigger (``attempt=1.log.trigger.<job id>.log``).
    first = wait_for(lambda: list(task_logs.glob("attempt=1.log.trigger.*")), 120, 0.2, "the trigger to run")

    # A restart (SIGTERM, a new triggerer) cancels the trigger without a user action: no on_kill.
    airflow.restart_triggerer()
    wait_for(lambda: len(list(task_logs.glob("attempt=1.log.trigger.*"))) == 2, 120, 0.2, "the new triggerer")
    assert hook.get_job_info(job["submission_id"])["status"] == "RUNNING"
    assert _task_state(stack, run_id) == "deferred"
    assert len(first) == 1

    # Still running just before the kill: the restart's cleanup stopped nothing.
    assert "stopping Ray job" not in stack.logs()
    assert hook.get_job_info(job["submission_id"])["status"] == "RUNNING"

    # The user marks the deferred task failed, as the UI's "Mark as failed" does.
    airflow.api(
        "PATCH",
        f"/api/v2/dags/ray_kill_deferred/dagRuns/{run_id}/taskInstances/count",
        {"new_state": "failed"},
    )
    status = wait_for(
        lambda: (
            (s := hook.get_job_info(job["submission_id"])["status"]) in ("STOPPED", "SUCCEEDED", "FAILED")
            and s
        ),
        120,
        0.5,
        "the Ray job to end",
    )
    assert status == "STOPPED"
    assert stack.logs().count(f"Task killed while deferred: stopping Ray job {job['submission_id']}") == 1
    assert _task_state(stack, run_id) == "failed"
    assert [j["submission_id"] for j in jobs_of(hook, "ray_kill_deferred", run_id)] == [job["submission_id"]]

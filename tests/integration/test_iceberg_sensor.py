"""IcebergSnapshotSensor through dag.test(): deferrable, poke and reschedule modes, timeouts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from ray_operators.iceberg_snapshots import Cursor
from tests.conftest import wait_for
from tests.helpers.airflow_helpers import get_dag, task_state, xcoms

TABLE = "db.events"
pytestmark = pytest.mark.integration


def _sensor_is_waiting(dag_id: str, deferrable: bool) -> bool:
    """Deferred (next_method set), or poking with its starting cursor already stored."""
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        if deferrable:
            sql = "SELECT 1 FROM task_instance WHERE dag_id = :d AND next_method = 'execute_complete'"
        else:
            sql = "SELECT 1 FROM task_state_store WHERE dag_id = :d AND key = 'iceberg_cursor'"
        return session.execute(text(sql), {"d": dag_id}).first() is not None


@pytest.mark.parametrize("mode", ["deferrable", "poke", "reschedule"])
def test_sensor_returns_every_new_snapshot_after_its_starting_point(airflow_db, iceberg, mode):
    dag_id = f"iceberg_sensor_{mode}"
    (since,) = iceberg.commit(TABLE, "append", "1")
    committed: list[int] = []

    def commit_while_waiting() -> None:
        # Commit once the sensor is waiting (deferred, or poking in its worker).
        wait_for(
            lambda: _sensor_is_waiting(dag_id, deferrable=mode == "deferrable"),
            timeout=90,
            interval=0.1,
            what="the sensor to wait",
        )
        # Three snapshots in one catalog commit: a poke sees none or all of them. Three separate
        # commits race the sensor, which may return after the first (a flaky test, once).
        committed.extend(iceberg.commit(TABLE, "append-at-once", "3"))

    # Import Airflow's models here, not in the thread: concurrent first imports deadlock.
    dag = get_dag(dag_id)
    _sensor_is_waiting(dag_id, True)
    committer = threading.Thread(target=commit_while_waiting)
    committer.start()
    run = dag.test(run_conf={"since": since})
    committer.join(timeout=120)

    assert run.state == "success"
    value = xcoms(dag_id, run.run_id, "wait")["return_value"]
    assert value["snapshot_ids"] == committed
    assert value["previous_head"]["snapshot_id"] == since
    assert value["new_head"]["snapshot_id"] == committed[-1]
    assert value["table"] == TABLE and value["iceberg_conn_id"] == "iceberg_test"
    # The committer only commits once it has seen the sensor waiting (deferred: next_method set in
    # the metadata DB; poking: its first cursor stored), so commits after that prove the wait.
    assert committed, "the sensor was never seen waiting"


def test_sensor_timeout_with_soft_fail_skips(airflow_db, iceberg):
    iceberg.commit(TABLE, "append", "1")
    run = get_dag("iceberg_sensor_soft_fail").test()
    assert task_state("iceberg_sensor_soft_fail", run.run_id, "wait") == "skipped"


def test_current_at_finds_the_snapshot_of_a_data_interval_start(iceberg):
    from ray_operators.sensors.iceberg import IcebergSnapshotSensor

    ids = iceberg.commit(TABLE, "append", "3")
    metadata = iceberg.catalog.load_table(TABLE).metadata
    stamps = {s.snapshot_id: s.timestamp_ms for s in metadata.snapshots}
    sensor = IcebergSnapshotSensor(task_id="s", table=TABLE, iceberg_conn_id=iceberg.conn_id)
    assert sensor._current_at(metadata, stamps[ids[1]]).snapshot_id == ids[1]
    assert sensor._current_at(metadata, stamps[ids[2]] + 10_000).snapshot_id == ids[2]
    assert sensor._current_at(metadata, stamps[ids[0]] - 1) == Cursor(None)
    # The data-interval start a scheduled run gets, a datetime: the snapshot current at that moment
    # (exactly at its commit, the snapshot itself; a millisecond before, its parent).
    when = datetime.fromtimestamp(stamps[ids[1]] / 1000, UTC)
    interval = {"data_interval_start": when, "data_interval_end": when + timedelta(hours=1)}
    assert sensor._resolve_start(interval).snapshot_id == ids[1]
    earlier = {**interval, "data_interval_start": when - timedelta(milliseconds=1)}
    assert sensor._resolve_start(earlier).snapshot_id == ids[0]


def test_sensor_rejects_unknown_start_from():
    from ray_operators.sensors.iceberg import IcebergSnapshotSensor

    with pytest.raises(ValueError, match="start_from"):
        IcebergSnapshotSensor(task_id="s", table=TABLE, start_from="yesterday")

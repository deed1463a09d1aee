"""DAGs for the IcebergSnapshotSensor tests (dag.test); the catalog is the `iceberg_test` connection."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.sensors.iceberg import IcebergSnapshotSensor

START = pendulum.datetime(2026, 1, 1, tz="UTC")
SINCE = {"since": Param(None, type=["null", "integer"])}

for mode in ("deferrable", "poke", "reschedule"):
    with DAG(f"iceberg_sensor_{mode}", schedule=None, start_date=START, catchup=False, params=SINCE):
        IcebergSnapshotSensor(
            task_id="wait",
            table="db.events",
            iceberg_conn_id="iceberg_test",
            since_snapshot_id="{{ params.since }}",
            deferrable=mode == "deferrable",
            mode="reschedule" if mode == "reschedule" else "poke",
            poke_interval=0.5,
            timeout=120,
        )

with DAG("iceberg_sensor_soft_fail", schedule=None, start_date=START, catchup=False):
    IcebergSnapshotSensor(
        task_id="wait",
        table="db.events",
        iceberg_conn_id="iceberg_test",
        deferrable=False,
        poke_interval=0.5,
        timeout=2,
        soft_fail=True,
    )

"""DAGs for the lakehouse stage tests: real Ray jobs writing a real SqlCatalog (`iceberg_test`)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.lakehouse import LakehouseStageOperator

with DAG(
    "curate_spark_logs",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"raw_root": Param("/nonexistent", type="string")},
):
    LakehouseStageOperator(
        task_id="curate",
        stage="curate",
        output_table="logs.spark",
        raw_paths="{{ params.raw_root }}",
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        ship_package=True,
    )

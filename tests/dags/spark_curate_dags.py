"""The Spark variant of the curate stage (submitted to a stand-in spark-submit in the tests)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from ray_operators.operators.spark_curate import SparkCurateOperator

with DAG(
    "curate_spark_logs_on_spark",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    SparkCurateOperator(
        task_id="curate",
        output_table="logs.spark",
        raw_paths="s3a://raw/spark-logs",
        iceberg_conn_id="iceberg_spark",
        conn_id="spark_test",
        executor_memory="2g",
    )

"""The curate stage on both engines, on the same raw roots, each into its own tables: Spark
(``SparkCurateOperator``, a real ``spark-submit`` on the local Spark runtime) and Ray."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.lakehouse import LakehouseStageOperator
from ray_operators.operators.spark_curate import SparkCurateOperator

PARAMS = {
    "raw_a": Param("/nonexistent/a", type="string"),
    "raw_b": Param("/nonexistent/b", type="string"),
    "output": Param("logs.spark", type="string"),
}
RAW = ["{{ params.raw_a }}", "{{ params.raw_b }}"]


def manual_dag(dag_id: str, params: dict[str, Param]) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        params=params,
    )


def spark_curate(dag_id: str, params: dict[str, Param]) -> None:
    with manual_dag(dag_id, params):
        SparkCurateOperator(
            task_id="curate",
            output_table="{{ params.output }}",
            raw_paths=RAW,
            iceberg_conn_id="iceberg_test",
            conn_id="spark_local",
            # A retry of the same run (same run key) after a killed driver.
            retries=1,
            retry_delay=pendulum.duration(seconds=1),
            # Tests that record the spark-submit command line put a recording spark-submit first here.
            env_vars={"PATH": os.environ["SPARK_TEST_PATH"]} if os.environ.get("SPARK_TEST_PATH") else None,
        )


spark_curate("curate_logs_spark", PARAMS)
# Run without a run conf (a child process's dag.test): its raw roots come from the environment.
spark_curate(
    "curate_logs_spark_default",
    {
        "raw_a": Param(os.environ.get("SPARK_TEST_RAW_A", "/nonexistent/a"), type="string"),
        "raw_b": Param(os.environ.get("SPARK_TEST_RAW_B", "/nonexistent/b"), type="string"),
        "output": Param("logs.spark", type="string"),
    },
)

with manual_dag("curate_logs_ray", PARAMS):
    LakehouseStageOperator(
        task_id="curate",
        stage="curate",
        output_table="{{ params.output }}",
        raw_paths=RAW,
        iceberg_conn_id="iceberg_test",
        poll_interval=0.5,
        ship_package=True,
    )

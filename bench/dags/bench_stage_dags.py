"""DAG for bench/bench_preprocess_stage.py: the preprocess stage the benchmark also submits directly."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.lakehouse import LakehouseStageOperator

CONN = "iceberg_bench"
POLL_INTERVAL = 0.5
PREPROCESS_PARAMS = {
    "transforms": [{"fn": "ray_operators.jobs.examples:add_total", "batch_format": "pandas"}],
    "standardize": ["x"],
    "minmax": ["y"],
    "categorical": ["color"],
}

with DAG(
    "bench_preprocess_stage",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"inputs_json": Param("[]", type="string"), "output": Param("bench.out", type="string")},
):
    LakehouseStageOperator(
        task_id="preprocess",
        stage="preprocess",
        inputs="{{ params.inputs_json }}",
        output_table="{{ params.output }}",
        iceberg_conn_id=CONN,
        poll_interval=POLL_INTERVAL,
        stage_params=PREPROCESS_PARAMS,
    )

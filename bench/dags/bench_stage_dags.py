"""DAG for bench/bench_preprocess_stage.py: the preprocess stage the benchmark also submits directly."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.lakehouse import LakehouseStageOperator
from ray_operators.operators.ray_job import RayJobOperator

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

# bench/bench_tiny_stage.py: a trivial job and a preprocess stage on a tiny input, through the
# same operators, polling at the same interval.
TINY_POLL_INTERVAL = 0.2

with DAG(
    "bench_tiny_trivial",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    RayJobOperator(task_id="job", entrypoint="python -c pass", poll_interval=TINY_POLL_INTERVAL)

# The stage as configured by default (a tiny input runs in the job's driver), and forced to run
# in Ray tasks (local_max_bytes 0).
for dag_id, extra in (
    ("bench_tiny_preprocess", {}),
    ("bench_tiny_preprocess_distributed", {"local_max_bytes": 0}),
):
    with DAG(
        dag_id,
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
            poll_interval=TINY_POLL_INTERVAL,
            stage_params={**PREPROCESS_PARAMS, **extra},
        )

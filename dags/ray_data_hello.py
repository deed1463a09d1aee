"""One real Ray Data job through Airflow: the smallest end-to-end check of a deployment."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from ray_operators.operators.ray_job import RayJobOperator

with DAG(
    dag_id="ray_data_hello",
    description="Square a range of integers with Ray Data and report the sums",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"rows": Param(100_000, type="integer", minimum=1)},
    tags=["ray", "example"],
):
    RayJobOperator(
        task_id="hello_ray_data",
        entrypoint="python -m ray_operators.jobs.hello_data --rows {{ params.rows }}",
        poll_interval=1.0,
    )

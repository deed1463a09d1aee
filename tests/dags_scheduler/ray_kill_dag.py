"""A long Ray job whose task defers at once (real triggerer test: kill and restart while deferred)."""

from __future__ import annotations

import sys
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from ray_operators.operators.ray_job import RayJobOperator

COUNTER = Path(__file__).resolve().parent.parent / "jobs" / "counter.py"

with DAG(
    "ray_kill_deferred",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    # 600 lines a second apart: the job outlives the test, which ends it by killing the task.
    RayJobOperator(
        task_id="count",
        entrypoint=f"{sys.executable} {COUNTER} 600 1.0",
        deferrable=True,
        wait_before_defer=0,
        poll_interval=0.5,
    )

"""DAGs for the RayJobOperator integration tests (run with dag.test / airflow dags test)."""

from __future__ import annotations

import sys
from pathlib import Path

import pendulum
from airflow.sdk import DAG

from ray_operators.operators.ray_job import RayJobOperator

COUNTER = Path(__file__).resolve().parent.parent / "jobs" / "counter.py"
START = pendulum.datetime(2026, 1, 1, tz="UTC")


def counter(lines: int, interval: float, fail: bool = False) -> str:
    return f"{sys.executable} {COUNTER} {lines} {interval}" + (" fail" if fail else "")


# "deferrable" defers at once (wait_before_defer=0): these DAGs test the trigger's path; the
# default watch in the worker first is tested in test_log_streaming.py.
for mode, deferrable in (("deferrable", True), ("sync", False)):
    with DAG(f"ray_success_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=counter(8, 0.3),
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
            metadata={"suite": "{{ dag.dag_id }}"},
        )
    with DAG(f"ray_fail_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=counter(60, 0.01, fail=True),
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
        )
    with DAG(f"ray_long_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=counter(12, 1.0),
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
        )
    with DAG(f"ray_timeout_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=counter(120, 1.0),
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
            job_timeout=4,
        )
    with DAG(f"ray_badtoken_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=counter(1, 0.1),
            ray_conn_id="ray_bad",
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
        )

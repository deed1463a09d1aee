"""DAGs for bench/bench_overhead.py: the same jobs the benchmark also submits directly."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from ray_operators.operators.ray_job import RayJobOperator

JOBS = {
    "trivial": "python -c \"print('hello')\"",
    "30s": "python -c \"import time; time.sleep(30); print('done')\"",
}
POLL_INTERVAL = 0.5

for name, entrypoint in JOBS.items():
    for mode, deferrable in (("deferrable", True), ("sync", False)):
        with DAG(
            f"bench_{name}_{mode}",
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
        ):
            RayJobOperator(
                task_id="job", entrypoint=entrypoint, deferrable=deferrable, poll_interval=POLL_INTERVAL
            )

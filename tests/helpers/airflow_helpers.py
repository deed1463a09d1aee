"""Run test DAGs with the real Airflow machinery (dag.test) and read back what they stored."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

TEST_DAGS = Path(__file__).resolve().parents[1] / "dags"
RUNNER = Path(__file__).resolve().parent / "run_dag.py"


def get_dag(dag_id: str, folder: Path = TEST_DAGS):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(folder))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"no DAG {dag_id} in {folder}"
    return dag


def run_dag(dag_id: str, logical_date: datetime | None = None, folder: Path = TEST_DAGS, **kwargs: Any):
    """``dag.test()`` in this process; returns the DagRun."""
    dag = get_dag(dag_id, folder)
    if logical_date is None:
        return dag.test(**kwargs)
    # The run id derives from run_after: pin both so a second call reuses the same run.
    return dag.test(logical_date=logical_date, run_after=logical_date, **kwargs)


def start_dag_subprocess(dag_id: str, logical_date: datetime, log_path: Path) -> subprocess.Popen[bytes]:
    """``dag.test()`` in a child process (so the test can kill it like a worker is killed)."""
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, str(RUNNER), dag_id, logical_date.isoformat()],
            env=os.environ.copy(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def xcoms(dag_id: str, run_id: str, task_id: str = "count") -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id
        )
        return {row.key: XComModel.deserialize_value(row) for row in rows}


def task_state(dag_id: str, run_id: str, task_id: str = "count") -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
            .one()
        )
        return ti.state


def jobs_of(hook, dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every Ray job the cluster holds for a DAG (and run)."""
    return [
        job
        for job in hook.list_jobs()
        if job["metadata"].get("airflow_dag_id") == dag_id
        and (run_id is None or job["metadata"].get("airflow_run_id") == run_id)
    ]

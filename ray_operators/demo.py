"""`make demo`: the main job on the embedded default.

Starts a local Ray head (token auth on, dashboard on loopback) and a project-local Airflow home
(SQLite) under ``.local/``, runs the example DAG through Airflow's real task machinery
(``dag.test()``: deferrable tasks run their triggers in process), prints a report, and stops
everything it started by pid. Run it again at will.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _prepare_airflow_home(root: Path, dags_folder: Path) -> dict[str, str]:
    home = root / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(dags_folder.parent / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows for the Ray Data job (scale up here)")
    parser.add_argument("--dag-id", default="ray_data_hello")
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="runtime state (default: PROJECT/.local)"
    )
    args = parser.parse_args(argv)

    project = args.project_dir.resolve()
    root = (args.state_dir or project / ".local").resolve()
    _prepare_airflow_home(root, project / "dags")

    print(f"==> Airflow home {root / 'airflow'} (SQLite)", flush=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )

    from ray_operators.embedded import LocalRayHead

    print("==> Starting an embedded Ray head (token auth on, dashboard on 127.0.0.1)", flush=True)
    head = LocalRayHead(workdir=root / "ray").start()
    print(f"    Ray dashboard: {head.address}", flush=True)
    try:
        os.environ.update(head.connection_env("ray_default"))
        report = _run(args.dag_id, project / "dags", {"rows": args.rows})
    finally:
        print("==> Stopping the Ray head", flush=True)
        head.stop()
    _print_report(report)
    return 0 if report["state"] == "success" else 1


def _run(dag_id: str, dags_folder: Path, conf: dict[str, Any]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(str(dags_folder))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    print(f"==> Running DAG {dag_id} through Airflow", flush=True)
    started = time.monotonic()
    run = dag.test(run_conf=conf)
    elapsed = time.monotonic() - started
    tasks = {}
    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run.run_id, XComModel.key == "return_value"
        )
        for row in rows:
            tasks[row.task_id] = XComModel.deserialize_value(row)
    return {
        "dag_id": dag_id,
        "run_id": run.run_id,
        "state": str(run.state),
        "seconds": elapsed,
        "tasks": tasks,
    }


def _print_report(report: dict[str, Any]) -> None:
    print()
    print(f"=== Report: DAG {report['dag_id']} run {report['run_id']}")
    print(f"    state: {report['state']}   wall time: {report['seconds']:.1f}s")
    for task_id, value in report["tasks"].items():
        duration = ""
        if value.get("start_time") and value.get("end_time"):
            duration = f"{(value['end_time'] - value['start_time']) / 1000:.1f}s"
        print(f"    task {task_id}: Ray job {value['submission_id']} {value['status']} {duration}")
        print(f"        result: {value.get('result')}")


if __name__ == "__main__":
    sys.exit(main())

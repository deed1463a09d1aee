"""Per-job orchestration overhead of RayJobOperator.

The same trivial and 30-second Ray jobs run (a) directly through Ray's JobSubmissionClient
(submit, then poll every POLL_INTERVAL s until terminal) and (b) through RayJobOperator in
Airflow's ``dag.test()`` (what ``airflow dags test`` runs), deferrable and not, polling at the
same interval. Overhead = median wall time through Airflow − median wall time direct.

usage: python bench/bench_overhead.py [--reps N] [--long-reps N]
Writes the figures into bench/RESULTS.md (section "Orchestration overhead").
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.airflow_home import isolated_airflow_home, migrate_db  # noqa: E402
from bench.results import write_section  # noqa: E402

HOME = isolated_airflow_home("bench-airflow-")

sys.path.insert(0, str(HERE / "dags"))
from bench_dags import JOBS, POLL_INTERVAL  # noqa: E402


def direct(client, entrypoint: str) -> float:
    started = time.perf_counter()
    sid = client.submit_job(entrypoint=entrypoint)
    while str(client.get_job_status(sid).value) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(POLL_INTERVAL)
    elapsed = time.perf_counter() - started
    assert str(client.get_job_status(sid).value) == "SUCCEEDED"
    return elapsed


def through_airflow(bag, dag_id: str) -> float:
    dag = bag.get_dag(dag_id)
    started = time.perf_counter()
    run = dag.test()
    elapsed = time.perf_counter() - started
    assert run.state == "success", f"{dag_id}: {run.state}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the trivial job")
    parser.add_argument("--long-reps", type=int, default=3, help="repetitions of the 30-second job")
    args = parser.parse_args()

    migrate_db()
    from airflow.dag_processing.dagbag import DagBag
    from ray.job_submission import JobSubmissionClient

    from ray_operators.devstack.ray_cluster import LocalRayHead

    head = LocalRayHead(workdir=Path(HOME) / "ray").start()
    rows = []
    try:
        os.environ.update(head.connection_env())
        client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"})
        bag = DagBag(str(HERE / "dags"))
        # Warm-up: the first job of a fresh cluster pays for worker start-up.
        direct(client, JOBS["trivial"])
        through_airflow(bag, "bench_trivial_sync")
        for name, entrypoint in JOBS.items():
            reps = args.reps if name == "trivial" else args.long_reps
            base = [direct(client, entrypoint) for _ in range(reps)]
            for mode in ("deferrable", "sync"):
                timed = [through_airflow(bag, f"bench_{name}_{mode}") for _ in range(reps)]
                d, a = statistics.median(base), statistics.median(timed)
                rows.append((name, mode, reps, d, a, a - d, a / d))
                print(
                    f"{name:8s} {mode:10s} direct {d:6.2f}s  airflow {a:6.2f}s  overhead {a - d:5.2f}s",
                    flush=True,
                )
    finally:
        head.stop()
        shutil.rmtree(HOME, ignore_errors=True)

    lines = [
        f"Run on {platform.node()} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; `python bench/bench_overhead.py --reps {args.reps} --long-reps {args.long_reps}`.",
        f"Both paths poll every {POLL_INTERVAL}s. Airflow path: in-process `dag.test()` (the engine of "
        "`airflow dags test`), so the figure includes Airflow creating the run, running the task (and, "
        "deferrable, its trigger in process) and storing XCom; it excludes the CLI's process start-up. "
        "Deferrable runs use the default `wait_before_defer` (10 s): the trivial job ends in the worker; "
        "the 30 s job is watched for 10 s, then deferred.",
        "",
        "| job | mode | reps | direct median (s) | via RayJobOperator median (s) | overhead (s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {m} | {r} | {d:.2f} | {a:.2f} | {o:.2f} | {x:.2f} |" for n, m, r, d, a, o, x in rows]
    write_section("Orchestration overhead (issue 2)", "\n".join(lines))


if __name__ == "__main__":
    main()

"""The demo on both shapes, in one run, and snapshot sensing on a REST catalog.

(1) Stage times: ``make demo`` (embedded default: one Ray head, SqlCatalog, local files) and
    ``make demo-stack`` (production shape: S3 + Iceberg REST catalog on SeaweedFS, a Ray head and a
    worker node), each on a fresh state with the same raw batch; each stage's Ray job time (submit
    to end, from the job's own start and end times) and each pipeline's wall time.
(2) Sensing latency on the REST catalog: our IcebergSnapshotTrigger runs its real async loop over
    the SeaweedFS REST catalog; a thread commits at random moments; latency is commit return ->
    event, at a 1 s poll interval.

usage: python bench/bench_shapes.py [--rows N] [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"

from bench.results import write_section  # noqa: E402

CONN = "iceberg_bench_rest"


def demo(stack: str, rows: int, state: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RAY_", "LAKEHOUSE_"))}
    report = state / "report.json"
    subprocess.run(
        [sys.executable, "-m", "ray_operators.devstack.demo", "--stack", stack, "--state-dir", str(state)]
        + ["--rows", str(rows), "--json", str(report)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(report.read_text())


def rest_latency(workdir: Path, samples: int, poll_interval: float) -> list[float]:
    import pyarrow as pa

    from ray_operators.devstack.seaweedfs import LocalSeaweedFS
    from ray_operators.triggers.iceberg import IcebergSnapshotTrigger

    results: list[float] = []
    with LocalSeaweedFS(workdir=workdir) as storage:
        os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps(storage.iceberg_connection())
        from pyiceberg.catalog import load_catalog

        writer = load_catalog(CONN, **storage.catalog_properties(), **storage.secret_properties())
        writer.create_namespace_if_not_exists("db")
        schema = pa.schema([("x", pa.int64())])
        table = writer.create_table("db.latency", schema=schema)
        table.append(pa.table({"x": [0]}, schema=schema))

        async def run() -> None:
            trigger = IcebergSnapshotTrigger(
                table="db.latency", iceberg_conn_id=CONN, poll_interval=poll_interval
            )
            committed_at: list[float] = []

            def committer() -> None:
                rng = random.Random(7)
                time.sleep(poll_interval * 1.5)  # let the trigger take its starting cursor
                for i in range(samples):
                    time.sleep(poll_interval * (1.2 + rng.random()))
                    table.append(pa.table({"x": [i]}, schema=schema))
                    committed_at.append(time.perf_counter())

            thread = threading.Thread(target=committer, daemon=True)
            thread.start()
            async for event in trigger.run():
                results.append(time.perf_counter() - committed_at[len(results)])
                assert len(event.payload["snapshot_ids"]) == 1
                if len(results) == samples:
                    break
            thread.join(timeout=poll_interval * 5)

        asyncio.run(run())
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        root = Path(tmp)
        reports = {stack: demo(stack, args.rows, root / stack) for stack in ("embedded", "production")}
        latencies = rest_latency(root / "seaweedfs", args.samples, 1.0)

    def stage_seconds(report: dict) -> dict[str, float]:
        return {f"{s['dag_id']}.{s['task_id']}": s["seconds"] for s in report["stages"] if s.get("seconds")}

    emb, prod = stage_seconds(reports["embedded"]), stage_seconds(reports["production"])
    lines = [
        "Written by `bench/bench_shapes.py` "
        f"(`--rows {args.rows}`; 2 cores; one run of each shape, in this order, on fresh state).",
        "",
        "Stage time: the Ray job's own start to end (driver start-up included). The production shape",
        "runs SeaweedFS (S3 + Iceberg REST catalog), a Ray head with no task CPUs and a worker node",
        "with 2 CPUs, and Airflow's real scheduler (`airflow standalone` on PostgreSQL), all on the",
        "same 2 cores; the embedded default runs each pipeline with `dag.test()`. A pipeline's wall",
        "time is its DAG run's start to end (on the scheduler: queueing between tasks included).",
        "",
        "| stage | embedded default | production shape | ratio |",
        "|---|---|---|---|",
    ]
    for name in emb:
        ratio = prod[name] / emb[name] if name in prod and emb[name] else float("nan")
        lines.append(f"| {name} | {emb[name]:.1f} s | {prod.get(name, float('nan')):.1f} s | {ratio:.2f} |")
    for run_e, run_p in zip(reports["embedded"]["runs"], reports["production"]["runs"], strict=True):
        lines.append(
            f"| pipeline {run_e['dag_id']} (wall) | {run_e['seconds']:.1f} s | {run_p['seconds']:.1f} s | "
            f"{run_p['seconds'] / run_e['seconds']:.2f} |"
        )
    lines += [
        "",
        f"Sensing on the REST catalog, commit -> trigger event at a 1 s poll interval ({len(latencies)} "
        f"commits): median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s "
        "(goal: below poll interval + 0.5 s).",
    ]
    write_section("Production shape and the embedded default (issue 13)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

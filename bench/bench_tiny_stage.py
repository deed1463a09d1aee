"""A stage on a tiny input (100 rows): its wall time, and what the schema peek before the write cost.

(a) The whole preprocess stage, submitted directly through the Jobs API until its snapshot is
    committed, next to a trivial job (``python -c pass``) on the same head.
(b) Inside one job: the stage's read + user transform + exactly-once write, with and without a
    ``ds.schema()`` call before the write (the peek the write path made until issue 12). Without
    the peek the data is computed once, by the write.

usage: python bench/bench_tiny_stage.py [--reps 5]
Writes the figures into bench/RESULTS.md (section "Tiny stage and the schema peek").
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.results import write_section  # noqa: E402
from tests.iceberg_helpers import catalog_properties, open_catalog  # noqa: E402

CONN = "iceberg_bench"


def _wait(client, sid: str) -> str:
    while (status := str(client.get_job_status(sid).value)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        time.sleep(0.1)
    return status


def main() -> None:
    import pyarrow as pa
    from ray.job_submission import JobSubmissionClient

    from ray_operators.contract.result import parse_result
    from ray_operators.contract.spec import StageSpec, TableInput
    from ray_operators.devstack.ray_cluster import LocalRayHead

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-tiny-"))
    catalog = open_catalog(root, CONN)
    catalog.create_namespace_if_not_exists("bench")
    raw = catalog.create_table("bench.tiny", schema=pa.schema([("id", pa.int64()), ("x", pa.float64())]))
    raw.append(
        pa.table(
            {"id": list(range(100)), "x": [float(i) for i in range(100)]}, schema=raw.schema().as_arrow()
        )
    )
    catalog.create_table("bench.tiny_out", schema=raw.schema().as_arrow())
    snapshot = raw.metadata.current_snapshot_id
    spec = StageSpec(
        stage="preprocess",
        catalog_name=CONN,
        catalog_properties=catalog_properties(root),
        output_table="bench.tiny_out",
        inputs=[TableInput(table="bench.tiny", snapshot_id=snapshot)],
        run={"run_key": "bench/stage", "dag_id": "bench", "run_id": "r", "task_id": "t"},
        params={
            "transforms": [
                {
                    "fn": "ray_operators.jobs.examples:add_total",
                    "batch_format": "pandas",
                    "kwargs": {"columns": ["x"]},
                }
            ]
        },
    )
    head = LocalRayHead(workdir=root / "ray").start()
    try:
        client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"})
        stage, trivial = [], []
        for rep in range(args.reps + 1):
            started = time.perf_counter()
            assert _wait(client, client.submit_job(entrypoint="python -c pass")) == "SUCCEEDED"
            trivial_s = time.perf_counter() - started
            run = spec.with_run_key(f"bench/stage/{rep}")
            out = f"bench.tiny_stage_{rep}"
            run.output_table = out
            started = time.perf_counter()
            sid = client.submit_job(
                entrypoint=f"python -m ray_operators.jobs.run_stage --spec {run.encode()}"
            )
            assert _wait(client, sid) == "SUCCEEDED", client.get_job_logs(sid)[-2000:]
            if rep:  # the first round warms up
                stage.append(time.perf_counter() - started)
                trivial.append(trivial_s)
        sid = client.submit_job(
            entrypoint=f"python tiny_write.py {spec.with_run_key('bench/write').encode()} {args.reps}",
            runtime_env={"working_dir": str(HERE / "jobs")},
        )
        assert _wait(client, sid) == "SUCCEEDED", client.get_job_logs(sid)[-3000:]
        inner = parse_result(client.get_job_logs(sid))
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)

    med = statistics.median
    peek, no_peek = inner["peek"], inner["no_peek"]
    fmt = ", ".join
    lines = [
        f"`python bench/bench_tiny_stage.py --reps {args.reps}`, {time.strftime('%Y-%m-%d')}, "
        f"{platform.node()} ({os.cpu_count()} cores), local Ray head with token auth, SqlCatalog + file:// "
        "warehouse; medians after one warm-up round.",
        "",
        "| what | runs (s) | median (s) |",
        "|---|---|---|",
        f"| trivial job (`python -c pass`), submit to SUCCEEDED | {fmt(f'{x:.2f}' for x in trivial)} | {med(trivial):.2f} |",
        f"| preprocess stage on 100 rows, submit to committed snapshot | {fmt(f'{x:.2f}' for x in stage)} | {med(stage):.2f} |",
        f"| in the job: read + transform + write, no peek (data computed once) | {fmt(f'{x:.2f}' for x in no_peek)} | {med(no_peek):.2f} |",
        f"| in the job: the same with a `ds.schema()` peek first (before issue 12) | {fmt(f'{x:.2f}' for x in peek)} | {med(peek):.2f} |",
        "",
        f"The peek cost {med(peek) - med(no_peek):+.2f} s per write on a tiny input "
        f"({(med(peek) - med(no_peek)) / med(no_peek):+.0%}); the stage costs {med(stage) / med(trivial):.1f}x "
        "a trivial job (issue 15 takes the rest of that fixed cost on).",
    ]
    write_section("Tiny stage and the schema peek (issue 12)", "\n".join(lines))


if __name__ == "__main__":
    main()

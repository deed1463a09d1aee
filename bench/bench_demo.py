"""`make demo` from a fresh state: the wall time of the whole command, and where it goes.

Each run is `make demo DEMO_ARGS="--state-dir <fresh folder> --json <report>"` in the repository
(the venv already installed, so `make` only checks its stamp), timed from the command's start to
its exit: Ray head start-up, Airflow's migration, the three pipelines, the head's stop and the
report. The demo's own progress lines give each step's time since its start; the report gives
each pipeline's and each stage's time.

usage: python bench/bench_demo.py [--reps 3]
Writes the figures into bench/RESULTS.md (section "The demo").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import write_section  # noqa: E402

#: The goal (issue 15): `make demo` in at most this many seconds on 2 cores.
GOAL_SECONDS = 60.0
STEP = re.compile(r"^==> \[ *(\d+\.\d)s\] (.*)$", re.M)


def run_demo(state: Path) -> tuple[float, dict, str]:
    report = state.parent / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RAY_", "LAKEHOUSE_"))}
    started = time.perf_counter()
    done = subprocess.run(
        ["make", "demo", f"DEMO_ARGS=--state-dir {state} --json {report}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return seconds, json.loads(report.read_text()), done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    walls: list[float] = []
    reports: list[dict] = []
    steps: list[dict[str, float]] = []
    for rep in range(args.reps):
        root = Path(tempfile.mkdtemp(prefix="bench-demo-"))
        try:
            seconds, report, stdout = run_demo(root / "state")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        walls.append(seconds)
        reports.append(report)
        steps.append({what: float(at) for at, what in STEP.findall(stdout)})
        print(f"rep {rep}: make demo {seconds:.1f}s", flush=True)
    write_section("The demo (issue 15)", _report(args, walls, reports, steps))


def _step(found: dict[str, float], prefix: str) -> float | None:
    return next((at for what, at in found.items() if what.startswith(prefix)), None)


def _report(args, walls, reports, steps) -> str:
    med = statistics.median
    wall = med(walls)
    pipelines = [r["dag_id"] for r in reports[0]["runs"]]
    lines = [
        f"`python bench/bench_demo.py --reps {args.reps}`, {time.strftime('%Y-%m-%d')}, {platform.node()} "
        f"({os.cpu_count()} cores). Each run: `make demo` on a fresh state folder (the venv installed), "
        "from the command's start to its exit.",
        "",
        "| what | runs (s) | median (s) |",
        "|---|---|---|",
        f"| `make demo`, whole command | {', '.join(f'{w:.1f}' for w in walls)} | {wall:.1f} |",
    ]
    ready = [s for s in (_step(x, "Ray head ready") for x in steps) if s is not None]
    if ready:
        lines.append(
            f"| start-up: Ray head, Airflow migration and DAG parse (side by side) | "
            f"{', '.join(f'{x:.1f}' for x in ready)} | {med(ready):.1f} |"
        )
    for dag_id in pipelines:
        values = [next(r["seconds"] for r in rep["runs"] if r["dag_id"] == dag_id) for rep in reports]
        lines.append(f"| pipeline {dag_id} | {', '.join(f'{v:.1f}' for v in values)} | {med(values):.1f} |")
    stops = [
        b - a
        for a, b in ((_step(x, "Stopping the Ray head"), _step(x, "Ray head stopped")) for x in steps)
        if a is not None and b is not None
    ]
    if stops:
        lines.append(f"| stopping the Ray head | {', '.join(f'{x:.1f}' for x in stops)} | {med(stops):.1f} |")
    lines += [
        "",
        f"Goal (issue 15): at most {GOAL_SECONDS:.0f} s: {'met' if wall <= GOAL_SECONDS else 'not met'} "
        f"({wall:.1f} s).",
        "",
        "Stage times in the last run's report (the Ray job's own start to end; the pipeline's time also "
        "counts the operator, the submission and the status polls):",
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    for stage in reports[-1]["stages"]:
        if stage.get("seconds") is not None:
            lines.append(f"| {stage['dag_id']}.{stage['task_id']} | {stage['seconds']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

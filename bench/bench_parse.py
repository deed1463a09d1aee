"""Parse time of pipeline specs into DAGs: ray-lakehouse specs vs dag-factory on equivalent YAML.

For N in (1, 50, 200) the script writes N copies of ``dags/pipelines/lakehouse.yaml`` (sense ->
preprocess -> train -> infer, names changed) into one folder with the ``dags/lakehouse_pipelines.py``
loader, and N equivalent dag-factory 1.x YAML files (the same tasks, operators and arguments,
taken from the intermediate graph) into another with dag-factory's ``load_yaml_dags`` loader.
Each folder is parsed by ``DagBag`` in a fresh Python process, as the dag-processor does, and the
time of ``DagBag(folder)`` is taken (Airflow's own import is paid before the clock starts, by
both). Median of ``--reps`` processes.

Goal: 200 pipelines in under 2 s, and at most half of dag-factory's time.

usage: python bench/bench_parse.py [--reps 3]   (needs dag-factory: pip install -e ".[bench]")
"""

from __future__ import annotations

import argparse
import json
import os
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

SIZES = (1, 50, 200)
PROBE = """
import sys, time, json
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(sys.argv[1])
elapsed = time.perf_counter() - started
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "pyiceberg", "pyarrow", "torch"))
print(json.dumps({"seconds": elapsed, "dags": len(bag.dag_ids), "errors": len(bag.import_errors), "heavy": heavy}))
"""
DAGFACTORY_LOADER = """\
# airflow DAG loader for dag-factory
from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder={folder!r})
"""


def write_ours(folder: Path, n: int) -> None:
    (folder / "pipelines").mkdir(parents=True)
    shutil.copy(REPO / "dags" / "lakehouse_pipelines.py", folder / "lakehouse_pipelines.py")
    template = (REPO / "dags" / "pipelines" / "lakehouse.yaml").read_text()
    for i in range(n):
        name = f"pipeline_{i:03d}"
        (folder / "pipelines" / f"{name}.yaml").write_text(
            template.replace("name: lakehouse", f"name: {name}")
        )


def write_dagfactory(folder: Path, n: int) -> None:
    import yaml

    from ray_operators.pipelines.graph import build_graph
    from ray_operators.pipelines.loader import load_pipeline

    graph = build_graph(load_pipeline(REPO / "dags" / "pipelines" / "lakehouse.yaml").pipeline)
    args = graph.dag_arguments
    (folder / "specs").mkdir(parents=True)
    (folder / "loader.py").write_text(DAGFACTORY_LOADER.format(folder=str(folder / "specs")))
    for i in range(n):
        name = f"pipeline_{i:03d}"
        tasks = {}
        for node in graph.tasks:
            task = {"operator": node.operator, **json.loads(json.dumps(node.arguments))}
            if node.upstream:
                task["dependencies"] = list(node.upstream)
            tasks[node.task_id] = task
        dag = {
            "default_args": {
                "owner": args["default_args"]["owner"],
                "retries": args["default_args"]["retries"],
                "start_date": args["start_date"],
            },
            "description": args["description"],
            "schedule": None,
            "catchup": False,
            "tags": args["tags"],
            # The same run params (dag-factory takes plain values; ours are typed Params).
            "params": {name: p.get("default") for name, p in args["params"].items()},
            "tasks": tasks,
        }
        (folder / "specs" / f"{name}.yml").write_text(yaml.safe_dump({name: dag}, sort_keys=False))


def parse(folder: Path, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    try:
        import dagfactory  # noqa: F401
    except ImportError:
        sys.exit('dag-factory is not installed: pip install -e ".[bench]"')
    from importlib.metadata import version

    root = Path(tempfile.mkdtemp(prefix="bench-parse-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
    }
    rows = []
    try:
        for n in SIZES:
            ours, theirs = root / f"ours-{n}", root / f"dagfactory-{n}"
            write_ours(ours, n)
            write_dagfactory(theirs, n)
            a = [parse(ours, env) for _ in range(args.reps)]
            b = [parse(theirs, env) for _ in range(args.reps)]
            for label, results in (("ray-lakehouse", a), ("dag-factory", b)):
                assert all(r["dags"] == n and r["errors"] == 0 for r in results), (label, results)
            assert not a[0]["heavy"], a[0]["heavy"]
            mine = statistics.median(r["seconds"] for r in a)
            other = statistics.median(r["seconds"] for r in b)
            rows.append((n, mine, other))
            print(f"{n:4d} pipelines: ray-lakehouse {mine:.3f}s  dag-factory {other:.3f}s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    n, mine, other = rows[-1]
    lines = [
        f"`python bench/bench_parse.py --reps {args.reps}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"dag-factory {version('dag-factory')}, apache-airflow {version('apache-airflow')}. `DagBag(folder)` in a "
        "fresh process per parse (Airflow imported before the clock starts), median of the runs. Each "
        "pipeline is the 4-task lakehouse example (sensor + three Ray stage operators); the dag-factory "
        "YAML has the same tasks, operators and arguments.",
        "",
        "| pipelines | ray-lakehouse (s) | dag-factory (s) | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {x:.3f} | {y:.3f} | {x / y:.2f} |" for k, x, y in rows]
    lines += [
        "",
        f"Goal: {n} pipelines in under 2 s ({'met' if mine < 2 else 'not met'}: {mine:.2f} s) and at most half "
        f"of dag-factory's time ({'met' if mine <= other / 2 else 'not met'}: {mine / other:.2f}). Loading the "
        "specs imported none of ray, pyiceberg, pyarrow or torch.",
    ]
    write_section("Pipeline spec parse time (issue 5)", "\n".join(lines))


if __name__ == "__main__":
    main()

"""The curate stage on its two engines against a plain Ray Data script, on two corpora.

Two corpora, each of at least 1,000,000 lines, are curated into their own tables of one sqlite
SqlCatalog with a local warehouse, one run after the other, each on the machine's 2 cores:

- Spark application logs (JSON lines with nested Kubernetes labels, 50 files):
  1. Spark: the curate application through ``spark-submit`` (``local[2]``, the local runtime:
     Spark 3.5.9, Iceberg 1.10.2), exactly as ``SparkCurateOperator`` submits it. The wall time
     includes the JVM and session start.
  2. Ray, fast path: the curate stage's job code (``ray_operators.jobs.curate.run``) in a Ray
     driver with ``num_cpus=2`` (started before the clock; the stage's own Ray pipeline, four
     commits): pyarrow's JSON reader, the row parser only for lines it cannot vouch for.
  3. Ray, row path: the same with ``fast_path: false`` (every line through the row parser; what
     the stage did before issue 15).
  4. Baseline: ``ray.data.read_json(files).write_iceberg(table)``, the plain Ray Data script, with
     no typing, no quarantine, no processing table and no exactly-once (the table is created
     first, outside the clock, with the schema pyarrow infers).
- CSV (row id, label, six doubles, an ISO timestamp and a quoted string per row, 20 files):
  the Ray stage with the fast path, with the row path, and ``ray.data.read_csv -> write_iceberg``.

The corpora have no malformed lines, since the baselines have no quarantine and would fail on one.
The stage does its whole protocol all the same: every line is parsed and typed. The Ray stage's
runs also report where their time goes (claim, marks, parse, the two commits), measured around
the job's own functions.

usage: python bench/bench_curate_engines.py [--lines 1000000] [--reps 3] [--no-spark]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.airflow_home import isolated_airflow_home  # noqa: E402

HOME = isolated_airflow_home("bench-curate-airflow-")

from bench.results import write_section  # noqa: E402
from tests.helpers.iceberg_helpers import catalog_properties, open_catalog  # noqa: E402

CATALOG = "bench_curate"
#: The last commit before issue 15's curation work: the stage as it was when the issue was filed.
BEFORE_ISSUE_15 = "462a01e"
TITLE = "Curate engines: Spark, the Ray stage and a plain Ray Data script (issue 14)"
CSV_COLUMNS = {
    **{f"f{i}": "double" for i in range(6)},
    "row_id": "long",
    "label": "long",
    "seen": "timestamp",
    "name": "string",
}


def corpus(root: Path, lines: int) -> tuple[list[str], int]:
    from ray_operators.devstack.demo_data import generate_spark_logs

    apps, executors = 10, 4  # 50 files
    per_file = -(-lines // (apps * (executors + 1)))
    counts = generate_spark_logs(
        root, apps=apps, executors=executors, lines_per_file=per_file, malformed_fraction=0.0, seed=7
    )
    files = sorted(str(p) for p in root.rglob("*.log"))
    return files, counts["good"]


def csv_corpus(root: Path, lines: int, files: int = 20) -> tuple[list[str], int]:
    """``files`` CSV files of :func:`generate_tabular` rows plus an ISO timestamp and a string that
    pyarrow's writer quotes."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from ray_operators.devstack.demo_data import generate_tabular

    root.mkdir(parents=True)
    per_file = -(-lines // files)
    paths = []
    for n in range(files):
        table = generate_tabular(per_file, seed=n)
        seconds = pa.array(range(n * per_file, (n + 1) * per_file), pa.int64()).cast(pa.timestamp("s", "UTC"))
        table = table.append_column("seen", pc.strftime(seconds, "%Y-%m-%dT%H:%M:%SZ"))
        table = table.append_column(
            "name", pc.binary_join_element_wise("app ", pc.cast(table["label"], pa.string()), "")
        )
        paths.append(str(root / f"part-{n:03d}.csv"))
        pcsv.write_csv(table, paths[-1], pcsv.WriteOptions(quoting_style="needed"))
    return paths, per_file * files


def spec_for(root: Path, raw: Path, output: str, params: dict | None = None):
    from ray_operators.contract.spec import StageSpec

    return StageSpec(
        stage="curate",
        catalog_name=CATALOG,
        catalog_properties=catalog_properties(root),
        output_table=output,
        raw_paths=[str(raw)],
        run={"run_key": f"bench/{output}/run=1", "dag_id": "bench", "run_id": "1", "task_id": "curate"},
        params=params or {},
    )


def on_spark(root: Path, raw: Path) -> float:
    from ray_operators.operators.spark_curate import APPLICATION, package_zip
    from ray_operators.spark.conf import spark_catalog_conf
    from ray_operators.spark.runtime import local_runtime

    runtime = local_runtime()
    public, _ = spark_catalog_conf(CATALOG, catalog_properties(root))
    cmd = [str(runtime.spark_submit), "--master", "local[2]", "--driver-memory", "4g"]
    cmd += ["--jars", ",".join(runtime.jars()), "--py-files", package_zip(root)]
    for key, value in public.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [APPLICATION, "--spec", spec_for(root, raw, "logs.by_spark").encode()]
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, **runtime.env()}, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit((done.stdout + done.stderr)[-4000:])
    return elapsed


def on_ray(root: Path, raw: Path, output: str, params: dict | None = None) -> tuple[float, dict[str, float]]:
    """The stage's wall time, and the seconds spent in each of its phases."""
    from ray_operators.jobs import curate

    phases: dict[str, float] = {}

    def timed(fn, name_of):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                name = name_of(kwargs)
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    def commit_name(kwargs):
        table = kwargs.get("table") or ""
        return {"": "curated commit", "_quarantine": "quarantine commit"}.get(
            table[table.rfind("_") :] if table else "", "processing marks"
        )

    saved = {n: getattr(curate, n) for n in ("_claim", "_parse_all", "commit_exactly_once")}
    curate._claim = timed(saved["_claim"], lambda _: "claim")
    curate._parse_all = timed(saved["_parse_all"], lambda _: "parse (Ray tasks)")
    curate.commit_exactly_once = timed(saved["commit_exactly_once"], commit_name)
    try:
        started = time.perf_counter()
        curate.run(spec_for(root, raw, output, params))
        elapsed = time.perf_counter() - started
    finally:
        for name, fn in saved.items():
            setattr(curate, name, fn)
    phases["other"] = elapsed - sum(phases.values())
    return elapsed, phases


def baseline(root: Path, files: list[str], table: str, fmt: str) -> float:
    import pyarrow.csv as pcsv
    import pyarrow.json as pj
    import ray

    catalog = open_catalog(root, CATALOG)
    catalog.create_namespace_if_not_exists(table.split(".")[0])
    schema = (pj.read_json if fmt == "json" else pcsv.read_csv)(files[0]).schema
    catalog.create_table(table, schema=schema)
    started = time.perf_counter()
    if fmt == "json":
        ds = ray.data.read_json(files, file_extensions=["log"])
    else:
        ds = ray.data.read_csv(files)
    ds.write_iceberg(table, catalog_kwargs={"name": CATALOG, **catalog_properties(root)})
    return time.perf_counter() - started


def _count(root: Path, tables: list[str]) -> dict[str, int]:
    catalog = open_catalog(root, CATALOG)
    return {t: len(catalog.load_table(t).scan().to_arrow()) for t in tables}


def _row(name: str, secs: float, lines: int, base: float) -> str:
    return f"| {name} | {secs:.1f} | {lines / secs:,.0f} | {base / secs:.2f} |"


def _phases(phases: dict[str, dict[str, float]]) -> str:
    names = list(next(iter(phases.values())))
    head = "| run | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names)
    body = "\n".join(
        f"| {run} | " + " | ".join(f"{p[n]:.1f}" for n in names) + " |" for run, p in phases.items()
    )
    return f"{head}\n{body}"


def warm_up(tmp: Path, root: Path) -> None:
    """One small untimed run of each kind (baselines included), so no timed run pays for starting
    Ray's workers or their first imports."""
    csv_files = sorted(str(p) for p in (tmp / "warm-csv").glob("*.csv"))
    on_ray(root, tmp / "warm", "warm.logs")
    on_ray(root, tmp / "warm-csv", "warm.csv", {"format": "csv", "schema": CSV_COLUMNS})
    baseline(root, sorted(str(p) for p in (tmp / "warm").rglob("*.log")), "warm.logs_baseline", "json")
    baseline(root, csv_files, "warm.csv_baseline", "csv")


def before_issue_15(tmp: Path, root: Path, raw: Path, raw_csv: Path, reps: int) -> dict[str, list[float]]:
    """The curate stage at :data:`BEFORE_ISSUE_15` (``git archive`` of its package), on the same
    corpora, in a process of its own with the same Ray settings: ``reps`` runs of each corpus."""
    import io
    import json
    import tarfile

    source = tmp / "before-issue-15"
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE_ISSUE_15, "ray_operators"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"git archive {BEFORE_ISSUE_15} failed (a shallow clone?): {archive.stderr.decode()}"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(source, filter="data")
    csv_params = {"format": "csv", "schema": CSV_COLUMNS}
    warm = [
        [str(tmp / "warm"), "warm.logs_before", {}],
        [str(tmp / "warm-csv"), "warm.csv_before", csv_params],
    ]
    runs = []
    for rep in range(reps):
        runs += [
            [str(raw), f"logs.before_{rep}", {}],
            [str(raw_csv), f"curated.csv_before_{rep}", csv_params],
        ]
    request = {
        "catalog_name": CATALOG,
        "catalog_properties": catalog_properties(root),
        "warm": warm,
        "runs": runs,
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "jobs" / "curate_before.py"), str(source), json.dumps(request)],
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the curate stage before issue 15 failed (exit {done.returncode})")
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {"logs before": seconds[0::2], "csv before": seconds[1::2]}


def make_warm_corpora(tmp: Path) -> list[str]:
    """Small corpora for untimed warm-up runs; the CSV files' paths."""
    from ray_operators.devstack.demo_data import generate_spark_logs

    generate_spark_logs(tmp / "warm", apps=1, lines_per_file=1000, malformed_fraction=0.0)
    return csv_corpus(tmp / "warm-csv", 4000, files=4)[0]


def run_all(tmp: Path, lines: int, spark: bool, reps: int) -> dict:
    import ray

    load = os.getloadavg()[0]
    root, raw, raw_csv = tmp / "lake", tmp / "raw", tmp / "raw-csv"
    open_catalog(root, CATALOG)
    files, logs = corpus(raw, lines)
    csv_files, rows = csv_corpus(raw_csv, lines)
    facts = {"logs": logs, "files": len(files), "size": sum(os.path.getsize(f) for f in files)}
    facts.update(rows=rows, csv_files=len(csv_files), csv_size=sum(os.path.getsize(f) for f in csv_files))
    print(f"corpora: {facts}", flush=True)
    make_warm_corpora(tmp)
    times, phases = {}, {}
    if spark:
        times["spark"] = on_spark(root, raw)
        print(f"spark: {times['spark']:.1f}s", flush=True)
    before = before_issue_15(tmp, root, raw, raw_csv, reps)
    csv_params = {"format": "csv", "schema": CSV_COLUMNS}
    runs = {
        key: [] for key in ("logs fast", "logs row", "csv fast", "csv row", "logs baseline", "csv baseline")
    }
    all_phases: dict[str, list[dict[str, float]]] = {key: [] for key in runs}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        warm_up(tmp, root)
        # Interleaved repetitions, medians reported: one slow run (another process's burst on
        # 2 cores) cannot decide a ratio.
        for rep in range(reps):
            for key, path, output, params in (
                ("logs fast", raw, "logs.by_ray", {}),
                ("logs row", raw, "logs.by_ray_rows", {"fast_path": False}),
                ("csv fast", raw_csv, "curated.csv_fast", csv_params),
                ("csv row", raw_csv, "curated.csv_rows", {**csv_params, "fast_path": False}),
            ):
                secs, phase = on_ray(root, path, f"{output}_{rep}", params)
                runs[key].append(secs)
                all_phases[key].append(phase)
                print(f"{key} #{rep}: {secs:.1f}s {phase}", flush=True)
            runs["logs baseline"].append(baseline(root, files, f"logs.baseline_{rep}", "json"))
            runs["csv baseline"].append(baseline(root, csv_files, f"curated.csv_baseline_{rep}", "csv"))
            print(
                f"baselines #{rep}: {runs['logs baseline'][-1]:.1f}s, {runs['csv baseline'][-1]:.1f}s",
                flush=True,
            )
    finally:
        ray.shutdown()
    runs.update(before)
    times.update({key: statistics.median(secs) for key, secs in runs.items()})
    for key in ("logs fast", "logs row", "csv fast", "csv row"):
        phases[key] = {n: statistics.median(p[n] for p in all_phases[key]) for n in all_phases[key][0]}
    log_tables = [
        f"logs.{t}_{rep}" for t in ("by_ray", "by_ray_rows", "baseline", "before") for rep in range(reps)
    ]
    log_tables += ["logs.by_spark"] if spark else []
    csv_tables = [
        f"curated.{t}_{rep}" for t in ("csv_fast", "csv_rows", "csv_baseline") for rep in range(reps)
    ]
    counted = _count(root, log_tables + csv_tables)
    expected = {t: logs if t.startswith("logs") else rows for t in counted}
    if counted != expected:
        raise SystemExit(f"the runs wrote different row counts: {counted} (expected {expected})")
    facts["reps"] = reps
    facts["runs"] = runs
    facts["load"] = (load, os.getloadavg()[0])
    return {"facts": facts, "times": times, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3, help="runs of each Ray and baseline kind (medians)")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark run (no section written)")
    args = parser.parse_args()
    from ray_operators.spark.runtime import missing

    if not args.no_spark and (problem := missing()):
        raise SystemExit(f"Spark cannot run here: {problem}")
    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        got = run_all(Path(tmp), args.lines, spark=not args.no_spark, reps=args.reps)
    print(got, flush=True)
    if not args.no_spark:
        write_section(TITLE, report(got))


def report(got: dict) -> str:
    facts, t = got["facts"], got["times"]
    logs, rows = facts["logs"], facts["rows"]
    log_rows = [
        _row("Spark curate (spark-submit, local[2])", t["spark"], logs, t["logs baseline"]),
        _row("Ray curate stage, fast path", t["logs fast"], logs, t["logs baseline"]),
        _row("Ray curate stage, row path (`fast_path: false`)", t["logs row"], logs, t["logs baseline"]),
        _row(
            f"Ray curate stage before issue 15 ({BEFORE_ISSUE_15})",
            t["logs before"],
            logs,
            t["logs baseline"],
        ),
        _row("Baseline: read_json -> write_iceberg", t["logs baseline"], logs, t["logs baseline"]),
    ]
    csv_rows = [
        _row("Ray curate stage, fast path", t["csv fast"], rows, t["csv baseline"]),
        _row("Ray curate stage, row path (`fast_path: false`)", t["csv row"], rows, t["csv baseline"]),
        _row(
            f"Ray curate stage before issue 15 ({BEFORE_ISSUE_15})", t["csv before"], rows, t["csv baseline"]
        ),
        _row("Baseline: read_csv -> write_iceberg", t["csv baseline"], rows, t["csv baseline"]),
    ]
    head = "| run | seconds | lines/s | speed vs baseline |\n|---|---:|---:|---:|"
    goals = "\n".join(
        f"| {name} | {t[f'{k} before'] / t[f'{k} fast']:.1f} (goal >= 5) | "
        f"{t[f'{k} baseline'] / t[f'{k} fast']:.2f} (goal >= 1) | {t[f'{k} row'] / t[f'{k} fast']:.1f} |"
        for name, k in (("Spark-log JSON lines", "logs"), ("CSV", "csv"))
    )
    runs = "\n".join(
        f"| {key} | {', '.join(f'{x:.1f}' for x in secs)} | {statistics.median(secs):.1f} |"
        for key, secs in facts["runs"].items()
    )
    return f"""Script: `bench/bench_curate_engines.py --reps {facts["reps"]}`: the Spark run once, the stage before issue 15
{facts["reps"]} times per corpus, then {facts["reps"]} interleaved rounds of today's Ray stage's four runs and the two baselines; the tables give medians. Two corpora: {logs:,} Spark-log lines (JSON, nested
Kubernetes labels) in {facts["files"]} files ({facts["size"] / 1e6:.0f} MB), and {rows:,} CSV rows (row id, label, six
doubles, an ISO timestamp, a quoted string) in {facts["csv_files"]} files ({facts["csv_size"] / 1e6:.0f} MB); no malformed
lines (the baselines have no quarantine). Each run writes its own table of one sqlite SqlCatalog with a
local warehouse; every run wrote every row. 2 cores; Spark and Ray each use both. The machine's
1-minute load average was {facts["load"][0]:.1f} at the start and {facts["load"][1]:.1f} at the end (other work shares it):
compare figures within one run.

Spark-log JSON lines:

{head}
{chr(10).join(log_rows)}

CSV:

{head}
{chr(10).join(csv_rows)}

Issue 15's goals ("curation throughput"), measured in this run:

| corpus | lines/s, fast path over the stage before issue 15 | fast path over the baseline | fast path over the row path |
|---|---:|---:|---:|
{goals}

"Before issue 15" is the curate stage at commit {BEFORE_ISSUE_15} (the last before this issue's curation
work), taken with `git archive` and run on the same corpora in a process of its own, with the same Ray
settings and its own untimed warm-up, before the other Ray runs: the stage as it was when the issue
asked for 5x its rate. The row path is today's stage with `fast_path: false`: every line through the
row parser, but in the single-pass job (one parse in Ray tasks, the commits from its Arrow tables),
so it is itself faster than the stage before issue 15.

Where the Ray stage's time goes (seconds; measured around the job's own functions; "other" is
the rest: discovery, the Ray driver's bookkeeping):

{_phases(got["phases"])}

Every run (seconds; each kind's runs in the order they ran):

| run | runs | median |
|---|---|---:|
{runs}

What each run does: the two engines parse every line (the Ray fast path with pyarrow's JSON and CSV
readers and `pyarrow.compute` casts, handing the row parser only what it cannot vouch for), type it,
and make the protocol's four commits (PROCESSING rows, curated rows, quarantine, SUCCESS rows), each
exactly once by run key; Spark's through Iceberg's write-audit-publish. Spark's time includes its JVM
and session start. The baselines read with pyarrow's readers and append the records as they are: no
typing, no quarantine, no processing table, no run key.
"""


if __name__ == "__main__":
    main()

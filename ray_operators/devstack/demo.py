"""`make demo`: the whole lakehouse on the embedded default, through Airflow.

Under ``.local/`` (or ``--state-dir``) it keeps an Airflow home (SQLite), a pyiceberg SqlCatalog
on a sqlite file with a local warehouse, and the raw data. Each run:

1. starts an embedded Ray head (token auth on, dashboard on 127.0.0.1);
2. generates a new raw batch: Spark application logs and a CSV batch of ML samples, each with a
   few malformed records;
3. runs the declarative pipelines of ``dags/pipelines`` through Airflow (``dag.test()``, the engine
   of ``airflow dags test``; deferrable tasks run their triggers in process): ``spark_logs`` and
   ``curate_samples`` (standing in for the Spark jobs of production), then ``lakehouse``: sense
   curated.samples -> preprocess -> train -> infer -> predictions written back;
4. prints a report (each stage's Ray job and duration, rows in and out, quarantined rows, model
   metrics, and the snapshot lineage from raw files to predictions), read back from the tables;
5. stops everything it started, by pid.

Run it again: the next batch is added, and the report shows that only the new snapshots were read.
``--rows`` scales the data up.

``--stack production`` (``make demo-stack``) runs the same pipelines on the production shape
(:mod:`ray_operators.devstack.stack`): raw data uploaded to ``s3://raw``, tables in an Iceberg
REST catalog on S3 (SeaweedFS), and a Ray head plus a worker node that runs every task. There
Airflow is the real thing: ``airflow standalone`` (scheduler, triggerer, dag-processor, API
server) on a private PostgreSQL (SQLite where no PostgreSQL server is installed). ``spark_logs``
runs from its ``@hourly`` schedule; ``curate_samples`` is triggered through the REST API, and
``lakehouse`` too, as the UI's Trigger button does with params: ``snapshot_ids`` = the snapshot
that curate_samples committed. The report then shows how each run started, ``s3://`` locations
and the Ray node each stage ran on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ray_operators.devstack.standalone import RESUME_HOLD_ENV

CONN_ICEBERG = "iceberg_default"
PIPELINES = ("spark_logs", "curate_samples", "lakehouse")
TABLES = (
    "logs.spark",
    "logs.spark_quarantine",
    "curated.samples",
    "curated.samples_quarantine",
    "features.samples",
    "ml.models",
    "ml.predictions",
)
MALFORMED_EVERY = 97  # one malformed CSV row in this many
#: Loggers shown on the terminal while the embedded demo runs: dag.test()'s, our operators' and
#: sensors' task logs, and our triggers' (a deferred stage streams its Ray job's log from there).
PROGRESS_LOGGERS = (
    "airflow.sdk.definitions.dag",
    "airflow.task.operators.ray_operators",
    "ray_operators.triggers",
)


_STARTED = time.monotonic()


def say(message: str, *, flush: bool = True) -> None:
    """A progress line: ``==> [   12.3s] message``, the time since the demo started."""
    print(f"==> [{time.monotonic() - _STARTED:6.1f}s] {message}", flush=flush)


def environment(root: Path, project: Path) -> dict[str, str]:
    """The embedded default: Airflow home, catalog and raw data under ``root``."""
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{root / 'lakehouse' / 'catalog.db'}",
        "warehouse": f"file://{root / 'lakehouse' / 'warehouse'}",
    }
    return {
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Our operators follow Airflow's switch: wait in the triggerer, never in a worker.
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        # dag.test() runs a deferred task and its trigger in this one process: there is no
        # scheduler whose stale executor event the resume hold waits out (triggers/_resume.py).
        # The real-scheduler stacks (`make airflow`, `--stack production`) keep the 10 s default.
        RESUME_HOLD_ENV: "0",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # Progress on the terminal: our operators' and sensors' task logs (the Ray job's own lines,
        # Ray Data's progress among them) and dag.test()'s task start and end (see _StageProgress).
        "AIRFLOW__LOGGING__NAMESPACE_LEVELS": " ".join(f"{name}=INFO" for name in PROGRESS_LOGGERS),
        "AIRFLOW_CONN_ICEBERG_DEFAULT": json.dumps({"conn_type": "iceberg", "extra": catalog}),
        "LAKEHOUSE_RAW_ROOT": str(root / "raw"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def without_dag_test_hold(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a real scheduler (``airflow standalone``): without dag.test()'s resume hold of 0,
    so the scheduler keeps the default hold (ray_operators/triggers/_resume.py)."""
    return {k: v for k, v in env.items() if k != RESUME_HOLD_ENV}


def scheduler_environment(env: dict[str, str]) -> dict[str, str]:
    """The demo's environment for ``airflow standalone``: only the demo's pipelines run (every DAG
    starts paused, and the demo unpauses its three), with the default resume hold."""
    return {
        **without_dag_test_hold(env),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def prepare(root: Path, project: Path, stack: Any = None) -> dict[str, str]:
    """Folders and environment; with a started production ``stack``, its connections and raw root."""
    for sub in ("airflow", "lakehouse/warehouse", "raw/spark-logs", "raw/samples"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = environment(root, project)
    if stack is not None:
        env.update(stack.airflow_env())
    os.environ.update(env)
    os.environ.pop("RAY_ADDRESS", None)
    return env


def generate_batch(root: Path, rows: int) -> dict[str, Any]:
    """The next raw batch: Spark-log folders and one CSV of samples with a few malformed rows."""
    from ray_operators.devstack.demo_data import generate_spark_logs, generate_tabular

    samples = root / "raw" / "samples"
    batch = len(list(samples.glob("batch-*.csv"))) + 1
    logs = generate_spark_logs(
        root / "raw" / "spark-logs", apps=2, executors=2, lines_per_file=max(50, rows // 40), seed=batch
    )
    table = generate_tabular(rows, seed=batch)
    columns = table.column_names
    lines = [",".join(columns)]
    bad = 0
    for i, record in enumerate(table.to_pylist()):
        if i % MALFORMED_EVERY == MALFORMED_EVERY - 1:
            record = {**record, "f3": "n/a"}  # a value that is not a number
            bad += 1
        lines.append(",".join(str(record[c]) for c in columns))
    path = samples / f"batch-{batch:04d}.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"batch": batch, "samples_file": str(path), "samples_rows": rows, "samples_bad": bad, "logs": logs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    parser.add_argument("--rows", type=int, default=3000, help="ML samples per batch (scale up here)")
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="runtime state (default: PROJECT/.local)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        help="also write every table's rows as <DIR>/<table>.parquet (to compare two runs); on the "
        "production shape also Airflow's metadata database as <DIR>/airflow-metadata.sql (pg_dump)",
    )
    parser.add_argument(
        "--stack",
        choices=("embedded", "production"),
        default="embedded",
        help="embedded: one Ray head, SqlCatalog, local files; production: S3 + REST catalog, two Ray nodes",
    )
    parser.add_argument(
        "--curate-engine",
        choices=("ray", "spark"),
        default="ray",
        help="the engine of spark_logs' curate stage: ray, or spark (spark-submit on the local Spark "
        "runtime; embedded default only)",
    )
    args = parser.parse_args(argv)
    if args.curate_engine == "spark":
        from ray_operators.spark.runtime import missing

        if args.stack == "production":
            parser.error(
                "--curate-engine spark runs on the embedded default: the local Spark has no S3 "
                "file system (hadoop-aws) to read s3://raw and the warehouse"
            )
        if problem := missing():
            parser.error(f"--curate-engine spark: Spark cannot run here: {problem}")

    project = args.project_dir.resolve()
    default_state = project / ".local" / ("stack" if args.stack == "production" else "")
    root = (args.state_dir or default_state).resolve()
    started = time.monotonic()
    stack = None
    if args.stack == "production":
        from ray_operators.devstack.stack import ProductionStack

        say("Starting the production shape: SeaweedFS (S3 + Iceberg REST catalog), Ray head + worker")
        stack = ProductionStack(root / "stack").start()
        assert stack.head is not None and stack.worker is not None  # start() started both
        print(
            f"    S3 {stack.storage.s3_endpoint}, REST catalog {stack.storage.catalog_uri}, "
            f"Ray dashboard {stack.head.address}, worker node pid {stack.worker.pid}",
            flush=True,
        )
    try:
        return _demo(args, project, root, started, stack)
    finally:
        if stack is not None:
            say("Stopping the production stack (Ray worker, Ray head, SeaweedFS)", flush=True)
            stack.stop()


def _demo(args: argparse.Namespace, project: Path, root: Path, started: float, stack: Any) -> int:
    env = prepare(root, project, stack)
    where = "REST catalog on S3, raw data in s3://raw" if stack else "SQLite catalog + warehouse, raw data"
    say(f"State in {root} (Airflow home, {where})", flush=True)
    batch = generate_batch(root, args.rows)
    if stack is not None:
        uploaded = stack.upload(root / "raw", "")
        say(f"Uploaded {len(uploaded)} raw files to {stack.raw_root}", flush=True)
    say(
        f"Raw batch {batch['batch']}: {len(batch['logs']['folders'])} Spark-log folders "
        f"({batch['logs']['bad_total']} malformed lines), {batch['samples_rows']} samples in "
        f"{Path(batch['samples_file']).name} ({batch['samples_bad']} malformed rows)",
        flush=True,
    )

    if stack is None:
        runs, ray_jobs = _run_embedded(project, root, args.curate_engine)
    else:
        runs, ray_jobs = _run_on_scheduler(project, root, env, args.export)
    report = build_report(runs, batch, time.monotonic() - started)
    report["ray_jobs"] = ray_jobs
    if args.export:
        export_tables(args.export)
    print(format_report(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r["state"] == "success" for r in runs) and len(runs) == len(PIPELINES) else 1


def spark_engine_dags(project: Path, root: Path) -> Path:
    """A copy of the project's DAG folder whose ``spark_logs`` curates with ``engine: spark``
    (the shipped spec keeps the default engine), and a local ``spark_default`` connection."""
    import shutil

    import yaml

    folder = root / "dags-spark-engine"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(project / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    spec_path = folder / "pipelines" / "spark_logs.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    for stage in spec["stages"]:
        if stage.get("kind") == "curate":
            stage.update(engine="spark", spark_conn_id="spark_default")
    spec_path.write_text(
        '# Generated by `make demo DEMO_ARGS="--curate-engine spark"` from dags/pipelines/spark_logs.yaml\n'
        + yaml.safe_dump(spec, sort_keys=False)
    )
    os.environ.setdefault(
        "AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"})
    )
    return folder


def _run_embedded(
    project: Path, root: Path, curate_engine: str = "ray"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One Ray head; each pipeline through ``dag.test()``, one after the other."""
    from ray_operators.devstack.ray_cluster import LocalRayHead

    dags = project / "dags"
    if curate_engine == "spark":
        dags = spark_engine_dags(project, root)
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
        say(f"spark_logs curates on Spark (spark-submit, local[2]); its DAG folder: {dags}", flush=True)

    say(
        "Starting an embedded Ray head (token auth on, dashboard on 127.0.0.1), beside Airflow's "
        "metadata database migration and the DAG files' parse",
        flush=True,
    )
    head = LocalRayHead(workdir=root / "ray").launch()
    runs = []
    try:
        migrate = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            stdout=subprocess.DEVNULL,
            env=os.environ.copy(),
        )
        bag = _dagbag(dags)
        if migrate.wait() != 0:
            raise SystemExit(f"airflow db migrate failed (exit {migrate.returncode})")
        head.wait_ready()
        say(f"Ray head ready, Airflow's database migrated; Ray dashboard: {head.address}")
        os.environ.update(head.connection_env("ray_default"))
        for dag_id in PIPELINES:
            runs.append(_run(bag, dag_id))
            if runs[-1]["state"] != "success":
                break
        return runs, _ray_jobs()
    finally:
        say("Stopping the Ray head", flush=True)
        head.stop()
        say("Ray head stopped")


def _run_on_scheduler(
    project: Path, root: Path, env: dict[str, str], export: Path | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``airflow standalone`` on PostgreSQL: spark_logs from its schedule, the other two through
    the REST API (lakehouse with the ``snapshot_ids`` param, as a UI trigger with params)."""
    from ray_operators.devstack.postgres import INSTALL_HINT, LocalPostgres, find_postgres_bin
    from ray_operators.devstack.standalone import StandaloneAirflow

    postgres = None
    database_url = None
    if find_postgres_bin() is not None:
        postgres = LocalPostgres().start()
        database_url = postgres.url
        say(f"PostgreSQL for Airflow's metadata on 127.0.0.1:{postgres.port}", flush=True)
    else:
        say(f"No PostgreSQL server ({INSTALL_HINT}): Airflow's metadata stays in SQLite", flush=True)
        # Fresh metadata each run, as with the throwaway PostgreSQL (the tables persist in S3).
        (root / "airflow" / "airflow.db").unlink(missing_ok=True)
    if database_url:
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database_url
    airflow = StandaloneAirflow(
        home=root / "airflow",
        dags_folder=project / "dags",
        plugins_folder=project / "plugins",
        env=scheduler_environment(env),
        database_url=database_url,
    )
    try:
        say("Starting Airflow: scheduler, triggerer, dag-processor, API server", flush=True)
        airflow.start(timeout=300)
        airflow.wait_api()
        print(f"    Airflow UI {airflow.url} (login admin; password in {airflow.passwords_path})", flush=True)
        airflow.wait_parsed(set(PIPELINES))
        errors = airflow.query("SELECT filename, stacktrace FROM import_error")
        if errors:
            raise SystemExit(f"DAG import errors: {errors}")
        runs: list[dict[str, Any]] = []
        for dag_id in PIPELINES:
            runs.append(_scheduler_run(airflow, dag_id, runs))
            if runs[-1]["state"] != "success":
                break
        return runs, _ray_jobs()
    finally:
        say("Stopping Airflow" + (" and PostgreSQL" if postgres else ""), flush=True)
        airflow.stop()
        if postgres is not None:
            try:
                if export is not None:  # what Airflow kept (XCom, rendered fields, confs), to audit
                    export.mkdir(parents=True, exist_ok=True)
                    (export / "airflow-metadata.sql").write_text(postgres.dump(postgres.database))
            finally:
                postgres.stop()


def _scheduler_run(airflow: Any, dag_id: str, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Start one pipeline the way the demo says (cron, or REST API) and wait for its end."""
    if dag_id == "spark_logs":
        before = {r[0] for r in airflow.query("SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id)}
        airflow.set_paused(dag_id, False)
        started_by = "its @hourly schedule (the scheduler's run of the latest interval)"
        run_id = _new_scheduled_run(airflow, dag_id, before)
    else:
        airflow.set_paused(dag_id, False)
        conf: dict[str, Any] = {}
        if dag_id == "lakehouse":
            curated = next(r for r in earlier if r["dag_id"] == "curate_samples")
            snapshot = curated["tasks"]["curate_csv"]["result"]["output"]["snapshot_id"]
            conf = {"snapshot_ids": [int(snapshot)]}
        run_id = airflow.trigger(dag_id, conf)
        started_by = "the REST API" + (f", params {json.dumps(conf)}" if conf else "")
    say(f"Running pipeline {dag_id}: started by {started_by} (run {run_id})", flush=True)
    state = airflow.wait_run(dag_id, run_id)
    if dag_id == "spark_logs":
        # One run of each pipeline: paused again, spark_logs starts no run of the next hour while
        # the demo goes on (a demo that crossed the hour got a second run, which Airflow's stop
        # would have cut off). If the hour turned during this run, the scheduler creates the next
        # one as soon as this one ends (max_active_runs 1) and may queue its task before the
        # pause lands: that task runs to its end, as Airflow runs a queued task of a paused DAG.
        airflow.set_paused(dag_id, True)
        _wait_no_active_task(airflow, dag_id)
    ((start, end),) = airflow.query(
        "SELECT start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id
    )
    seconds = (_when(end) - _when(start)).total_seconds()
    print(f"    {dag_id}: {state} in {seconds:.1f}s", flush=True)
    tasks = _xcom_results(dag_id, run_id)
    order = [
        r[0]
        for r in airflow.query(
            "SELECT task_id FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
            dag_id,
            run_id,
        )
    ]
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "seconds": seconds,
        "started_by": started_by,
        "tasks": {t: tasks[t] for t in order if t in tasks},
    }


#: Task states of a task that has been handed to the executor and has not ended.
ACTIVE_TASK_STATES = ("queued", "running", "deferred", "restarting", "up_for_retry", "up_for_reschedule")


def _wait_no_active_task(airflow: Any, dag_id: str, timeout: float = 900.0) -> None:
    """Wait until no task of ``dag_id`` is queued, running or between tries (a paused DAG's
    tasks that were queued before the pause still run)."""
    marks = ", ".join("?" for _ in ACTIVE_TASK_STATES)
    query = f"SELECT run_id, task_id FROM task_instance WHERE dag_id = ? AND state IN ({marks})"
    deadline = time.monotonic() + timeout
    while active := airflow.query(query, dag_id, *ACTIVE_TASK_STATES):
        if time.monotonic() > deadline:
            raise SystemExit(f"tasks of {dag_id} still active after {timeout:.0f}s: {active}")
        time.sleep(1)


def _new_scheduled_run(airflow: Any, dag_id: str, before: set[str], timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = airflow.query("SELECT run_id FROM dag_run WHERE dag_id = ? AND run_type = 'scheduled'", dag_id)
        new = sorted({r[0] for r in rows} - before)
        if new:
            return new[-1]
        time.sleep(1)
    raise SystemExit(
        f"the scheduler created no run of {dag_id} in {timeout}s (its latest interval already ran in "
        f"this metadata database?); see {airflow.log_path}"
    )


def _when(value: Any) -> datetime:
    """A timestamp column's value: a datetime on PostgreSQL, its ISO text on SQLite."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _xcom_results(dag_id: str, run_id: str) -> dict[str, Any]:
    """Each task's return value (XCom), read with Airflow's own models."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "return_value"
        )
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


def _ray_jobs() -> list[dict[str, Any]]:
    """The cluster's job list as the Ray dashboard shows it (what anyone with dashboard access sees)."""
    from ray_operators.hooks.ray import RayJobsHook

    keep = ("submission_id", "status", "entrypoint", "runtime_env", "metadata")
    return [{k: job.get(k) for k in keep} for job in RayJobsHook("ray_default").list_jobs()]


class _StageProgress(logging.Handler):
    """One line per task as ``dag.test()`` starts and ends it, with the time into the pipeline."""

    PATTERN = re.compile(r"\[DAG TEST\] (starting|end task) task_id=(\S+)")

    def __init__(self, dag_id: str) -> None:
        super().__init__(logging.INFO)
        self.dag_id = dag_id
        self.started = time.monotonic()
        self.task_started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = self.PATTERN.search(record.getMessage())
        if found is None:
            return
        what, task = found.groups()
        now = time.monotonic()
        if what == "starting":
            self.task_started[task] = now
            line = f"    [{now - self.started:6.1f}s] {self.dag_id}.{task}: started"
        else:
            took = now - self.task_started.get(task, now)
            line = f"    [{now - self.started:6.1f}s] {self.dag_id}.{task}: ended after {took:.1f}s"
        print(line, flush=True)


def _dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(folder))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    return bag


def _run(bag: Any, dag_id: str) -> dict[str, Any]:
    dag = bag.dags[dag_id]
    say(f"Running pipeline {dag_id}: {' -> '.join(t.task_id for t in dag.topological_sort())}", flush=True)
    started = time.monotonic()
    progress = _StageProgress(dag_id)
    dag_logger = logging.getLogger(PROGRESS_LOGGERS[0])
    dag_logger.setLevel(logging.INFO)
    dag_logger.addHandler(progress)
    try:
        run = dag.test()
    finally:
        dag_logger.removeHandler(progress)
    elapsed = time.monotonic() - started
    tasks = _xcom_results(dag_id, run.run_id)
    print(f"    {dag_id}: {run.state} in {elapsed:.1f}s", flush=True)
    order = [t.task_id for t in dag.topological_sort()]
    return {
        "dag_id": dag_id,
        "run_id": run.run_id,
        "state": str(run.state),
        "seconds": elapsed,
        "started_by": "dag.test()",
        "tasks": {t: tasks[t] for t in order if t in tasks},
    }


# ---- the report: numbers read back from the tables ----------------------------------------------


def _sensor_row(run: dict[str, Any], task_id: str, value: Any) -> dict[str, Any]:
    found = value if isinstance(value, dict) else {}
    return {
        "dag_id": run["dag_id"],
        "task_id": task_id,
        "kind": "sensor",
        "snapshot_ids": found.get("snapshot_ids"),
        # "requested" when the run's params named the snapshots, else what it saw
        "found_by": found.get("kind"),
    }


def _stage_row(run: dict[str, Any], task_id: str, value: dict[str, Any]) -> dict[str, Any]:
    result = value.get("result") or {}
    output = result.get("output") or {}
    duration = None
    if value.get("start_time") and value.get("end_time"):
        duration = (value["end_time"] - value["start_time"]) / 1000
    return {
        "dag_id": run["dag_id"],
        "task_id": task_id,
        "kind": result.get("stage"),
        "engine": result.get("engine", "ray"),
        # The Ray job, or the Spark application that ran the stage.
        "ray_job": value.get("submission_id") or f"spark: {value.get('spark_app_id')}",
        "status": value.get("status", "SUCCEEDED"),
        "seconds": duration,
        "rows_in": result.get("rows_in"),
        "rows_out": result.get("rows_out", output.get("rows")),
        "quarantined": result.get("quarantined"),
        "output_table": output.get("table"),
        "snapshot_id": output.get("snapshot_id"),
        "skipped": output.get("skipped"),
        "metrics": result.get("metrics"),
        "model": f"{result['model_name']} v{result['model_version']}" if result.get("model_name") else None,
        "incremental_files": result.get("incremental_files"),
        "ray": result.get("ray"),
        "artifact_uri": result.get("artifact_uri"),
    }


def _lineage_chain(catalog: Any, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From the predictions snapshot back through each snapshot's pinned inputs to the curated
    table (the raw files and the model registry end the walk)."""
    from ray_operators.contract.lineage import INPUT_PREFIX, RUN_ID, RUN_KEY, read_snapshot_ids

    lineage = []
    predictions = next((s for s in stages if s.get("kind") == "infer"), None)
    node = (
        ("ml.predictions", predictions["snapshot_id"]) if predictions and predictions["snapshot_id"] else None
    )
    while node is not None:
        name, snapshot_id = node
        table = catalog.load_table(name)
        snap = table.metadata.snapshot_by_id(int(snapshot_id))
        summary = dict(snap.summary.additional_properties) if snap and snap.summary else {}
        inputs = {k.removeprefix(INPUT_PREFIX): v for k, v in summary.items() if k.startswith(INPUT_PREFIX)}
        lineage.append(
            {
                "table": name,
                "snapshot_id": int(snapshot_id),
                "added_rows": int(summary.get("added-records", 0)),
                "run_id": summary.get(RUN_ID),
                "run_key": summary.get(RUN_KEY),
                "inputs": inputs,
            }
        )
        node = None
        for source, pinned in inputs.items():
            read = read_snapshot_ids(pinned)
            if source not in ("raw", "ml.models") and read:
                node = (source, read[-1])
                break
    return lineage


def _table_rows(catalog: Any, name: str) -> int | None:
    try:
        return len(catalog.load_table(name).scan().to_arrow())
    except Exception:
        return None


def _location(catalog: Any, name: str) -> str | None:
    try:
        return catalog.load_table(name).location()
    except Exception:
        return None


def build_report(runs: list[dict[str, Any]], batch: dict[str, Any], seconds: float) -> dict[str, Any]:
    from ray_operators.iceberg_catalog import build_catalog

    catalog = build_catalog(CONN_ICEBERG)
    stages = []
    for run in runs:
        for task_id, value in run["tasks"].items():
            if not isinstance(value, dict) or "result" not in value:
                stages.append(_sensor_row(run, task_id, value))
            else:
                stages.append(_stage_row(run, task_id, value))
    return {
        "batch": batch,
        "seconds": seconds,
        "runs": [{k: r[k] for k in ("dag_id", "run_id", "state", "seconds", "started_by")} for r in runs],
        "stages": stages,
        "lineage": _lineage_chain(catalog, stages),
        "tables": {name: _table_rows(catalog, name) for name in TABLES},
        "locations": {name: _location(catalog, name) for name in TABLES},
    }


def export_tables(folder: Path) -> None:
    """Every demo table's current rows, as ``<folder>/<table>.parquet``."""
    import pyarrow.parquet as pq

    from ray_operators.iceberg_catalog import build_catalog

    catalog = build_catalog(CONN_ICEBERG)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if catalog.table_exists(name):
            pq.write_table(catalog.load_table(name).scan().to_arrow(), folder / f"{name}.parquet")


def format_report(report: dict[str, Any]) -> str:
    out = ["", f"=== Lakehouse demo report (raw batch {report['batch']['batch']}, {report['seconds']:.0f}s)"]
    for run in report["runs"]:
        out.append(
            f"  pipeline {run['dag_id']}: {run['state']} in {run['seconds']:.1f}s (run {run['run_id']}, "
            f"started by {run['started_by']})"
        )
    out.append("")
    out.append(
        f"  {'stage':<28} {'Ray job (or Spark app)':<50} {'time':>6} {'rows in':>9} {'rows out':>9} {'quarantined':>12}"
    )
    for s in report["stages"]:
        name = f"{s['dag_id']}.{s['task_id']}"
        if s["kind"] == "sensor":
            how = "requested by the run's params" if s.get("found_by") == "requested" else "new snapshots"
            out.append(f"  {name:<28} (sensor) {how}: {s.get('snapshot_ids')}")
            continue
        secs = f"{s['seconds']:.1f}s" if s["seconds"] is not None else "-"
        out.append(
            f"  {name:<28} {s['ray_job']:<50} {secs:>6} {_n(s['rows_in']):>9} {_n(s['rows_out']):>9} "
            f"{_n(s['quarantined']):>12}" + ("  (already committed: skipped)" if s.get("skipped") else "")
        )
        if s.get("incremental_files") is not None:
            out.append(
                f"  {'':<28} read only the data files the new snapshots added: {s['incremental_files']}"
            )
        if s.get("ray"):
            tasks = ", ".join(f"{node} ({n})" for node, n in s["ray"]["task_nodes"].items()) or "-"
            out.append(
                f"  {'':<28} ran on: driver {s['ray']['driver_node']}; tasks {tasks}; "
                f"package from {s['ray']['package']}"
            )
        if s.get("metrics"):
            m = s["metrics"]
            out.append(
                f"  {'':<28} model {s['model']}: holdout accuracy {m.get('holdout_accuracy', 0):.3f} "
                f"on {int(m.get('holdout_rows', 0))} rows, final loss {m.get('loss', float('nan')):.4f}"
            )
            if s.get("artifact_uri"):
                out.append(f"  {'':<28} artifact {s['artifact_uri']}")
    out.append("")
    out.append("  lineage (newest first: each snapshot, the run that wrote it, and what it read)")
    for hop in report["lineage"]:
        inputs = ", ".join(f"{k}@{v}" for k, v in hop["inputs"].items())
        out.append(
            f"    {hop['table']}@{hop['snapshot_id']} (+{hop['added_rows']} rows, run {hop['run_id']})"
        )
        out.append(f"        <- {inputs}")
    out.append("")
    out.append("  table rows now: " + ", ".join(f"{k} {_n(v)}" for k, v in report["tables"].items()))
    if any(report.get("locations", {}).values()):
        out.append("  table locations: " + ", ".join(f"{k} {v}" for k, v in report["locations"].items() if v))
    return "\n".join(out)


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _exit_now(code: int) -> None:
    """Leave at once once the report is out: the interpreter's teardown of a process that ran
    Airflow and Ray clients (their threads, pools and atexit hooks) adds seconds and nothing else;
    every table, state file and report is already written."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit_now(main())

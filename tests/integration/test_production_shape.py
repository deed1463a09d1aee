"""The demo's three pipelines on the production shape (``make demo-stack``), compared with the
embedded default (``make demo``).

The production shape (``ray_operators/devstack/stack.py``): raw data in ``s3://raw``, tables in an
Iceberg REST catalog on S3 (SeaweedFS's ``weed mini``), stage files in ``s3://lakehouse``, a Ray
head (drivers only) plus a worker node that runs every task, with the package shipped in each
job's runtime_env, and ``airflow standalone`` on PostgreSQL. The shipped specs run unchanged; only
the connections differ. Two of the three ways a pipeline starts run here: ``spark_logs`` from its
cron schedule, and ``lakehouse`` through the REST API with the ``snapshot_ids`` param, as a UI
trigger with params does (the backfill is in ``test_production_scheduler.py``).

Checked: every table equals the embedded default's row for row (the model and its predictions
included: training is seeded and reads in table order); every stage's tasks ran on the worker
node; models and fitted states live in object storage; and the S3 keys, the catalog credential
and the Ray token appear nowhere in the demo's output, the Ray job list (specs decoded), the task
logs, or Airflow's metadata database (a ``pg_dump``: XCom, rendered fields, run confs).

Time: about 3 minutes: `make demo-stack` itself, which starts its own services (SeaweedFS, two
Ray nodes, PostgreSQL, `airflow standalone`), since what is compared is what users run. The
embedded side is the session's first `make demo` run (tests/helpers/demo_runs.py).
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from ray_operators.devstack.demo import ACTIVE_TASK_STATES, TABLES
from ray_operators.devstack.postgres import INSTALL_HINT as PG_INSTALL_HINT
from ray_operators.devstack.postgres import find_postgres_bin
from ray_operators.devstack.seaweedfs import INSTALL_HINT, find_weed
from ray_operators.devstack.stack import SECRET_ENV
from tests.helpers.demo_runs import ROWS, clean_env, run_demo

pytestmark = pytest.mark.integration
#: Columns that name where a run's things live or which snapshot it read: they differ by design.
PLACES = {"input_snapshot_id", "run_key", "artifact_uri", "preprocess_state_uri", "created_at"}


def _rows(export: Path, table: str) -> list[tuple]:
    import pyarrow.parquet as pq

    def where(value):  # a raw file's path relative to the raw root, local or s3://
        return re.sub(r"^(s3://raw/|.*/raw/)", "", value) if isinstance(value, str) else value

    rows = pq.read_table(export / f"{table}.parquet").to_pylist()
    return sorted(tuple((k, where(v)) for k, v in r.items() if k not in PLACES) for r in rows)


def _decoded_specs(jobs: list[dict]) -> str:
    """The stage specs inside the job entrypoints, decoded (base64 would hide a secret from grep)."""
    from ray_operators.contract.spec import StageSpec

    out = []
    for job in jobs:
        match = re.search(r"--spec (\S+)", job.get("entrypoint") or "")
        if match:
            out.append(json.dumps(StageSpec.decode(match.group(1)).to_json()))
    return "\n".join(out)


def _copied_rows(dump: str, table: str) -> list[dict[str, str]]:
    """The rows of ``table`` in a ``pg_dump`` (its ``COPY ... FROM stdin`` block), by column."""
    header = re.search(rf"^COPY public\.{table} \((.*)\) FROM stdin;$", dump, re.M)
    assert header, f"no {table} in the dump"
    columns = [c.strip().strip('"') for c in header.group(1).split(",")]
    block = dump[header.end() + 1 :].split("\n\\.\n", 1)[0]
    return [dict(zip(columns, line.split("\t"), strict=True)) for line in block.splitlines() if line]


def _files_text(folder: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("latin-1")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.stat().st_size
    )


@pytest.mark.skipif(find_weed() is None, reason=f"SeaweedFS's `weed` binary not found: {INSTALL_HINT}")
@pytest.mark.skipif(find_postgres_bin() is None, reason=f"PostgreSQL not found: {PG_INSTALL_HINT}")
def test_the_demo_on_the_production_shape_equals_the_embedded_default(tmp_path, demo_runs):
    clean = clean_env()
    # The embedded default: the first of the session's two `make demo` runs, with its export
    # (tests/helpers/demo_runs.py; test_demo.py checks the same run's report).
    embedded, embedded_export = demo_runs.first, demo_runs.first_export
    chosen = {name: "LHTEST" + secrets.token_hex(12).upper() for name in SECRET_ENV}
    # As `make demo-stack` runs: its own PostgreSQL for Airflow, dumped into the export at the end.
    state = tmp_path / "production"
    production, stdout, stderr = run_demo(
        state,
        state / "report.json",
        "--stack",
        "production",
        "--export",
        str(state / "export"),
        env={**clean, **chosen},
    )
    out = stdout + stderr

    for report in (embedded, production):
        assert [r["state"] for r in report["runs"]] == ["success"] * 3, report["runs"]

    # Under the real scheduler: spark_logs from its cron schedule, the other two through the REST
    # API, lakehouse with the snapshot_ids param (a UI trigger with params).
    runs = {r["dag_id"]: r for r in production["runs"]}
    assert runs["spark_logs"]["run_id"].startswith("scheduled__"), runs
    assert runs["curate_samples"]["run_id"].startswith("manual__"), runs
    curated_commit = next(s for s in production["stages"] if s["task_id"] == "curate_csv")["snapshot_id"]
    assert runs["lakehouse"]["started_by"] == (
        f'the REST API, params {{"snapshot_ids": [{curated_commit}]}}'
    ), runs
    # The sensor took the snapshot from the params (a first run would find the same one itself).
    sensed = next(s for s in production["stages"] if s["task_id"] == "sense_curated")
    assert (sensed["found_by"], sensed["snapshot_ids"]) == ("requested", [curated_commit])
    embedded_sensed = next(s for s in embedded["stages"] if s["task_id"] == "sense_curated")
    assert embedded_sensed["found_by"] != "requested"
    assert {r["started_by"] for r in embedded["runs"]} == {"dag.test()"}

    # Row for row, every table: curated, quarantined, features, the model row and its predictions.
    for table in TABLES:
        assert _rows(tmp_path / "production" / "export", table) == _rows(embedded_export, table), table
    assert production["tables"]["ml.predictions"] == ROWS - ROWS // 97

    # Everything lives in object storage: tables in the catalog's bucket, stage files beside them.
    assert all(loc.startswith("s3://warehouse/") for loc in production["locations"].values()), production
    import pyarrow.parquet as pq

    (model,) = pq.read_table(tmp_path / "production" / "export" / "ml.models.parquet").to_pylist()
    assert model["artifact_uri"].startswith("s3://lakehouse/models/samples_clf/runs/")
    assert model["preprocess_state_uri"] == "s3://lakehouse/features/samples/preprocess_state/v1.json"
    curated = next(hop for hop in production["lineage"] if hop["table"] == "curated.samples")
    assert curated["inputs"]["raw"] == "s3://raw/samples"

    # Drivers on the head, every task and actor on the worker node, the package from runtime_env.
    stages = [s for s in production["stages"] if s["kind"] != "sensor"]
    assert {s["kind"] for s in stages} == {"curate", "preprocess", "train", "infer"}
    for stage in stages:
        ray = stage["ray"]
        assert ray["driver_node"].startswith("head:"), stage
        assert ray["task_nodes"] and all(node.startswith("worker:") for node in ray["task_nodes"]), stage
        assert ray["package"] == "runtime_env", stage
    assert all(s.get("ray") is None for s in embedded["stages"] if s["kind"] != "sensor")

    # The secrets: nowhere in the output, the Ray job list, the Airflow home (task logs) or its
    # metadata database on PostgreSQL (XCom, rendered fields, run confs, every other table).
    airflow_home = tmp_path / "production" / "airflow"
    logs = [p for p in (airflow_home / "logs").rglob("*") if p.is_file()]
    assert any("run_id=manual__" in str(p) for p in logs), "the task logs of the REST-triggered runs"
    metadata = (tmp_path / "production" / "export" / "airflow-metadata.sql").read_text()
    assert "COPY public.xcom " in metadata and "curate_csv" in metadata  # the dump holds the runs
    # The REST API stored the trigger's conf on the run, as the UI does; spark_logs was scheduled.
    dag_runs = _copied_rows(metadata, "dag_run")
    lakehouse_run = next(r for r in dag_runs if r["dag_id"] == "lakehouse")
    assert json.loads(lakehouse_run["conf"]) == {"snapshot_ids": [curated_commit]}
    # spark_logs ran from its schedule, and the demo paused it again after its run: a turn of the
    # hour later in the demo starts nothing. (A turn during that run makes a second scheduled run;
    # a task of it queued before the pause ran to its end: nothing is cut off by Airflow's stop.)
    spark_runs = [r for r in dag_runs if r["dag_id"] == "spark_logs"]
    assert {r["run_type"] for r in spark_runs} == {"scheduled"}, spark_runs
    ours = {r["run_id"] for r in production["runs"]}
    assert runs["spark_logs"]["run_id"] in {r["run_id"] for r in spark_runs}
    tasks = _copied_rows(metadata, "task_instance")
    assert {t["state"] for t in tasks if t["run_id"] in ours} == {"success"}, tasks
    assert not [t for t in tasks if t["state"] in ACTIVE_TASK_STATES], tasks
    assert [r["is_paused"] for r in _copied_rows(metadata, "dag") if r["dag_id"] == "spark_logs"] == ["t"]
    # One Ray job per stage of the demo's runs; any other job is a task of such a next-hour run.
    jobs = production["ray_jobs"]
    extra = {r["run_id"] for r in spark_runs} - ours
    assert {job["metadata"]["airflow_run_id"] for job in jobs} <= ours | extra, jobs
    assert len([job for job in jobs if job["metadata"]["airflow_run_id"] in ours]) == len(stages)
    seen = {
        "demo output": out,
        "Ray job list": json.dumps(jobs),
        "stage specs in the Ray job list": _decoded_specs(jobs),
        "demo report": json.dumps(production),
        "Airflow home (task logs, standalone's log)": _files_text(airflow_home),
        "Airflow metadata database (pg_dump)": metadata,
    }
    assert "s3.endpoint" in seen["stage specs in the Ray job list"]  # the decoding worked
    for secret in chosen.values():
        for where, text in seen.items():
            assert secret not in text, f"a secret leaked into the {where}"

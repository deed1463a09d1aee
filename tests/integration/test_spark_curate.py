"""The curate stage on Apache Spark: a real ``spark-submit`` (local master, Spark 3.5.9 with the
Iceberg 1.10.2 runtime) from Airflow into the tests' sqlite catalog, compared with the Ray curate
stage on the same corpus. Both engines implement one protocol (``ray_operators.curation``); these
tests fail when they drift apart.

Skipped, with what to install, where Java or the SQLite JDBC jar is missing (``.ci/run`` installs
them).

Time: about 6 minutes, mostly CPU: every run is a real `spark-submit`, a JVM that takes most
of both cores for a while as it starts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ray_operators.contract.lineage import ENGINE, INPUT_PREFIX, RUN_KEY, SPARK_APP_ID, STAGE
from ray_operators.contract.spec import StageSpec
from ray_operators.curation import protocol, spark_logs
from ray_operators.devstack.demo_data import generate_spark_logs
from ray_operators.iceberg_snapshots import ancestors, committed_with, lineage_of
from ray_operators.spark import runtime
from tests.conftest import wait_for
from tests.helpers.airflow_helpers import get_dag, start_dag_subprocess, task_state, xcoms
from tests.helpers.iceberg_helpers import catalog_properties
from tests.helpers.openlineage_helpers import (
    dags_test,
    datasets,
    last_run,
    read_events,
    strip_producers,
    table_dataset,
    task_event,
    transport_env,
)
from tests.helpers.scheduler_helpers import spec_folder, table_rows

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(runtime.missing() is not None, reason=f"Spark cannot run here: {runtime.missing()}"),
]
SECRET = "s3cr3t-Key-do-not-print"
CURATED = [name for name, _ in spark_logs.CURATED_COLUMNS]
QUARANTINED = [name for name, _ in protocol.QUARANTINE_COLUMNS]

#: Lines the generator does not write: CRLF endings, blank lines, a JSON array, bytes that are not
#: UTF-8, a naive timestamp, flat dotted keys, labels that are not strings, lines longer than the
#: quarantine keeps, and a last line without a newline.
TRICKY = b"".join(
    [
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"crlf line"}\r\n',
        b"\r\n",
        b"   \n",
        b"[1, 2]\n",
        b'{"timestamp":"2026-01-01T00:00:01","log_level":"WARN","message":"naive \xff\xfe bytes",'
        b'"kubernetes.labels.app":"flat-app","kubernetes.pod_name":"flat-pod"}\n',
        b'{"timestamp":"2026-01-01T00:00:02Z","log_level":"ERROR","message":"' + b"x" * 12_000 + b'"}\n',
        b'{"timestamp":"2026-01-01T00:00:03Z","log_level":"ERROR","message":"' + b"y" * 12_000 + b"\n",
        b'{"timestamp":"","log_level":"INFO","message":"m"}\n',
        b'{"timestamp":"2026-01-01T00:00:05Z","log_level":"INFO","message":"numbers as labels",'
        b'"kubernetes":{"pod_name":5,"labels":{"app":{"nested":true},"spark-role":null}}}\n',
        b'{"timestamp":"2026-01-01T00:00:04Z","log_level":"INFO","message":"last line, no newline"}',
    ]
)


@pytest.fixture
def spark_env(airflow_db, iceberg, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    return iceberg


def corpus(root: Path) -> tuple[list[str], dict[str, int]]:
    """Two raw roots: generated application folders in each, and the tricky folder in the second."""
    a, b = root / "raw-a", root / "raw-b"
    first = generate_spark_logs(a, apps=2, lines_per_file=150, malformed_fraction=0.05, seed=11)
    second = generate_spark_logs(b, apps=1, lines_per_file=120, malformed_fraction=0.05, seed=12)
    (b / "spark-tricky").mkdir()
    (b / "spark-tricky" / "driver.log").write_bytes(TRICKY)
    (b / "spark-tricky" / "notes.txt").write_text("not a log file\n")
    # A folder and a file whose names Spark would read as a glob or percent-encode.
    (b / "spark-odd [1]").mkdir()
    (b / "spark-odd [1]" / "driver {a} 1.log").write_bytes(TRICKY.splitlines(keepends=True)[0] * 2)
    folders = sorted([*first["folders"], *second["folders"], "spark-tricky", "spark-odd [1]"])
    return [str(a), str(b)], {"folders": len(folders), "good": first["good"] + second["good"]}


def run(dag_id: str, when: datetime, raw: list[str], output: str):
    dag = get_dag(dag_id)
    return dag.test(
        logical_date=when, run_after=when, run_conf={"raw_a": raw[0], "raw_b": raw[1], "output": output}
    )


def tables_of(catalog, output: str) -> dict[str, object]:
    """What a curate run leaves, engine-neutral: curated rows, quarantined lines, processing rows."""
    processing = catalog.load_table(protocol.processing_table(output)).scan().to_arrow().to_pylist()
    return {
        "curated": table_rows(catalog, output, CURATED),
        "quarantine": table_rows(catalog, protocol.quarantine_table(output), QUARANTINED),
        "processing": sorted(
            (r["folder"], r["status"], r["records_processed"], r["records_quarantined"], r["error"])
            for r in processing
        ),
        "schemas": [
            [(f.name, str(f.field_type), f.required) for f in catalog.load_table(t).schema().fields]
            for t in (output, protocol.quarantine_table(output), protocol.processing_table(output))
        ],
    }


def snapshot_ids(catalog, output: str) -> dict[str, list[int]]:
    return {
        t: [s.snapshot_id for s in catalog.load_table(t).metadata.snapshots]
        for t in (output, protocol.quarantine_table(output), protocol.processing_table(output))
    }


def recording_spark_submit(tmp_path: Path, monkeypatch) -> Path:
    """A ``spark-submit`` first on the task's PATH that records its arguments and properties file,
    then runs the real one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "spark-submit.json"
    shim = bin_dir / "spark-submit"
    shim.write_text(
        f"""#!{sys.executable}
import json, os, stat, sys
argv = sys.argv[1:]
entry = {{"argv": argv}}
if "--properties-file" in argv:
    path = argv[argv.index("--properties-file") + 1]
    entry["properties"] = open(path).read()
    entry["properties_mode"] = stat.S_IMODE(os.stat(path).st_mode)
with open({str(record)!r}, "a") as out:
    out.write(json.dumps(entry) + "\\n")
real = os.path.join(os.environ["SPARK_HOME"], "bin", "spark-submit")
os.execv(real, [real, *argv])
"""
    )
    shim.chmod(0o755)
    monkeypatch.setenv("SPARK_TEST_PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_spark_and_ray_curate_the_same_corpus_row_for_row(spark_env, ray_head, tmp_path, monkeypatch, capfd):
    iceberg = spark_env
    catalog = iceberg.catalog
    # A secret catalog property (meaningless to a file:// warehouse): it may reach Spark only
    # through the operator's private properties file.
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{iceberg.conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "iceberg",
                "extra": {**catalog_properties(iceberg.root), "s3.secret-access-key": SECRET},
            }
        ),
    )
    record = recording_spark_submit(tmp_path, monkeypatch)
    raw, counts = corpus(tmp_path)
    when = datetime(2026, 6, 1, tzinfo=UTC)
    by_spark = run("curate_logs_spark", when, raw, "logs.by_spark")
    by_ray = run("curate_logs_ray", when, raw, "logs.by_ray")
    assert by_spark.state == "success" and by_ray.state == "success"

    spark_tables, ray_tables = tables_of(catalog, "logs.by_spark"), tables_of(catalog, "logs.by_ray")
    assert spark_tables == ray_tables
    assert len(spark_tables["curated"]) == counts["good"] + 5 + 2  # the tricky folders' good lines
    processing = spark_tables["processing"]
    assert [p[1] for p in processing].count(protocol.SUCCESS) == counts["folders"]
    assert [p[1] for p in processing].count(protocol.PROCESSING) == counts["folders"]
    reasons = {r[3].split(":")[0] for r in spark_tables["quarantine"]}
    assert reasons == {"bad_json", "missing_field", "bad_timestamp"}
    long_bad = [
        r for r in spark_tables["quarantine"] if r[2].startswith('{"timestamp":"2026-01-01T00:00:03Z"')
    ]
    assert len(long_bad) == 1 and len(long_bad[0][2]) == protocol.RAW_LINE_LIMIT

    # Lineage and identity: the curation run key rule, the engine, the Spark application.
    table = catalog.load_table("logs.by_spark")
    head = table.metadata.snapshot_by_id(table.metadata.current_snapshot_id)
    assert head.summary[RUN_KEY] == f"curate_logs_spark/curate/run={by_spark.run_id}"
    assert head.summary[ENGINE] == "spark" and head.summary[SPARK_APP_ID].startswith("local-")
    assert head.summary[INPUT_PREFIX + "raw"] == ",".join(raw)
    ray_head_snap = catalog.load_table("logs.by_ray").current_snapshot()
    assert ray_head_snap.summary[ENGINE] == "ray"
    value = xcoms("curate_logs_spark", by_spark.run_id, "curate")["return_value"]
    assert value["result"]["output"]["snapshot_id"] == head.snapshot_id
    assert value["result"]["output"]["rows"] == len(spark_tables["curated"])

    # The secret went to Spark in a private properties file only.
    submits = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(submits) == 1
    argv = submits[0]["argv"]
    assert SECRET not in " ".join(argv)
    assert submits[0]["properties_mode"] == 0o600
    assert f"spark.sql.catalog.{iceberg.conn_id}.s3.secret-access-key {SECRET}" in submits[0]["properties"]
    assert "iceberg-spark-runtime-3.5_2.12-1.10.2.jar" in argv[argv.index("--jars") + 1]
    spec = StageSpec.decode(argv[-1])
    assert "s3.secret-access-key" not in spec.catalog_properties
    # Nor is it in the task's output (spark-submit's and the driver's, which the hook logs).
    out = capfd.readouterr()
    assert "SparkSubmitHook" in out.out + out.err and SECRET not in out.out + out.err

    # A re-run of the same DAG run writes nothing, not even a staged snapshot.
    before = snapshot_ids(catalog, "logs.by_spark")
    again = run("curate_logs_spark", when, raw, "logs.by_spark")
    assert again.run_id == by_spark.run_id and again.state == "success"
    assert snapshot_ids(catalog, "logs.by_spark") == before

    # A second batch: the next run of each engine curates the new folder alone, and the engines
    # still agree.
    batch = generate_spark_logs(raw[0], apps=1, lines_per_file=60, malformed_fraction=0.05, seed=13)
    later = datetime(2026, 6, 2, tzinfo=UTC)
    second_spark = run("curate_logs_spark", later, raw, "logs.by_spark")
    second_ray = run("curate_logs_ray", later, raw, "logs.by_ray")
    assert second_spark.state == "success" and second_ray.state == "success"
    assert tables_of(catalog, "logs.by_spark") == tables_of(catalog, "logs.by_ray")
    assert len(tables_of(catalog, "logs.by_spark")["curated"]) == len(spark_tables["curated"]) + batch["good"]
    new_commit = catalog.load_table("logs.by_spark").current_snapshot()
    assert int(new_commit.summary["added-records"]) == batch["good"]
    assert new_commit.summary[RUN_KEY] == f"curate_logs_spark/curate/run={second_spark.run_id}"


def test_a_retry_after_the_spark_driver_is_killed_commits_once(spark_env, tmp_path):
    iceberg = spark_env
    catalog = iceberg.catalog
    raw = [str(tmp_path / "raw-a"), str(tmp_path / "raw-b")]
    # Large enough that the driver is still parsing when it is killed.
    a = generate_spark_logs(raw[0], apps=3, executors=3, lines_per_file=20_000, seed=21)
    b = generate_spark_logs(raw[1], apps=1, executors=3, lines_per_file=20_000, seed=22)
    when = datetime(2026, 6, 3, tzinfo=UTC)
    # The child runs the DAG with these params by default (no run conf in start_dag_subprocess).
    os.environ["SPARK_TEST_RAW_A"], os.environ["SPARK_TEST_RAW_B"] = raw
    worker = start_dag_subprocess("curate_logs_spark_default", when, tmp_path / "worker.log")
    try:
        wait_for(
            lambda: (
                catalog.table_exists("logs.spark_processing")
                and catalog.load_table("logs.spark_processing").current_snapshot() is not None
            ),
            240,
            interval=0.1,
            what="the PROCESSING rows of the first try",
        )
        driver = wait_for(lambda: _spark_driver(raw[0]), 30, interval=0.1, what="the Spark driver process")
        os.kill(driver, signal.SIGKILL)  # the driver dies mid-job: no cleanup, no FAILED row
        assert (
            committed_with(catalog.load_table("logs.spark").metadata, RUN_KEY, _run_key(catalog)) is None
        ), "the killed driver committed its output"
        worker.wait(timeout=600)
    finally:
        if worker.poll() is None:
            worker.kill()
        os.environ.pop("SPARK_TEST_RAW_A", None)
        os.environ.pop("SPARK_TEST_RAW_B", None)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "DAG RUN STATE success" in log, log[-3000:]

    run_key = _run_key(catalog)
    logs = catalog.load_table("logs.spark")
    on_branch = [s for s in ancestors(logs.metadata) if s.summary.get(RUN_KEY) == run_key]
    assert len(on_branch) == 1
    assert logs.scan().to_arrow().num_rows == a["good"] + b["good"]
    rows = catalog.load_table("logs.spark_processing").scan().to_arrow().to_pylist()
    started = {r["job_id"] for r in rows if r["status"] == protocol.PROCESSING}
    finished = {r["job_id"] for r in rows if r["status"] == protocol.SUCCESS}
    assert len(started) == 1 and len(finished) == 1 and started != finished, rows[:2]
    assert sorted(r["folder"] for r in rows if r["status"] == protocol.SUCCESS) == sorted(
        a["folders"] + b["folders"]
    )
    assert not [r for r in rows if r["status"] == protocol.FAILED]
    run_id = next(r["run_key"] for r in rows).rpartition("run=")[2]
    assert task_state("curate_logs_spark_default", run_id, "curate") == "success"


def _run_key(catalog) -> str:
    rows = catalog.load_table("logs.spark_processing").scan().to_arrow().to_pylist()
    return rows[0]["run_key"]


def _spark_driver(marker: str) -> int | None:
    """The pid of the Python driver of the application curating ``marker``'s root."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except (OSError, UnicodeDecodeError):
            continue
        if len(argv) > 3 and argv[1].endswith("curate_spark_logs.py") and "--spec" in argv:
            if marker in StageSpec.decode(argv[argv.index("--spec") + 1]).raw_paths:
                return int(entry.name)
    return None


def test_two_tries_of_one_run_publish_once_through_iceberg_wap(spark_env, tmp_path):
    """A zombie try and its retry both stage their output: Iceberg publishes one, refuses the
    other (the WAP id is the run key); a publish onto a moved branch keeps the run key and lineage."""
    import subprocess

    rt = runtime.local_runtime()
    script = Path(__file__).resolve().parents[1] / "jobs" / "spark_wap_race.py"
    iceberg = spark_env
    from ray_operators.spark.conf import spark_catalog_conf

    public, _ = spark_catalog_conf("lake", catalog_properties(iceberg.root))
    cmd = [str(rt.spark_submit), "--master", "local[1]", "--jars", ",".join(rt.jars())]
    for key, value in public.items():
        cmd += ["--conf", f"{key}={value}"]
    done = subprocess.run(
        [*cmd, str(script)],
        env={**os.environ, **rt.env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"]["skipped"] is False and result["second"]["skipped"] is True
    assert result["second"]["snapshot_id"] == result["first"]["snapshot_id"]
    assert result["rows"] == 3  # the first try's rows, once
    assert result["moved"]["published_wap_id"] == "race/run=2"
    assert result["moved"]["found_by_run_key"] is True
    assert result["moved"]["lineage_engine"] == "spark"
    assert result["moved"]["rows"] == 3 + 2 + 5


CHAIN_SPECS = {
    "logs_on_spark.yaml": """
name: logs_on_spark
start_date: 2026-01-01
schedule: null
retries: 0
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: curate_logs
    kind: curate
    engine: spark
    spark_conn_id: spark_local
    raw_paths: ${TEST_RAW_ROOT}
    output: logs.spark
""",
    "logs_to_model.yaml": """
name: logs_to_model
start_date: 2026-01-01
schedule: null
retries: 0
connections: {iceberg_conn_id: iceberg_test}
stages:
  - name: sense_logs
    kind: sense
    table: logs.spark
    start_from: incremental
    poke_interval: 1
    timeout: 600
  - name: features
    kind: preprocess
    input: logs.spark
    output: features.logs
    transforms:
      - fn: ray_operators.jobs.examples:log_features
    standardize: [message_length]
  - name: train
    kind: train
    features: features.logs
    feature_columns: [message_length, level_code, is_driver]
    label_column: is_problem
    model_name: logs_clf
    registry: ml.models
    epochs: 2
    use_gpu: false
""",
}
# The same curation, from a raw root that is a file: Spark cannot list it, and the task fails.
CHAIN_SPECS["logs_on_spark_broken.yaml"] = (
    CHAIN_SPECS["logs_on_spark.yaml"]
    .replace("name: logs_on_spark", "name: logs_on_spark_broken")
    .replace("${TEST_RAW_ROOT}", "${TEST_RAW_FILE}")
    .replace("output: logs.spark", "output: logs.spark_broken")
)


def test_sensor_sees_the_spark_snapshot_and_lineage_runs_raw_spark_ray_model(spark_env, ray_head, tmp_path):
    """Spark curates, the pipeline downstream senses exactly that snapshot, Ray preprocesses it and
    trains on it: every commit names what it read, back to the raw root; both pipelines run under
    ``airflow dags test`` with OpenLineage's file transport, and every task's event names exactly
    the snapshots it read and wrote."""
    catalog = spark_env.catalog
    raw = tmp_path / "raw"
    counts = generate_spark_logs(raw, apps=2, lines_per_file=200, malformed_fraction=0.05, seed=31)
    folder = spec_folder(tmp_path, CHAIN_SPECS)
    events_file = tmp_path / "openlineage.jsonl"
    raw_file = tmp_path / "a-file-not-a-folder.log"  # a raw root Spark cannot list: the job fails
    raw_file.write_text("{}\n")
    env = {
        **transport_env(events_file),
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "TEST_RAW_ROOT": str(raw),
        "TEST_RAW_FILE": str(raw_file),
    }
    for dag_id, state in (
        ("logs_on_spark", "success"),
        ("logs_to_model", "success"),
        ("logs_on_spark_broken", "failed"),
    ):
        done = dags_test(dag_id, "2026-06-05T00:00:00+00:00", env)
        assert last_run(dag_id)[1] == state, (done.stdout + done.stderr)[-4000:]

    logs = catalog.load_table("logs.spark")
    spark_snap = logs.current_snapshot()
    assert spark_snap.summary[ENGINE] == "spark"
    features = catalog.load_table("features.logs")
    feature_snap = features.current_snapshot()
    # The sensor handed the preprocess stage exactly the Spark job's snapshot.
    assert feature_snap.summary[INPUT_PREFIX + "logs.spark"] == str(spark_snap.snapshot_id)
    assert lineage_of(features.metadata, feature_snap)[STAGE] == "preprocess"
    # ... as the sensor's snapshots (the run key follows them).
    assert feature_snap.summary[RUN_KEY] == f"logs_to_model/features/snapshots={spark_snap.snapshot_id}"
    assert features.scan().to_arrow().num_rows == logs.scan().to_arrow().num_rows == counts["good"]
    registry = catalog.load_table("ml.models")
    model_snap = registry.current_snapshot()
    model_row = registry.scan().to_arrow().to_pylist()[-1]
    assert model_row["model_name"] == "logs_clf"

    # The chain, read back from the commits alone.
    assert model_row["input_snapshot_id"] == feature_snap.snapshot_id
    chain = [f"model {model_row['model_name']} v{model_row['model_version']}"]
    read = lineage_of(registry.metadata, model_snap)[INPUT_PREFIX + "features.logs"]
    assert read.split("..")[-1].split("+")[-1] == str(feature_snap.snapshot_id)
    chain.append(f"ray preprocess {feature_snap.snapshot_id}")
    upstream = lineage_of(features.metadata, feature_snap)[INPUT_PREFIX + "logs.spark"]
    spark_lineage = lineage_of(logs.metadata, logs.metadata.snapshot_by_id(int(upstream)))
    chain.append(f"spark {spark_lineage[SPARK_APP_ID]} {upstream}")
    chain.append(spark_lineage[INPUT_PREFIX + "raw"])
    assert chain[-1] == str(raw)
    assert spark_lineage[ENGINE] == "spark" and spark_lineage[STAGE] == "curate"
    print(" <- ".join(chain))

    # The same chain in OpenLineage: each task's event names exactly the snapshots it read and wrote.
    events = read_events(events_file)
    spark_id, feature_id = spark_snap.snapshot_id, feature_snap.snapshot_id
    curate = task_event(events, "logs_on_spark", "curate_logs", "COMPLETE")
    assert datasets(curate, "inputs") == [{"namespace": "file", "name": str(raw)}]
    quarantine_id = catalog.load_table("logs.spark_quarantine").metadata.current_snapshot_id
    assert datasets(curate, "outputs") == sorted(
        [
            table_dataset(catalog, "logs.spark", spark_id),
            table_dataset(catalog, "logs.spark_quarantine", quarantine_id),
        ],
        key=lambda d: (d["namespace"], d["name"]),
    )
    assert strip_producers(curate["run"]["facets"]["rayLakehouse"]) == {
        "stage": "curate",
        "engine": "spark",
        "status": "SUCCEEDED",
        "runKey": spark_snap.summary.get(RUN_KEY) or spark_snap.summary["published-wap-id"],
        "sparkAppId": spark_lineage[SPARK_APP_ID],
    }
    sense = task_event(events, "logs_to_model", "sense_logs", "COMPLETE")
    assert datasets(sense, "inputs") == [table_dataset(catalog, "logs.spark", spark_id)]
    pre = task_event(events, "logs_to_model", "features", "COMPLETE")
    assert datasets(pre, "inputs") == [table_dataset(catalog, "logs.spark", spark_id)]
    assert datasets(pre, "outputs") == [table_dataset(catalog, "features.logs", feature_id)]
    train = task_event(events, "logs_to_model", "train", "COMPLETE")
    assert datasets(train, "inputs") == [table_dataset(catalog, "features.logs", feature_id)]
    assert datasets(train, "outputs") == [table_dataset(catalog, "ml.models", model_snap.snapshot_id)]
    facet = strip_producers(train["run"]["facets"]["rayLakehouse"])
    assert (facet["stage"], facet["engine"], facet["status"]) == ("train", "ray", "SUCCEEDED")
    assert facet["submissionId"] == model_snap.summary["lakehouse.ray-submission-id"]
    # Task events only: a failed DAG run has a FAIL event of its own, named by the DAG id.
    failed = {e["job"]["name"] for e in events if e["eventType"] == "FAIL" and "." in e["job"]["name"]}
    assert failed == {"logs_on_spark_broken.curate_logs"}

    # The failed Spark curation: its raw root in, its output without a version, no application.
    fail = task_event(events, "logs_on_spark_broken", "curate_logs", "FAIL")
    assert datasets(fail, "inputs") == [{"namespace": "file", "name": str(raw_file)}]
    uri = catalog.properties["uri"]
    symlink = {
        "symlinks": {"identifiers": [{"namespace": uri, "name": "logs.spark_broken", "type": "TABLE"}]}
    }
    expected = (
        table_dataset(catalog, "logs.spark_broken", None)
        if catalog.table_exists("logs.spark_broken")
        else {"namespace": uri, "name": "logs.spark_broken", "facets": symlink}
    )
    assert datasets(fail, "outputs") == [expected]
    assert "version" not in expected.get("facets", {})
    run_id = last_run("logs_on_spark_broken")[0]
    assert strip_producers(fail["run"]["facets"]["rayLakehouse"]) == {
        "stage": "curate",
        "engine": "spark",
        "status": "FAILED",
        "runKey": f"logs_on_spark_broken/curate_logs/run={run_id}",
    }

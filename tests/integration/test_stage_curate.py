"""The curate stage end to end: a real Ray job through Airflow into a real SqlCatalog."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import DAG_ID, RUN_KEY, SUBMISSION_ID
from ray_operators.contract.spec import StageSpec
from ray_operators.devstack.demo_data import generate_spark_logs
from ray_operators.jobs.write import find_committed
from tests.helpers.airflow_helpers import get_dag, jobs_of, xcoms

pytestmark = pytest.mark.integration
DAG = "curate_spark_logs"


def _rows(iceberg, table):
    return iceberg.catalog.load_table(table).scan().to_arrow()


def test_curate_types_good_lines_quarantines_bad_ones_and_tags_lineage(
    airflow_db, ray_head, iceberg, tmp_path
):
    raw = tmp_path / "raw"
    counts = generate_spark_logs(raw, apps=2, lines_per_file=120, malformed_fraction=0.05, seed=3)
    when = datetime(2026, 5, 1, tzinfo=UTC)
    run = get_dag(DAG).test(logical_date=when, run_after=when, run_conf={"raw_root": str(raw)})
    assert run.state == "success"

    value = xcoms(DAG, run.run_id, "curate")["return_value"]
    result = value["result"]
    logs, quarantine = _rows(iceberg, "logs.spark"), _rows(iceberg, "logs.spark_quarantine")
    assert logs.num_rows == counts["good"] == result["rows_out"]
    assert quarantine.num_rows == counts["bad_total"] == result["quarantined"]
    reasons = [r.split(":")[0] for r in quarantine.column("reason").to_pylist()]
    assert {k: reasons.count(k) for k in counts["bad"]} == counts["bad"]
    assert logs.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    # Exactly the declared columns: nothing of the parsed-line records leaks into the table schema.
    from ray_operators.jobs.curate import schemas

    for table, declared in zip(("logs.spark", "logs.spark_quarantine"), schemas()[:2], strict=True):
        columns = [f.name for f in iceberg.catalog.load_table(table).schema().fields]
        assert columns == declared.names
    assert set(logs.column("spark_role").to_pylist()) == {"driver", "executor"}
    # Lineage and identity in the snapshot summary.
    snap = iceberg.catalog.load_table("logs.spark").metadata.snapshot_by_id(result["output"]["snapshot_id"])
    assert snap.summary[DAG_ID] == DAG
    assert snap.summary[SUBMISSION_ID] == value["submission_id"]
    # Curation is keyed by run: its processing table makes it exactly-once per raw folder.
    assert snap.summary[RUN_KEY] == f"{DAG}/curate/run={run.run_id}"
    # Processing metadata: one SUCCESS row per folder, with its counts.
    processing = _rows(iceberg, "logs.spark_processing").to_pylist()
    done = {r["folder"]: r for r in processing if r["status"] == "SUCCESS"}
    assert sorted(done) == sorted(counts["folders"])
    assert sum(r["records_processed"] for r in done.values()) == counts["good"]
    # The committed snapshot rides on the output asset's event.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        extras = [e.extra for e in session.query(AssetEvent).all() if e.source_dag_id == DAG]
    assert any(e.get("snapshot_id") == result["output"]["snapshot_id"] for e in extras)


def test_rerun_writes_nothing_twice_and_new_batch_is_processed_alone(
    airflow_db, ray_head, hook, iceberg, tmp_path
):
    raw = tmp_path / "raw"
    first = generate_spark_logs(raw, apps=1, lines_per_file=80, seed=4)
    when = datetime(2026, 5, 2, tzinfo=UTC)
    dag = get_dag(DAG)
    run = dag.test(logical_date=when, run_after=when, run_conf={"raw_root": str(raw)})
    assert run.state == "success"
    before = _rows(iceberg, "logs.spark").num_rows
    snapshots_before = len(iceberg.catalog.load_table("logs.spark").metadata.snapshots)

    # The same stage run again as a brand-new Ray job (the job record is gone, a backfill re-runs...):
    # the write layer finds its run key and commits nothing.
    value = xcoms(DAG, run.run_id, "curate")["return_value"]
    spec_arg = next(j for j in jobs_of(hook, DAG, run.run_id))["entrypoint"].split("--spec ")[1]
    spec = StageSpec.decode(spec_arg)
    hook.submit_job(
        entrypoint=f"python -m ray_operators.jobs.run_stage --spec {spec.encode()}",
        submission_id=value["submission_id"] + "-replay",
    )
    from tests.conftest import wait_for

    info = wait_for(
        lambda: (
            (i := hook.get_job_info(value["submission_id"] + "-replay"))["status"] in ("SUCCEEDED", "FAILED")
            and i
        ),
        120,
        what="replay job",
    )
    assert info["status"] == "SUCCEEDED"
    assert _rows(iceberg, "logs.spark").num_rows == before
    assert len(iceberg.catalog.load_table("logs.spark").metadata.snapshots) == snapshots_before

    # A new batch lands; the next run processes only the new folder.
    second = generate_spark_logs(raw, apps=1, lines_per_file=50, seed=5)
    later = datetime(2026, 5, 3, tzinfo=UTC)
    run2 = dag.test(logical_date=later, run_after=later, run_conf={"raw_root": str(raw)})
    result = xcoms(DAG, run2.run_id, "curate")["return_value"]["result"]
    assert result["folders"] == second["folders"]
    assert first["folders"][0] in result["skipped_folders"]
    assert _rows(iceberg, "logs.spark").num_rows == before + second["good"]


def test_empty_input_still_records_completion(airflow_db, ray_head, iceberg, tmp_path):
    raw = tmp_path / "empty"
    raw.mkdir()
    when = datetime(2026, 5, 4, tzinfo=UTC)
    run = get_dag(DAG).test(logical_date=when, run_after=when, run_conf={"raw_root": str(raw)})
    assert run.state == "success"
    result = xcoms(DAG, run.run_id, "curate")["return_value"]["result"]
    assert result["rows_out"] == 0
    table = iceberg.catalog.load_table("logs.spark")
    run_key = table.metadata.snapshot_by_id(result["output"]["snapshot_id"]).summary[RUN_KEY]
    assert run_key.startswith(f"{DAG}/curate/")
    assert find_committed(table, run_key).snapshot_id == result["output"]["snapshot_id"]


def test_schema_mismatch_fails_before_writing_and_names_the_column(
    airflow_db, ray_head, iceberg, tmp_path, capfd
):
    iceberg.catalog.create_namespace_if_not_exists("logs")
    iceberg.catalog.create_table(
        "logs.spark", schema=pa.schema([("timestamp", pa.string()), ("log_level", pa.string())])
    )
    raw = tmp_path / "raw"
    generate_spark_logs(raw, apps=1, lines_per_file=30, seed=6)
    when = datetime(2026, 5, 5, tzinfo=UTC)
    run = get_dag(DAG).test(logical_date=when, run_after=when, run_conf={"raw_root": str(raw)})
    out = capfd.readouterr()
    assert run.state == "failed"
    assert "schema mismatch writing logs.spark" in out.out + out.err
    assert "column(s) ['app', 'message'," in out.out + out.err
    assert "column 'timestamp' is timestamp[us, tz=UTC]" in out.out + out.err
    assert iceberg.catalog.load_table("logs.spark").metadata.snapshots == []

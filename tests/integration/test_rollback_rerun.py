"""A rolled-back write is not a commit: after a rollback of the output table, clearing and
re-running the same interval writes again, once, on the branch head, and its lineage says which
rolled-back snapshot it replaces. Real Ray head, real SqlCatalog, through Airflow (dag.test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ray_operators.contract.lineage import INPUT_PREFIX, REPLACES_ROLLED_BACK, RUN_KEY
from ray_operators.devstack.demo_data import generate_spark_logs
from ray_operators.iceberg_snapshots import ancestors
from tests.helpers.airflow_helpers import run_dag, xcoms
from tests.helpers.iceberg_helpers import RAW_FEATURES, raw_feature_batch

pytestmark = pytest.mark.integration


def _output(dag_id: str, run_id: str, task: str) -> dict:
    return xcoms(dag_id, run_id, task)["return_value"]["result"]["output"]


def _rollback_to_parent(table, snapshot_id: int) -> int:
    parent = table.metadata.snapshot_by_id(snapshot_id).parent_snapshot_id
    table.manage_snapshots().set_current_snapshot(parent).commit()
    return parent


def test_preprocess_rerun_after_rollback_writes_again(airflow_db, ray_head, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.raw", schema=RAW_FEATURES)
    raw.append(raw_feature_batch(0, 30))
    first = raw.metadata.current_snapshot_id
    raw.append(raw_feature_batch(30, 20))
    second = raw.metadata.current_snapshot_id
    day1, day2 = datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 2, tzinfo=UTC)
    conf1 = {"inputs_json": json.dumps([{"table": "db.raw", "snapshot_id": first}])}
    conf2 = {
        "inputs_json": json.dumps([{"table": "db.raw", "from_snapshot_id": first, "to_snapshot_id": second}])
    }

    run1 = run_dag("preprocess_features", day1, run_conf=conf1)
    run2 = run_dag("preprocess_features", day2, run_conf=conf2)
    assert run1.state == run2.state == "success"
    written = _output("preprocess_features", run2.run_id, "preprocess")
    features = iceberg.catalog.load_table("db.features")
    assert features.scan().to_arrow().num_rows == 50

    # An operator rolls day 2's write back, then clears and re-runs day 2.
    base = _rollback_to_parent(features, written["snapshot_id"])
    assert iceberg.catalog.load_table("db.features").scan().to_arrow().num_rows == 30
    rerun = run_dag("preprocess_features", day2, run_conf=conf2)
    assert rerun.state == "success" and rerun.run_id == run2.run_id
    again = _output("preprocess_features", rerun.run_id, "preprocess")
    # It wrote again (not "skipped", not the rolled-back snapshot), once, on the branch head.
    assert again["skipped"] is False and again["snapshot_id"] != written["snapshot_id"]
    table = iceberg.catalog.load_table("db.features")
    assert table.metadata.current_snapshot_id == again["snapshot_id"]
    assert table.metadata.snapshot_by_id(again["snapshot_id"]).parent_snapshot_id == base
    assert sorted(table.scan().to_arrow()["total"].to_pylist()) == [float(i) + 1.0 for i in range(50)]
    snap = table.metadata.snapshot_by_id(again["snapshot_id"])
    assert snap.summary[RUN_KEY] == table.metadata.snapshot_by_id(written["snapshot_id"]).summary[RUN_KEY]
    assert snap.summary[REPLACES_ROLLED_BACK] == str(written["snapshot_id"])
    assert snap.summary[INPUT_PREFIX + "db.raw"] == f"{first}..{second}"

    # A third run of day 2: its job's commit is on the branch, so that job answers; nothing new.
    snapshots = len(table.metadata.snapshots)
    third = run_dag("preprocess_features", day2, run_conf=conf2)
    assert _output("preprocess_features", third.run_id, "preprocess")["snapshot_id"] == again["snapshot_id"]
    table = iceberg.catalog.load_table("db.features")
    assert table.scan().to_arrow().num_rows == 50 and len(table.metadata.snapshots) == snapshots


def test_curation_after_rollback_curates_the_rolled_back_units_again(airflow_db, ray_head, iceberg, tmp_path):
    raw = tmp_path / "raw"
    batch1 = generate_spark_logs(raw, apps=1, lines_per_file=40, seed=21)
    day1, day2, day3 = (datetime(2026, 8, d, tzinfo=UTC) for d in (11, 12, 13))
    conf = {"raw_root": str(raw)}
    assert run_dag("curate_spark_logs", day1, run_conf=conf).state == "success"
    batch2 = generate_spark_logs(raw, apps=1, lines_per_file=30, seed=22)
    run2 = run_dag("curate_spark_logs", day2, run_conf=conf)
    written = _output("curate_spark_logs", run2.run_id, "curate")
    logs = iceberg.catalog.load_table("logs.spark")
    assert logs.scan().to_arrow().num_rows == batch1["good"] + batch2["good"]

    # Roll the curated table back past day 2, then clear and re-run day 2: its folder is curated
    # again, although the processing table still says SUCCESS for it.
    _rollback_to_parent(logs, written["snapshot_id"])
    assert iceberg.catalog.load_table("logs.spark").scan().to_arrow().num_rows == batch1["good"]
    rerun = run_dag("curate_spark_logs", day2, run_conf=conf)
    assert rerun.state == "success"
    result = xcoms("curate_spark_logs", rerun.run_id, "curate")["return_value"]["result"]
    assert result["folders"] == batch2["folders"] and result["output"]["skipped"] is False
    logs = iceberg.catalog.load_table("logs.spark")
    folders = logs.scan().to_arrow()["source_folder"].to_pylist()
    assert {f: folders.count(f) for f in set(folders)} == {
        batch1["folders"][0]: batch1["good"],
        batch2["folders"][0]: batch2["good"],
    }
    snap = logs.metadata.snapshot_by_id(result["output"]["snapshot_id"])
    assert snap.summary[REPLACES_ROLLED_BACK] == str(written["snapshot_id"])

    # Roll back again, and this time a *new* run (day 3) comes: it reclaims the rolled-back unit,
    # because a SUCCESS row counts only while its run's commit is on the curated table's branch.
    _rollback_to_parent(logs, result["output"]["snapshot_id"])
    run3 = run_dag("curate_spark_logs", day3, run_conf=conf)
    result3 = xcoms("curate_spark_logs", run3.run_id, "curate")["return_value"]["result"]
    assert result3["folders"] == batch2["folders"] and result3["skipped_folders"] == batch1["folders"]
    logs = iceberg.catalog.load_table("logs.spark")
    assert logs.scan().to_arrow().num_rows == batch1["good"] + batch2["good"]
    assert len(ancestors(logs.metadata)) == 2  # day 1's commit and day 3's: nothing else on the branch

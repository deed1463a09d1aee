"""Training ingest (Ray Train + PyTorch, CPU here) and inference writeback, through Airflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ray_operators.contract.lineage import INPUT_PREFIX
from ray_operators.devstack.demo_data import generate_tabular
from ray_operators.jobs.train import artifact_dir
from tests.helpers.airflow_helpers import get_dag, xcoms
from tests.helpers.iceberg_helpers import catalog_properties

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("suffix", "blocks"),
    [
        # A 2,000-row snapshot is read in the job's driver: one block, each worker's shard from it.
        ("", 1),
        # In Ray tasks: the read is cached in one block per cluster CPU (the head has 2).
        ("_distributed", 2),
    ],
)
def test_train_then_infer_from_pinned_snapshots(airflow_db, ray_head, iceberg, suffix, blocks):
    data = generate_tabular(2000, seed=1)
    iceberg.catalog.create_namespace_if_not_exists("ml")
    features = iceberg.catalog.create_table("ml.features", schema=data.schema)
    features.append(data)
    snapshot = features.metadata.current_snapshot_id
    features.append(generate_tabular(500, seed=2))  # later data must not leak into the pinned runs
    inputs = json.dumps([{"table": "ml.features", "snapshot_id": snapshot}])

    when = datetime(2026, 7, 1, tzinfo=UTC)
    run = get_dag("train_model" + suffix).test(
        logical_date=when, run_after=when, run_conf={"inputs_json": inputs}
    )
    assert run.state == "success"
    trained = xcoms("train_model" + suffix, run.run_id, "train")["return_value"]["result"]
    assert trained["used_gpu"] is False  # "auto" on a CPU-only cluster
    assert trained["model_version"] == 1
    # Chance is 0.5 on this balanced-ish binary task; demand a clear margin on held-out rows.
    assert trained["metrics"]["holdout_accuracy"] > 0.8, trained["metrics"]
    assert trained["metrics"]["holdout_rows"] > 200
    # The read is cached once, in one block per cluster CPU (the head has 2; not Ray Data's 200),
    # or, read in the driver, in one block.
    assert trained["training_read"] == {"rows": data.num_rows, "blocks": blocks, "requested_blocks": 2}
    registry = iceberg.catalog.load_table("ml.models").scan().to_arrow().to_pylist()
    warehouse = catalog_properties(iceberg.root)["warehouse"]
    assert [(r["model_name"], r["model_version"], r["input_snapshot_id"]) for r in registry] == [
        ("clf", 1, snapshot)
    ]
    # The artifact is keyed by the run key (the version is assigned at the registry commit).
    assert (
        registry[0]["artifact_uri"]
        == artifact_dir(warehouse + "/models", "clf", registry[0]["run_key"]) + "/model.pt"
    )
    assert registry[0]["run_key"].startswith(f"train_model{suffix}/train/")
    # Epoch losses came back through Ray Train's Result.return_value: one per epoch (8).
    assert (
        trained["metrics"]["epochs"] == 8.0
        and trained["metrics"]["loss"] < trained["metrics"]["first_epoch_loss"]
    )
    # Ray Train's run storage is under the warehouse (shared), not a node-local /tmp folder.
    assert (iceberg.root / "warehouse" / "ray_train").is_dir()

    run2 = get_dag("score_features" + suffix).test(
        logical_date=when, run_after=when, run_conf={"inputs_json": inputs}
    )
    assert run2.state == "success"
    scored = xcoms("score_features" + suffix, run2.run_id, "infer")["return_value"]["result"]
    predictions = iceberg.catalog.load_table("ml.predictions").scan().to_arrow().to_pandas()
    assert len(predictions) == scored["rows_out"] == data.num_rows  # one prediction per input row
    assert sorted(predictions["row_id"]) == sorted(data.column("row_id").to_pylist())
    assert set(predictions["model_version"]) == {1} and set(predictions["input_snapshot_id"]) == {snapshot}
    assert (predictions["prediction"] == predictions["label"]).mean() > 0.8
    snap = iceberg.catalog.load_table("ml.predictions").metadata.current_snapshot()
    assert snap.summary["lakehouse.model"] == "clf:1"
    assert snap.summary[INPUT_PREFIX + "ml.features"] == str(snapshot)

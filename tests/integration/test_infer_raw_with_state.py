"""Inference on raw rows applies the fitted preprocessing state the model was trained with, by
version: the same predictions as inference on the preprocessed features. Real Ray head and
SqlCatalog, stage jobs submitted through the Jobs API."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ray_operators.contract.lineage import PREPROCESS_STATE_URI, PREPROCESS_STATE_VERSION
from ray_operators.contract.spec import StageSpec
from ray_operators.devstack.demo_data import generate_tabular
from tests.helpers.iceberg_helpers import catalog_properties
from tests.helpers.ray_helpers import run_job

pytestmark = pytest.mark.integration
FEATURES = [f"f{i}" for i in range(6)]


def _stage(hook, iceberg, name: str, stage: str, inputs: list, output: str, params: dict) -> None:
    spec = StageSpec.from_json(
        {
            "stage": stage,
            "catalog_name": iceberg.conn_id,
            "catalog_properties": catalog_properties(iceberg.root),
            "output_table": output,
            "inputs": inputs,
            "run": {"run_key": f"state/{name}", "dag_id": "t", "run_id": "r", "task_id": name},
            "params": params,
        }
    )
    run_job(
        hook, f"python -m ray_operators.jobs.run_stage --spec {spec.encode()}", f"st-{name}", working_dir=None
    )


def test_inference_on_raw_rows_applies_the_models_state(airflow_db, ray_head, hook, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("ml")
    data = generate_tabular(1200, seed=5)
    # Raw features far from unit scale: a model trained on standardized ones is wrong on raw ones.
    raw_data = data.set_column(0, "f0", pc.add(pc.multiply(data["f0"], 50.0), 300.0))
    raw = iceberg.catalog.create_table("ml.raw", schema=raw_data.schema)
    raw.append(raw_data)
    raw_snapshot = raw.metadata.current_snapshot_id

    _stage(
        hook,
        iceberg,
        "prep",
        "preprocess",
        [{"table": "ml.raw", "snapshot_id": raw_snapshot}],
        "ml.std",
        {"standardize": FEATURES},
    )
    std = iceberg.catalog.load_table("ml.std")
    std_snapshot = std.metadata.current_snapshot_id
    state_uri = std.metadata.current_snapshot().summary[PREPROCESS_STATE_URI]
    _stage(
        hook,
        iceberg,
        "train",
        "train",
        [{"table": "ml.std", "snapshot_id": std_snapshot}],
        "ml.registry",
        {"feature_columns": FEATURES, "label_column": "label", "model_name": "m", "epochs": 4, "lr": 0.05},
    )
    registry = iceberg.catalog.load_table("ml.registry").scan().to_arrow().to_pylist()
    assert registry[0]["preprocess_state_uri"] == state_uri

    common = {"model_table": "ml.registry", "model_name": "m", "carry_columns": ["row_id", "label"]}
    _stage(
        hook,
        iceberg,
        "on_features",
        "infer",
        [{"table": "ml.std", "snapshot_id": std_snapshot}],
        "ml.pred_features",
        common,
    )
    _stage(
        hook,
        iceberg,
        "on_raw",
        "infer",
        [{"table": "ml.raw", "snapshot_id": raw_snapshot}],
        "ml.pred_raw",
        {**common, "apply_preprocess": True},
    )

    def predictions(table: str) -> dict[int, int]:
        rows = iceberg.catalog.load_table(table).scan().to_arrow()
        return dict(zip(rows["row_id"].to_pylist(), rows["prediction"].to_pylist(), strict=True))

    on_features, on_raw = predictions("ml.pred_features"), predictions("ml.pred_raw")
    assert len(on_raw) == raw_data.num_rows and on_raw == on_features
    accuracy = pc.mean(pc.equal(pa.array([on_raw[i] for i in data["row_id"].to_pylist()]), data["label"]))
    assert accuracy.as_py() > 0.8
    snap = iceberg.catalog.load_table("ml.pred_raw").metadata.current_snapshot()
    assert snap.summary[PREPROCESS_STATE_URI] == state_uri and snap.summary[PREPROCESS_STATE_VERSION] == "1"

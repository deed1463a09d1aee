"""The shared contract without Ray or Airflow: the run-key rule and the typed stage parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ray_operators.contract import params
from ray_operators.contract.run_key import derived, run_key, snapshots_identity
from ray_operators.contract.spec import StageError, StageSpec

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)


def key(**kwargs):
    return run_key(dag_id="d", task_id="t", run_id="manual__1", **kwargs)


def test_run_key_rule_in_order():
    # Input snapshots first: a sensor's, a stage's, events' or a UI trigger's.
    assert key(input_identity="snapshots=5+7", interval=(START, END)) == "d/t/snapshots=5+7"
    # Curation is keyed by run, whatever the interval.
    assert key(stage="curate", interval=(START, END)) == "d/t/run=manual__1"
    assert key(interval=(START, END)) == f"d/t/interval={START.isoformat()}/{END.isoformat()}"
    assert key(partition_key="eu") == "d/t/partition=eu"
    assert key(pinned_snapshot_ids=[3, 1]) == "d/t/snapshots=3,1"
    assert key() == "d/t/run=manual__1"
    assert derived("d/t/run=1", "quarantine") == "d/t/run=1/quarantine"


def test_snapshot_identity_does_not_depend_on_order():
    assert snapshots_identity([7, 5]) == snapshots_identity([5, 7]) == "snapshots=5+7"
    assert snapshots_identity(range_=(1, 9)) == "snapshots=1..9"


def test_one_default_per_parameter_shared_by_spec_models_and_jobs():
    from ray_operators.pipelines.models import ActorPool, InferStage, TrainStage

    infer = params.InferParams()
    assert InferStage.model_fields["batch_size"].default == infer.batch_size
    assert ActorPool.model_fields["max_size"].default == infer.max_actors
    assert ActorPool.model_fields["min_size"].default == infer.min_actors
    train = params.TrainParams()
    for name in ("epochs", "batch_size", "lr", "hidden", "holdout", "num_workers", "num_classes"):
        assert TrainStage.model_fields[name].default == getattr(train, name), name
    assert params.default("infer", "batch_size") == infer.batch_size
    assert params.default("preprocess", "standardize") == []


def test_unknown_stage_params_are_named_with_a_suggestion():
    with pytest.raises(params.ParamsError, match="'epoch' \\(did you mean 'epochs'\\?\\)"):
        params.parse("train", {"epoch": 3})
    parsed = params.parse("train", {"epochs": 3, "feature_columns": ["a"]})
    assert parsed.epochs == 3 and parsed.batch_size == params.TrainParams().batch_size
    spec = StageSpec(
        stage="infer", catalog_name="c", catalog_properties={}, output_table="a.b", params={"bach": 1}
    )
    with pytest.raises(StageError, match="unknown infer stage param"):
        spec.typed_params()

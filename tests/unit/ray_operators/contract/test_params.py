"""Stage parameters (ray_operators.contract.params): one default per parameter, unknown names
named."""

from __future__ import annotations

import pytest

from ray_operators.contract import params
from ray_operators.contract.spec import StageError, StageSpec


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

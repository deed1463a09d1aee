"""The spec's cross-field checks (ray_operators.pipelines.checks), each a named function."""

from __future__ import annotations

import pytest

from ray_operators.pipelines import checks
from ray_operators.pipelines.errors import PipelineSpecError
from ray_operators.pipelines.loader import load_pipeline
from tests.helpers.specs import BASE


def _errors(tmp_path, text: str) -> list[str]:
    (tmp_path / "demo.yaml").write_text(text)
    with pytest.raises(PipelineSpecError) as err:
        load_pipeline(tmp_path / "demo.yaml")
    return [i.message for i in err.value.issues]


def test_a_graph_error_ends_the_checks_before_the_walks_that_need_a_sound_graph(tmp_path):
    duplicate = BASE + "  - name: prep\n    kind: preprocess\n    depends_on: [nowhere]\n"
    duplicate += "    input: raw.events\n    output: feat.b\n"
    # Two stages named prep: the unknown depends_on is not reported until the names are fixed.
    assert _errors(tmp_path, duplicate) == ["duplicate stage name `prep` (first used by stage 1)"]


def test_stage_errors_come_in_the_order_of_the_spec_lines(tmp_path):
    text = BASE + (
        "  - name: score\n    kind: infer\n    input: feat.events\n    output: ml.preds\n"
        "  - name: fit\n    kind: train\n    depends_on: [prep]\n    feature_columns: [x]\n"
        "    label_column: y\n    num_classes: 2\n    model_name: m\n    registry: ml.models\n"
    )
    errors = _errors(tmp_path, text)
    assert errors[0].startswith("infer stage `score` has no model")
    assert errors[1].startswith("train stage `fit` has no `features` input")


def test_the_checks_are_named_and_each_runs_once():
    names = [c.__name__ for c in (*checks.GRAPH_CHECKS, *checks.STAGE_CHECKS)]
    assert names == [
        "unique_stage_names",
        "depends_on_known_stages",
        "no_dependency_cycle",
        "intervals_need_a_cron_schedule",
        "train_has_features",
        "infer_has_a_model",
        "reads_have_a_source",
    ]

"""One converter per stage kind (ray_operators.pipelines.converters): each node carries its own
inlets and outlets, and the DAG builder adds no rule of its own."""

from __future__ import annotations

import pytest

from ray_operators.pipelines import converters
from ray_operators.pipelines.build import build_dag
from ray_operators.pipelines.graph import build_graph
from ray_operators.pipelines.loader import load_pipeline
from ray_operators.pipelines.models import STAGE_MODELS

SPEC = """\
name: kinds
start_date: 2026-01-01
stages:
  - name: logs
    kind: curate
    engine: spark
    raw_paths: raw/logs
    format: spark_logs
    output: logs.spark
  - name: sense_raw
    kind: sense
    table: raw.events
  - name: job
    kind: ray_job
    entrypoint: python job.py
    inputs: [raw.events]
    outputs: [feat.job_out]
  - name: prep
    kind: preprocess
    input: raw.events
    output: feat.events
    standardize: [x]
  - name: fit
    kind: train
    features: feat.events
    feature_columns: [x]
    label_column: y
    num_classes: 2
    model_name: m
    registry: ml.models
  - name: score
    kind: infer
    input: feat.events
    output: ml.preds
"""


def _loaded(tmp_path):
    (tmp_path / "kinds.yaml").write_text(SPEC)
    return load_pipeline(tmp_path / "kinds.yaml")


def test_every_stage_kind_and_curation_engine_has_a_converter():
    for kind in STAGE_MODELS:
        stage = type("Stage", (), {"kind": kind, "engine": "ray"})()
        assert callable(converters.converter_for(stage))
    spark = type("Stage", (), {"kind": "curate", "engine": "spark"})()
    assert converters.converter_for(spark) is converters.curate_on_spark


def test_a_kind_registers_one_converter():
    with pytest.raises(ValueError, match="registered already"):
        converters.converts("preprocess")(lambda stage, ctx: None)


def test_each_node_carries_its_inlets_and_outlets(tmp_path):
    nodes = {n.task_id: n for n in build_graph(_loaded(tmp_path).pipeline).tasks}
    assert (nodes["sense_raw"].inlets, nodes["sense_raw"].outlets) == ([], [])
    assert nodes["logs"].outlets == ["logs.spark"]  # its quarantine and processing tables are not assets
    assert "logs.spark_quarantine" in nodes["logs"].writes
    assert (nodes["job"].inlets, nodes["job"].outlets) == (["raw.events"], ["feat.job_out"])
    assert not {"inlet_tables", "outlet_tables"} & set(nodes["job"].arguments)
    assert (nodes["score"].inlets, nodes["score"].outlets) == (["feat.events", "ml.models"], ["ml.preds"])


def test_the_dag_declares_the_nodes_assets_as_one_object_per_table(tmp_path):
    loaded = _loaded(tmp_path)
    dag = build_dag(loaded)
    uris = {t.task_id: ([a.uri for a in t.inlets], [a.uri for a in t.outlets]) for t in dag.tasks}
    assert uris["job"] == (
        ["iceberg://iceberg_default/raw/events"],
        ["iceberg://iceberg_default/feat/job_out"],
    )
    assert uris["logs"] == ([], ["iceberg://iceberg_default/logs/spark"])
    assert uris["sense_raw"] == ([], [])
    fit, score = dag.get_task("fit"), dag.get_task("score")
    assert fit.outlets[0] is score.inlets[1]  # the registry: one Asset object for the DAG

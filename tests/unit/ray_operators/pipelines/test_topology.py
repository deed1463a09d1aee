"""The pipeline's graph rules (ray_operators.pipelines.topology): dependencies, cycles, tables."""

from __future__ import annotations

from ray_operators.curation.protocol import processing_table, quarantine_table
from ray_operators.pipelines.loader import load_pipeline
from ray_operators.pipelines.topology import (
    ancestors,
    dependencies,
    find_cycle,
    stage_outputs,
    stage_reads,
    stage_writes,
)

SPEC = """\
name: topo
start_date: 2026-01-01
stages:
  - name: curate
    kind: curate
    raw_paths: raw
    output: curated.events
  - name: prep
    kind: preprocess
    input: curated.events
    output: feat.events
  - name: job
    kind: ray_job
    entrypoint: python job.py
    depends_on: [curate]
    inputs: [curated.events]
    outputs: [feat.other, feat.more]
"""


def test_each_stage_runs_after_the_previous_unless_it_says_otherwise(tmp_path):
    (tmp_path / "topo.yaml").write_text(SPEC)
    pipeline = load_pipeline(tmp_path / "topo.yaml").pipeline
    deps = dependencies(pipeline)
    assert deps == {"curate": [], "prep": ["curate"], "job": ["curate"]}
    assert ancestors(deps, "prep") == ["curate"] and ancestors(deps, "curate") == []


def test_a_stage_publishes_its_outputs_and_curation_also_writes_its_side_tables(tmp_path):
    (tmp_path / "topo.yaml").write_text(SPEC)
    curate, prep, job = load_pipeline(tmp_path / "topo.yaml").pipeline.stages
    assert stage_outputs(curate) == ["curated.events"]
    assert stage_writes(curate) == [
        "curated.events",
        quarantine_table("curated.events"),
        processing_table("curated.events"),
    ]
    assert stage_reads(curate) == [] and stage_reads(prep) == ["curated.events"]
    assert stage_outputs(job) == stage_writes(job) == ["feat.other", "feat.more"]
    assert stage_reads(job) == ["curated.events"]


def test_a_cycle_is_named_from_its_first_stage_in_the_spec():
    deps = {"a": [], "b": ["d"], "c": ["b"], "d": ["c"], "e": ["d"]}
    assert find_cycle(deps) == ["b", "d", "c"]  # b depends on d, d on c, c on b
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None
    assert find_cycle({"a": ["nowhere"]}) is None  # an unknown name is the spec checks' to report

"""The pipeline as a graph of stages and tables: who depends on whom, who reads and writes what.

The one home of these rules: the spec's cross-checks (:mod:`ray_operators.pipelines.checks`), the
stage converters (:mod:`ray_operators.pipelines.converters`) and the DAG builder all use them.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Any

from ray_operators.curation.protocol import processing_table, quarantine_table
from ray_operators.pipelines.models import Pipeline

Dependencies = dict[str, list[str]]


def dependencies(pipeline: Pipeline) -> Dependencies:
    """Each stage's upstream stages: ``depends_on``, else the previous stage."""
    deps: Dependencies = {}
    previous = None
    for stage in pipeline.stages:
        if stage.depends_on is not None:
            deps[stage.name] = list(stage.depends_on)
        else:
            deps[stage.name] = [previous] if previous else []
        previous = stage.name
    return deps


def ancestors(deps: Dependencies, name: str) -> list[str]:
    """Every stage ``name`` runs after, directly or not (nearest first, depth first)."""
    seen: list[str] = []
    stack = list(deps.get(name, []))
    while stack:
        node = stack.pop()
        if node in seen or node not in deps:
            continue
        seen.append(node)
        stack += deps[node]
    return seen


def upstream_stages(pipeline: Pipeline, deps: Dependencies, name: str) -> list[Any]:
    """The stage models of :func:`ancestors`, in its order."""
    return [pipeline.stage(n) for n in ancestors(deps, name)]


def find_cycle(deps: Dependencies) -> list[str] | None:
    """One dependency cycle, as the stages on it in order (``a -> b -> a`` is ``["a", "b"]``), or
    None. Names that no stage has are left out (the spec checks report them)."""
    known = {name: [d for d in upstream if d in deps] for name, upstream in deps.items()}
    # Each stage's successors are what it depends on, so the cycle comes out in dependency order.
    sorter = TopologicalSorter({name: [] for name in known})
    for name, upstream in known.items():
        for dep in upstream:
            sorter.add(dep, name)
    try:
        sorter.prepare()
    except CycleError as err:
        cycle = list(err.args[1])  # [x, ..., x]: the first node closes the loop
        return _rotate(cycle[:-1], list(deps))
    return None


def _rotate(cycle: list[str], order: list[str]) -> list[str]:
    """The cycle started at its stage that comes first in the spec."""
    start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
    return cycle[start:] + cycle[:start]


def stage_reads(stage: Any) -> list[str]:
    """The tables a stage reads its rows from (a sensor watches, and reads nothing)."""
    if stage.kind in ("preprocess", "infer"):
        return [stage.input.table]
    if stage.kind == "train":
        return [stage.features.table] if stage.features else []
    if stage.kind == "ray_job":
        return [i.table for i in stage.inputs]
    return []


def stage_outputs(stage: Any) -> list[str]:
    """The tables a stage publishes: its task's asset outlets."""
    if stage.kind in ("curate", "preprocess", "infer"):
        return [stage.output.table]
    if stage.kind == "train":
        return [stage.registry]
    if stage.kind == "ray_job":
        return list(stage.outputs)
    return []


def stage_writes(stage: Any) -> list[str]:
    """Every table a stage writes: its outputs, and curation's quarantine and processing tables."""
    writes = stage_outputs(stage)
    if stage.kind == "curate":
        writes += [quarantine_table(stage.output.table), processing_table(stage.output.table)]
    return writes

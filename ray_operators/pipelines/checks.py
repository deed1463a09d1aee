"""The checks a spec passes after its models validate: each one a named function.

A check gets a :class:`CheckContext` and returns its errors and warnings. The graph checks run
first and in order (names, then ``depends_on``, then cycles); each stops the rest when it finds
an error, because the later checks walk the graph. The stage checks then all run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ray_operators.pipelines.errors import SpecIssue, did_you_mean
from ray_operators.pipelines.models import Pipeline
from ray_operators.pipelines.source import Source
from ray_operators.pipelines.topology import Dependencies, dependencies, find_cycle, stage_reads, stage_writes
from ray_operators.pipelines.topology import upstream_stages as _upstream


@dataclass
class Findings:
    errors: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.errors += other.errors
        self.warnings += other.warnings


@dataclass
class CheckContext:
    pipeline: Pipeline
    source: Source

    @cached_property
    def first_index(self) -> dict[str, int]:
        """Each stage name's first position in ``stages``."""
        names: dict[str, int] = {}
        for i, stage in enumerate(self.pipeline.stages):
            names.setdefault(stage.name, i)
        return names

    @cached_property
    def deps(self) -> Dependencies:
        return dependencies(self.pipeline)

    def upstream(self, name: str) -> list[Any]:
        return _upstream(self.pipeline, self.deps, name)


Check = Callable[[CheckContext], Findings]


def unique_stage_names(ctx: CheckContext) -> Findings:
    found = Findings()
    for i, stage in enumerate(ctx.pipeline.stages):
        first = ctx.first_index[stage.name]
        if first != i:
            found.errors.append(
                ctx.source.issue(
                    ("stages", i, "name"),
                    f"duplicate stage name `{stage.name}` (first used by stage {first + 1})",
                )
            )
    return found


def depends_on_known_stages(ctx: CheckContext) -> Findings:
    found = Findings()
    names = ctx.first_index
    for i, stage in enumerate(ctx.pipeline.stages):
        for j, dep in enumerate(stage.depends_on or []):
            if dep not in names:
                found.errors.append(
                    ctx.source.issue(
                        ("stages", i, "depends_on", j),
                        f"`depends_on` names no stage `{dep}`",
                        suggestion=did_you_mean(dep, names),
                    )
                )
            elif dep == stage.name:
                found.errors.append(
                    ctx.source.issue(("stages", i, "depends_on", j), f"stage `{dep}` depends on itself")
                )
    return found


def no_dependency_cycle(ctx: CheckContext) -> Findings:
    found = Findings()
    cycle = find_cycle(ctx.deps)
    if cycle:
        found.errors.append(
            ctx.source.issue(
                ("stages", ctx.first_index[cycle[0]], "depends_on"),
                "dependency cycle: " + " -> ".join([*cycle, cycle[0]]),
            )
        )
    return found


def intervals_need_a_cron_schedule(ctx: CheckContext) -> Findings:
    """``slice_column`` and the interval reads mean something only for runs with a data interval."""
    found = Findings()
    schedule = ctx.pipeline.schedule
    if schedule is not None and schedule.kind == "cron":
        return found
    for i, stage in enumerate(ctx.pipeline.stages):
        for key in ("input", "features", "output"):
            part = getattr(stage, key, None)
            if part is None:
                continue
            if getattr(part, "slice_column", None):
                found.errors.append(
                    ctx.source.issue(
                        ("stages", i, key, "slice_column"),
                        "`slice_column` needs a time-based schedule (`cron`): runs of this pipeline have "
                        "no data interval to slice by",
                    )
                )
            if getattr(part, "read", None) in ("as_of_interval_end", "interval_commits"):
                found.warnings.append(
                    ctx.source.issue(
                        ("stages", i, key, "read"),
                        f"`read: {part.read}` needs a data interval; without a cron schedule it reads "
                        "the current snapshot",
                    )
                )
    return found


def train_has_features(ctx: CheckContext) -> Findings:
    found = Findings()
    for i, stage in enumerate(ctx.pipeline.stages):
        if stage.kind == "train" and stage.features is None:
            found.errors.append(
                ctx.source.issue(
                    ("stages", i),
                    f"train stage `{stage.name}` has no `features` input",
                    suggestion="add `features: <namespace.table>`, the table a preprocess stage writes",
                )
            )
    return found


def infer_has_a_model(ctx: CheckContext) -> Findings:
    """An infer stage names its model and registry, or runs after a train stage that gives both."""
    found = Findings()
    for i, stage in enumerate(ctx.pipeline.stages):
        if stage.kind != "infer":
            continue
        after_training = any(s.kind == "train" for s in ctx.upstream(stage.name))
        if not stage.model and not after_training:
            found.errors.append(
                ctx.source.issue(
                    ("stages", i),
                    f"infer stage `{stage.name}` has no model: set `model` (and `registry`), "
                    "or make it depend on a train stage",
                )
            )
        if stage.model and not stage.registry and not after_training:
            found.errors.append(
                ctx.source.issue(
                    ("stages", i, "model"), f"infer stage `{stage.name}` names a model but no `registry`"
                )
            )
    return found


def reads_have_a_source(ctx: CheckContext) -> Findings:
    """A warning for a table a stage reads that no earlier stage writes and nothing watches."""
    found = Findings()
    schedule = ctx.pipeline.schedule
    watched = {t.table for t in (schedule.on_snapshot or [])} if schedule else set()
    written = sorted({t for s in ctx.pipeline.stages for t in stage_writes(s)})
    for i, stage in enumerate(ctx.pipeline.stages):
        known = set(watched)
        for s in ctx.upstream(stage.name):
            known.update(stage_writes(s))
            if s.kind == "sense":
                known.add(s.table)
        for table in stage_reads(stage):
            if table not in known:
                found.warnings.append(
                    ctx.source.issue(
                        ("stages", i, {"train": "features"}.get(stage.kind, "input")),
                        f"stage `{stage.name}` reads `{table}`, which no earlier stage writes and no sensor "
                        "or schedule watches: it will read the table's current snapshot",
                        suggestion=did_you_mean(table, written),
                    )
                )
    return found


#: Run in order; the first that finds an error ends the checks (later ones walk the graph).
GRAPH_CHECKS: tuple[Check, ...] = (unique_stage_names, depends_on_known_stages, no_dependency_cycle)
#: Run when the graph is sound, all of them. Within a stage, errors come in this order.
STAGE_CHECKS: tuple[Check, ...] = (
    intervals_need_a_cron_schedule,
    train_has_features,
    infer_has_a_model,
    reads_have_a_source,
)


def check_pipeline(pipeline: Pipeline, source: Source) -> tuple[list[SpecIssue], list[SpecIssue]]:
    """``(errors, warnings)`` of the checks, each list in the order of the spec's lines."""
    ctx = CheckContext(pipeline, source)
    found = Findings()
    for check in GRAPH_CHECKS:
        found.extend(check(ctx))
        if found.errors:
            return found.errors, found.warnings
    for check in STAGE_CHECKS:
        found.extend(check(ctx))

    def where(issue: SpecIssue) -> tuple[int, int]:
        return issue.line, issue.column

    return sorted(found.errors, key=where), sorted(found.warnings, key=where)

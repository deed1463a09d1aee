"""Load and validate pipeline specs: YAML -> :class:`Pipeline`, every problem with its location.

:func:`load_pipeline` raises :class:`SpecError` listing every error it found in the file (file,
line, column, the offending lines, and the closest valid key or value); warnings (a stage reads a
table that nothing in the pipeline writes or watches) come back with the pipeline.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_operators.pipelines.errors import SpecError, SpecIssue, did_you_mean
from ray_operators.pipelines.models import STAGE_KINDS, Pipeline
from ray_operators.pipelines.source import Source, load_source

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadedPipeline:
    pipeline: Pipeline
    source: Source
    warnings: list[SpecIssue] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.source.path


def find_specs(*paths: str | os.PathLike[str]) -> list[Path]:
    """Spec files under ``paths`` (files or folders, searched recursively), sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file()]
        elif path.suffix in SPEC_SUFFIXES:
            found.append(path)
    return sorted(dict.fromkeys(found))


def load_pipeline(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> LoadedPipeline:
    source = load_source(path, env)
    if not isinstance(source.data, dict):
        raise SpecError(
            [source.issue((), "a pipeline spec is a mapping of keys (name, schedule, stages...)")]
        )
    _resolve_paths(source)
    from pydantic import ValidationError

    try:
        pipeline = Pipeline.model_validate(source.data)
    except ValidationError as err:
        raise SpecError(sorted(_issues(source, err), key=lambda i: (i.line, i.column))) from None
    errors, warnings = _cross_checks(pipeline, source)
    if errors:
        raise SpecError(errors)
    if source.path.stem != pipeline.name:
        warnings.append(
            source.issue(
                ("name",),
                f"the pipeline is named {pipeline.name!r} but its file is {source.path.name!r}",
                suggestion="name files after their pipeline",
            )
        )
    for w in warnings:
        w.severity = "warning"
    return LoadedPipeline(pipeline, source, warnings)


# ---- relative paths --------------------------------------------------------------------------


def _resolve_paths(source: Source) -> None:
    """``raw_paths`` and ``working_dir`` are relative to the spec file's folder."""
    base = source.path.resolve().parent
    for stage in source.data.get("stages") or []:
        if not isinstance(stage, dict):
            continue
        raw = stage.get("raw_paths")
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list):
            stage["raw_paths"] = [_absolute(p, base) for p in raw]
        if isinstance(stage.get("working_dir"), str):
            stage["working_dir"] = _absolute(stage["working_dir"], base)


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or re.match(r"^[a-z][a-z0-9+.-]*://", value) or os.path.isabs(value):
        return value
    return str((base / value).resolve())


# ---- pydantic errors -> located issues --------------------------------------------------------


def _issues(source: Source, err: Any) -> Iterator[SpecIssue]:
    seen = set()
    for e in err.errors(include_url=False):
        kind = e["type"]
        loc = _data_loc(source.data, e["loc"], keep_last=kind in ("missing", "extra_forbidden"))
        suggestion = None
        key = False
        if kind == "extra_forbidden":
            name = loc[-1]
            allowed = _allowed_keys(source.data, loc[:-1])
            message = f"unknown key `{name}`"
            suggestion = did_you_mean(name, allowed) or _nested_hint(name, source.data, loc[:-1])
            if not suggestion and allowed:
                suggestion = "allowed here: " + ", ".join(sorted(allowed))
            key = True
        elif kind == "missing":
            message = f"missing required key `{e['loc'][-1]}`"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            got = (e.get("ctx") or {}).get("tag")
            if kind == "union_tag_not_found":
                message = f"stage needs a `kind`: one of {', '.join(STAGE_KINDS)}"
            else:
                loc = (*loc, "kind")
                message = f"unknown stage kind `{got}`; kinds are {', '.join(STAGE_KINDS)}"
                suggestion = did_you_mean(got, STAGE_KINDS)
        elif kind in ("literal_error", "enum"):
            expected = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
            message = (
                f"`{_value_at(source.data, loc)}` is not allowed here; expected one of {', '.join(expected)}"
            )
            suggestion = did_you_mean(str(_value_at(source.data, loc)), expected)
        elif kind == "string_pattern_mismatch":
            message = f"`{_value_at(source.data, loc)}` is not valid here: {_pattern_hint(loc, e)}"
        else:
            message = e["msg"].removeprefix("Value error, ")
            if loc:
                message = f"`{_dotted(loc)}`: {message}"
        marker = (loc, message)
        if marker in seen:
            continue
        seen.add(marker)
        yield source.issue(loc, message, key=key, suggestion=suggestion)


def _pattern_hint(loc: tuple[Any, ...], e: dict[str, Any]) -> str:
    from ray_operators.pipelines.models import NAME, TABLE

    pattern = (e.get("ctx") or {}).get("pattern")
    if pattern == TABLE:
        return "a table is `namespace.table`"
    if pattern == NAME:
        return "names start with a letter and hold letters, digits and underscores"
    if loc and loc[-1] == "fn":
        return "a transform is `package.module:function`"
    return f"it must match {pattern}"


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")


def _data_loc(data: Any, loc: tuple[Any, ...], keep_last: bool = True) -> tuple[Any, ...]:
    """Pydantic's error location with union/tag markers dropped: a path into the data."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif keep_last and isinstance(node, dict) and part == loc[-1]:
            out.append(part)  # a missing or unknown key: the last element
            node = None
        # else: a union member or a discriminator tag, not part of the data
    return tuple(out)


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _model_for(data: Any, loc: tuple[Any, ...]) -> Any:
    """The model class that validates the mapping at ``loc`` (stage models chosen by ``kind``)."""
    from pydantic import BaseModel

    from ray_operators.pipelines import models

    kinds = {
        "sense": models.SenseStage,
        "curate": models.CurateStage,
        "preprocess": models.PreprocessStage,
        "train": models.TrainStage,
        "infer": models.InferStage,
        "ray_job": models.RayJobStage,
    }
    model: Any = models.Pipeline
    node = data
    for part in loc:
        if model == "stage" and isinstance(node, dict):
            model = kinds.get(node.get("kind"))
        node = node[part] if isinstance(node, dict | list) else None
        if isinstance(part, int):
            continue
        info = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if info is None:
            return None
        model = _model_of(info.annotation)
    if model == "stage":
        model = kinds.get(node.get("kind")) if isinstance(node, dict) else None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _allowed_keys(data: Any, loc: tuple[Any, ...]) -> list[str]:
    model = _model_for(data, loc)
    return [info.alias or name for name, info in model.model_fields.items()] if model else []


def _nested_hint(name: str, data: Any, loc: tuple[Any, ...]) -> str | None:
    """``did you mean `resources.num_gpus`?`` for a key that belongs one level down."""
    from pydantic import BaseModel

    model = _model_for(data, loc)
    nested: dict[str, str] = {}
    for field_name, info in model.model_fields.items() if model else ():
        sub = _model_of(info.annotation)
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            for child in sub.model_fields:
                nested.setdefault(child, f"{field_name}.{child}")
    close = difflib.get_close_matches(name, list(nested), n=1, cutoff=0.6)
    return f"did you mean `{nested[close[0]]}`?" if close else None


def _model_of(annotation: Any) -> Any:
    """The model class inside ``X | None``, ``list[X]``, ``dict[str, X]`` or the stage union."""
    from pydantic import BaseModel

    from ray_operators.pipelines import models

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if models.SenseStage in args:
            return "stage"
        found = [_model_of(a) for a in args]
        return next((f for f in found if f is not None), None)
    if origin in (list, dict):
        return _model_of(typing.get_args(annotation)[-1])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


# ---- cross-field checks ----------------------------------------------------------------------


def stage_reads(stage: Any) -> list[str]:
    if stage.kind in ("preprocess", "infer"):
        return [stage.input.table]
    if stage.kind == "train":
        return [stage.features.table] if stage.features else []
    if stage.kind == "ray_job":
        return [i.table for i in stage.inputs]
    return []


def stage_writes(stage: Any) -> list[str]:
    if stage.kind == "curate":
        t = stage.output.table
        return [t, f"{t}_quarantine", f"{t}_processing"]
    if stage.kind in ("preprocess", "infer"):
        return [stage.output.table]
    if stage.kind == "train":
        return [stage.registry]
    if stage.kind == "ray_job":
        return list(stage.outputs)
    return []


def dependencies(pipeline: Pipeline) -> dict[str, list[str]]:
    """Each stage's upstream stages: ``depends_on``, else the previous stage."""
    deps: dict[str, list[str]] = {}
    previous = None
    for stage in pipeline.stages:
        if stage.depends_on is not None:
            deps[stage.name] = list(stage.depends_on)
        else:
            deps[stage.name] = [previous] if previous else []
        previous = stage.name
    return deps


def ancestors(deps: dict[str, list[str]], name: str) -> list[str]:
    seen: list[str] = []
    stack = list(deps.get(name, []))
    while stack:
        node = stack.pop()
        if node in seen or node not in deps:
            continue
        seen.append(node)
        stack += deps[node]
    return seen


def _cross_checks(pipeline: Pipeline, source: Source) -> tuple[list[SpecIssue], list[SpecIssue]]:
    errors: list[SpecIssue] = []
    warnings: list[SpecIssue] = []
    names: dict[str, int] = {}
    for i, stage in enumerate(pipeline.stages):
        if stage.name in names:
            errors.append(
                source.issue(
                    ("stages", i, "name"),
                    f"duplicate stage name `{stage.name}` (first used by stage {names[stage.name] + 1})",
                )
            )
        names.setdefault(stage.name, i)
    if errors:
        return errors, warnings
    for i, stage in enumerate(pipeline.stages):
        for j, dep in enumerate(stage.depends_on or []):
            if dep not in names:
                hint = did_you_mean(dep, names)
                errors.append(
                    source.issue(
                        ("stages", i, "depends_on", j),
                        f"`depends_on` names no stage `{dep}`",
                        suggestion=hint,
                    )
                )
            elif dep == stage.name:
                errors.append(
                    source.issue(("stages", i, "depends_on", j), f"stage `{dep}` depends on itself")
                )
    if errors:
        return errors, warnings
    deps = dependencies(pipeline)
    cycle = _find_cycle(deps)
    if cycle:
        first = names[cycle[0]]
        errors.append(
            source.issue(
                ("stages", first, "depends_on"), "dependency cycle: " + " -> ".join([*cycle, cycle[0]])
            )
        )
        return errors, warnings

    watched = {t.table for t in (pipeline.schedule.on_snapshot or [])} if pipeline.schedule else set()
    timed = pipeline.schedule is not None and pipeline.schedule.kind == "cron"
    for i, stage in enumerate(pipeline.stages):
        for key in ("input", "features", "output"):
            part = getattr(stage, key, None)
            if part is None or timed:
                continue
            if getattr(part, "slice_column", None):
                errors.append(
                    source.issue(
                        ("stages", i, key, "slice_column"),
                        "`slice_column` needs a time-based schedule (`cron`): runs of this pipeline have "
                        "no data interval to slice by",
                    )
                )
            if getattr(part, "read", None) in ("as_of_interval_end", "interval_commits"):
                warnings.append(
                    source.issue(
                        ("stages", i, key, "read"),
                        f"`read: {part.read}` needs a data interval; without a cron schedule it reads "
                        "the current snapshot",
                    )
                )
    for i, stage in enumerate(pipeline.stages):
        if stage.kind == "train" and stage.features is None:
            errors.append(
                source.issue(
                    ("stages", i),
                    f"train stage `{stage.name}` has no `features` input",
                    suggestion="add `features: <namespace.table>`, the table a preprocess stage writes",
                )
            )
        up = [pipeline.stage(n) for n in ancestors(deps, stage.name)]
        if stage.kind == "infer" and not stage.model and not any(s.kind == "train" for s in up):
            errors.append(
                source.issue(
                    ("stages", i),
                    f"infer stage `{stage.name}` has no model: set `model` (and `registry`), "
                    "or make it depend on a train stage",
                )
            )
        if (
            stage.kind == "infer"
            and stage.model
            and not stage.registry
            and not any(s.kind == "train" for s in up)
        ):
            errors.append(
                source.issue(
                    ("stages", i, "model"), f"infer stage `{stage.name}` names a model but no `registry`"
                )
            )
        known = set(watched)
        for s in up:
            known.update(stage_writes(s))
            if s.kind == "sense":
                known.add(s.table)
        for table in stage_reads(stage):
            if table not in known:
                loc = ("stages", i, {"train": "features"}.get(stage.kind, "input"))
                warnings.append(
                    source.issue(
                        loc,
                        f"stage `{stage.name}` reads `{table}`, which no earlier stage writes and no sensor "
                        "or schedule watches: it will read the table's current snapshot",
                        suggestion=did_you_mean(
                            table, sorted({t for s in pipeline.stages for t in stage_writes(s)})
                        ),
                    )
                )
    return errors, warnings


def _find_cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, []):
            if state.get(dep) == 1:
                return path[path.index(dep) :]
            if state.get(dep) is None and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in deps:
        if state.get(node) is None and (found := visit(node)):
            return found
    return None

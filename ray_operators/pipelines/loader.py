"""Load and validate pipeline specs: YAML -> :class:`Pipeline`, every problem with its location.

:func:`load_pipeline` raises :class:`PipelineSpecError` listing every error it found in the file (file,
line, column, the offending lines, and the closest valid key or value); warnings (a stage reads a
table that nothing in the pipeline writes or watches) come back with the pipeline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_operators.pipelines.checks import check_pipeline
from ray_operators.pipelines.errors import PipelineSpecError, SpecIssue
from ray_operators.pipelines.models import Pipeline
from ray_operators.pipelines.source import Source, load_source
from ray_operators.pipelines.validation_issues import validation_issues

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
        raise PipelineSpecError(
            [source.issue((), "a pipeline spec is a mapping of keys (name, schedule, stages...)")]
        )
    _resolve_paths(source)
    from pydantic import ValidationError

    try:
        pipeline = Pipeline.model_validate(source.data)
    except ValidationError as err:
        raise PipelineSpecError(
            sorted(validation_issues(source, err), key=lambda i: (i.line, i.column))
        ) from None
    errors, warnings = check_pipeline(pipeline, source)
    if errors:
        raise PipelineSpecError(errors)
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

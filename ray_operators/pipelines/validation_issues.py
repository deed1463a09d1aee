"""Pydantic's validation errors rendered as located spec issues.

Each error becomes a :class:`~ray_operators.pipelines.errors.SpecIssue` at the key or value it is
about (pydantic's union and tag markers dropped from its location), with a message in the spec's
own words and, where one is close, the valid key or value the user probably meant.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from ray_operators.pipelines.errors import SpecIssue, did_you_mean
from ray_operators.pipelines.models import STAGE_KINDS
from ray_operators.pipelines.source import Source


def validation_issues(source: Source, err: Any) -> Iterator[SpecIssue]:
    """One located issue per pydantic error of ``err`` (a ``ValidationError``), duplicates dropped."""
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
                suggestion = did_you_mean(str(got), STAGE_KINDS)
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

    kinds = models.STAGE_MODELS
    model: Any = models.Pipeline
    node = data
    for part in loc:
        if model == "stage" and isinstance(node, dict):
            model = kinds.get(str(node.get("kind")))
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
        model = kinds.get(str(node.get("kind"))) if isinstance(node, dict) else None
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

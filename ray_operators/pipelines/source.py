"""Safe YAML loading that remembers where every key and value came from.

The document is composed into PyYAML nodes with the safe loader (no object construction from
tags) and converted to plain data by hand, recording the line and column of each mapping key and
each value under its path (``("stages", 2, "resources", "num_gpus")``). Duplicate keys are errors
(PyYAML would keep the last silently). ``${VAR}`` in a string is replaced by the environment
variable, and an unset variable is an error at that string; ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_operators.pipelines.errors import PipelineSpecError, SpecIssue

Path_ = tuple[Any, ...]
_VAR = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Plain data only: anything else (``!!python/...``, ``!!set``, custom ``!tags``) is refused.
_PLAIN_TAGS = {
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
}


@dataclass
class Source:
    """A loaded spec file: its data, its text, and the position of everything in it."""

    path: Path
    text: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def position(self, loc: Path_, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            table = self.keys if key else self.values
            if loc in table:
                return table[loc]
            if not key and loc in self.keys:
                return self.keys[loc]
            loc = loc[:-1]
            key = False
        return self.values.get((), (1, 1))

    def issue(
        self, loc: Path_, message: str, *, key: bool = False, suggestion: str | None = None
    ) -> SpecIssue:
        line, column = self.position(loc, key=key)
        return SpecIssue(
            file=str(self.path),
            line=line,
            column=column,
            message=message,
            suggestion=suggestion,
            text=self.text,
        )


def load_source(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Source:
    """Read and safely parse one spec file. Raises :class:`PipelineSpecError` with positions."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PipelineSpecError(
            [SpecIssue(str(path), 1, 1, f"cannot read the spec: {err.strerror or err}")]
        ) from None
    env = os.environ if env is None else env
    # libyaml's safe loader when PyYAML has it (about 10x faster to compose), same nodes and marks.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"not valid YAML: {err.problem or err}" + (f" ({err.context})" if err.context else "")
        raise PipelineSpecError([SpecIssue(str(path), line, column, message, text=text)]) from None
    finally:
        loader.dispose()
    source = Source(path=path, text=text, data=None)
    issues: list[SpecIssue] = []
    if node is None:
        raise PipelineSpecError([SpecIssue(str(path), 1, 1, "the spec is empty", text=text)])
    source.data = _build(node, (), source, env, issues, loader)
    if issues:
        raise PipelineSpecError(issues)
    return source


def _mark(node: Any) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: Any, loc: Path_, source: Source, env: Mapping[str, str], issues: list[SpecIssue], loader: Any
) -> Any:
    import yaml

    source.values[loc] = _mark(node)
    if node.tag not in _PLAIN_TAGS:
        issues.append(_at(source, node, f"YAML tag {node.tag!r} is not allowed in a pipeline spec"))
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(_at(source, key_node, "mapping keys must be plain names"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(
                    _at(source, key_node, "YAML merge keys (<<) are not supported: write the keys out")
                )
                continue
            key = _scalar(key_node, source, issues, loader)
            if key in out:
                first = source.keys[loc + (key,)]
                issues.append(_at(source, key_node, f"duplicate key {key!r} (first at line {first[0]})"))
                continue
            source.keys[loc + (key,)] = _mark(key_node)
            out[key] = _build(value_node, loc + (key,), source, env, issues, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loc + (i,), source, env, issues, loader) for i, item in enumerate(node.value)]
    value = _scalar(node, source, issues, loader)
    if isinstance(value, str) and "$" in value:
        value = _expand(value, node, source, env, issues)
    return value


def _scalar(node: Any, source: Source, issues: list[SpecIssue], loader: Any) -> Any:
    import yaml

    if node.tag.startswith("!") or (
        node.tag.startswith("tag:yaml.org,2002:") and node.tag.endswith(("python", "set"))
    ):
        issues.append(_at(source, node, f"YAML tag {node.tag!r} is not allowed in a pipeline spec"))
        return None
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as err:
        issues.append(_at(source, node, f"cannot read this value: {getattr(err, 'problem', None) or err}"))
        return None
    # Dates stay text: the models parse them, and the JSON form of a spec must be plain.
    import datetime as _dt

    if isinstance(value, _dt.date | _dt.datetime):
        return node.value
    return value


def _expand(value: str, node: Any, source: Source, env: Mapping[str, str], issues: list[SpecIssue]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(1):  # $${...}: a literal ${...}
            return "${" + match.group(2) + "}"
        name = match.group(2)
        if not _NAME.match(name):
            issues.append(_at(source, node, f"${{{name}}} is not a variable reference: use ${{NAME}}"))
            return match.group(0)
        if name not in env:
            issues.append(
                _at(
                    source,
                    node,
                    f"environment variable {name} is not set",
                    suggestion=f"export {name}=... before parsing",
                )
            )
            return match.group(0)
        return env[name]

    return _VAR.sub(replace, value)


def _at(source: Source, node: Any, message: str, suggestion: str | None = None) -> SpecIssue:
    line, column = _mark(node)
    return SpecIssue(str(source.path), line, column, message, suggestion=suggestion, text=source.text)

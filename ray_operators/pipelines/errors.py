"""Spec problems with file, line and column, the offending lines, and a suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class SpecIssue:
    file: str
    line: int
    column: int
    message: str
    suggestion: str | None = None
    text: str | None = None
    severity: str = "error"  # or "warning"

    def format(self, context: int = 1) -> str:
        head = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        if self.suggestion:
            head += f" ({self.suggestion})"
        if not self.text:
            return head
        lines = self.text.splitlines()
        first = max(1, self.line - context)
        last = min(len(lines), self.line + context)
        width = len(str(last))
        body = []
        for number in range(first, last + 1):
            marker = ">" if number == self.line else " "
            body.append(f"  {marker} {number:>{width}} | {lines[number - 1]}")
            if number == self.line:
                body.append(f"    {' ' * width} | {' ' * (self.column - 1)}^")
        return "\n".join([head, *body])

    def __str__(self) -> str:
        return self.format()


class PipelineSpecError(ValueError):
    """A pipeline spec that does not load. ``issues`` lists each problem with its file, line and
    column, and ``str()`` shows them all; a problem that is at no one place (two spec files that
    name one pipeline, or the specs a DAG file could not load) is a plain message with no issues."""

    def __init__(self, issues: Iterable[SpecIssue] | str) -> None:
        if isinstance(issues, str):
            self.issues: list[SpecIssue] = []
            super().__init__(issues)
            return
        self.issues = list(issues)
        super().__init__("\n".join(i.format() for i in self.issues))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``did you mean `x`?`` for the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None

"""Comparing the curation fast path with the row parser: the same rows, the same quarantine."""

from __future__ import annotations


def rows(table) -> list[str]:
    return sorted(repr(tuple(r.values())) for r in table.to_pylist())


def same(fast, row) -> None:
    assert fast[0].schema == row[0].schema and fast[1].schema == row[1].schema
    assert rows(fast[0]) == rows(row[0])
    assert rows(fast[1]) == rows(row[1])

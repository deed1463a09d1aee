"""The tabular curate formats' row-by-row reader, without a cluster: line numbers and records."""

from __future__ import annotations

import json

from ray_operators.jobs import tabular


def _parse(tmp_path, text: str) -> list[dict]:
    path = tmp_path / "batch.csv"
    path.write_text(text)
    item = {
        "path": str(path),
        "unit": "batch.csv",
        "format": "csv",
        "columns": json.dumps({"id": "long", "note": "string"}),
        "required": json.dumps(["id"]),
    }
    return tabular.parse_file(item)


def test_a_csv_record_is_numbered_by_the_line_it_starts_on(tmp_path):
    """A quoted field spanning lines and a blank line do not shift the line numbers that follow."""
    out = _parse(tmp_path, 'id,note\n1,"two\nlines"\nx,bad\n\n3,ok\n4\n5,a,extra\n')
    assert [(r["line_number"], r["reason"] is None) for r in out] == [
        (2, True),
        (4, False),
        (6, True),
        (7, True),
        (8, True),
    ]
    assert out[1]["raw"] == "x,bad" and out[1]["reason"].startswith("bad_value: id: 'x'")
    assert json.loads(out[0]["row"]) == {"id": 1, "note": "two\nlines"}
    assert json.loads(out[3]["row"]) == {"id": 4, "note": None}  # a missing field is empty
    assert out[4]["raw"] == "5,a,['extra']"  # an extra field is kept in the quarantine text


def test_an_empty_csv_has_no_records(tmp_path):
    assert _parse(tmp_path, "") == [] and _parse(tmp_path, "id,note\n") == []

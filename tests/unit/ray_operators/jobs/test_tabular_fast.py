"""The vectorized CSV fast path against the row-by-row parser, without a cluster: on tricky corpora
both give the same curated rows and the same quarantined records (reason, raw line, line number)."""

from __future__ import annotations

import json

import pytest

from ray_operators.curation import arrow_lines
from ray_operators.jobs import tabular, tabular_fast
from tests.helpers.curation import same

COLUMNS = {
    "id": "long",
    "x": "double",
    "flag": "boolean",
    "seen": "timestamp",
    "day": "date",
    "name": "string",
}


#: tests/integration/test_stage_curate_tabular.py's first file.
CSV_1 = b"""id,x,flag,seen,name,extra
1,1.5,true,2026-01-01T00:00:00Z,a,ignored
2,2.5,false,2026-01-02T00:00:00+00:00,b,
3,not-a-number,true,2026-01-03T00:00:00Z,c,
,4.5,true,2026-01-04T00:00:00Z,d,
5,5.5,maybe,2026-01-05T00:00:00Z,e,
6,6.5,,,,
"""


CSV_ODD = (
    b"id,x,flag,seen,day,name\r\n"
    b'1,1.5,TRUE,2026-01-01T00:00:00Z,2026-01-01T10:00:00,"quoted, with comma"\r\n'
    b'2,2.0,no,2026-01-01 10:00:00.25+05:30,2026-02-28,"two\r\nlines"\r\n'
    b"\r\n"
    b'3,1e5,1,2026-01-01T00:00:00,2026-02-30,"a ""quote"" in it"\r\n'
    b"4,.5,f,,,\r\n"
    b"5,1.0,yes,2026-01-01T00:00:00Z,2026-01-01,short\r\n"
    b"6.0,nan,T,2026-01-01T00:00:00Z,2026-01-01,x\r\n"
    b"007, 2,t,2026-13-01T00:00:00Z,20260101,\xc3\xa9\r\n"
    b"8,2,maybe,2026-01-01T00:00:00Z,2026-01-01,long,row,here\r\n"
    b"9,2\r\n"
    b"+10,1_0,0,2026-01-01T00:00:00.1234567Z,2026-01-01,y\r\n"
    b"11,2,1,2026-01-01T00:00:00Z,2026-01-01,last"
)


def csv_item(columns=COLUMNS, required=("id",)) -> dict:
    return {
        "path": "/raw/batch.csv",
        "unit": "batch.csv",
        "format": "csv",
        "columns": json.dumps(columns),
        "required": json.dumps(list(required)),
    }


def csv_tables(data: bytes, item=None, block_bytes: int = arrow_lines.BLOCK_BYTES, *, fast_ok: bool = True):
    item = item or csv_item()
    fast = tabular_fast.curate_csv(item, data, block_bytes=block_bytes)
    row = tabular.tables_of(tabular.parse_bytes(item, data), json.loads(item["columns"]))
    assert (fast is not None) == fast_ok
    same(fast or row, row)
    return fast or row


@pytest.mark.parametrize("block_bytes", [1, 64, arrow_lines.BLOCK_BYTES])
def test_tricky_csv_curates_alike_on_both_paths(block_bytes):
    good, bad = csv_tables(CSV_ODD, block_bytes=block_bytes)
    assert good.num_rows >= 5 and bad.num_rows >= 2
    good, bad = csv_tables(CSV_1, csv_item(required=("id", "x", "flag")), block_bytes=block_bytes)
    assert sorted(good.column("id").to_pylist()) == [1, 2] and bad.num_rows == 4


def test_csv_line_numbers_follow_the_line_each_record_starts_on():
    """tests/unit/ray_operators/jobs/test_tabular.py's corpus: a quoted field spanning lines, a blank line."""
    item = csv_item({"id": "long", "note": "string"})
    good, bad = csv_tables(b'id,note\n1,"two\nlines"\nx,bad\n\n3,ok\n4\n5,a,extra\n', item, block_bytes=1)
    assert [(q["line_number"], q["raw_line"]) for q in bad.to_pylist()] == [(4, "x,bad")]
    assert sorted(good.column("id").to_pylist()) == [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("data", "fast_ok"),
    [
        (b"", False),
        (b"id,x,flag,seen,day,name\n", True),
        (b"id,x,flag,seen,day,name", True),
        (b"\xef\xbb\xbfid,name\n1,a\n", False),
        (b"id,name\r1,a\r2,b\r", False),
        (b"id,name\n1,\xff\n2,b\n", True),
        (b'id,name\n1,a"b\n2,"c\n', False),
        (b"id,id\n1,2\n", False),
        (b"\nid,name\n1,a\n", False),
        (b"id,name\n1,a\x00b\n", False),
        (b"name\n\n \n", True),
        (b"id\n1\n\n\n2\n", True),
        (b"id,missing_required\n1,x\n", True),
    ],
    ids=[
        "empty",
        "header-only",
        "header-no-newline",
        "bom",
        "lone-cr",
        "not-utf8",
        "stray-quote",
        "repeated-name",
        "blank-header",
        "nul",
        "whitespace-rows",
        "blank-lines",
        "undeclared-column",
    ],
)
def test_odd_csv_files(data, fast_ok):
    csv_tables(data, csv_item(required=("id", "name")), fast_ok=fast_ok)
    csv_tables(data, csv_item(required=()), fast_ok=fast_ok)


def test_a_long_field_is_the_row_parsers_to_judge():
    import csv

    data = b"id,name\n1," + b"n" * (csv.field_size_limit() + 1) + b"\n2,b\n"
    csv_tables(data, fast_ok=False)


def test_clean_csv_never_reaches_the_row_parser(monkeypatch):
    data = b"id,x,flag,seen,day,name\n" + b"".join(
        b'%d,%d.5,true,2026-01-01T00:00:%02dZ,2026-01-02,"n, %d"\n' % (i, i, i % 60, i) for i in range(500)
    )

    def refuse(*args, **kwargs):
        raise AssertionError("a clean record reached the row parser")

    monkeypatch.setattr(tabular_fast.tabular, "csv_rows", refuse)
    good, bad = tabular_fast.curate_csv(csv_item(), data, block_bytes=1000)
    assert good.num_rows == 500 and bad.num_rows == 0

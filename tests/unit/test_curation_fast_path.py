"""The vectorized fast path against the row-by-row parser, without a cluster: on tricky corpora both
give the same curated rows and the same quarantined records (reason, raw line, line number)."""

from __future__ import annotations

import json

import pytest

from ray_operators.curation import arrow_lines, spark_logs, spark_logs_fast
from ray_operators.devstack.demo_data import generate_spark_logs
from ray_operators.jobs import tabular, tabular_fast

GOOD = (
    b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"m",'
    b'"kubernetes":{"pod_name":"p","namespace_name":"n","labels":{"app":"a","spark-role":"driver"}}}'
)
#: The Spark engine test's corpus (CRLF, blank lines, a JSON array, bytes that are not UTF-8, a naive
#: timestamp, flat dotted keys, labels that are not strings, over-long lines, no final newline) and
#: more: what pyarrow reads differently from Python's json, or not at all.
TRICKY_LOGS = b"".join(
    [
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"crlf line"}\r\n',
        b"\r\n",
        b"   \n",
        b"[1, 2]\n",
        b'{"timestamp":"2026-01-01T00:00:01","log_level":"WARN","message":"naive \xff\xfe bytes",'
        b'"kubernetes.labels.app":"flat-app","kubernetes.pod_name":"flat-pod"}\n',
        b'{"timestamp":"2026-01-01T00:00:02Z","log_level":"ERROR","message":"' + b"x" * 12_000 + b'"}\n',
        b'{"timestamp":"2026-01-01T00:00:03Z","log_level":"ERROR","message":"' + b"y" * 12_000 + b"\n",
        b'{"timestamp":"","log_level":"INFO","message":"m"}\n',
        b'{"timestamp":"2026-01-01T00:00:05Z","log_level":"INFO","message":"numbers as labels",'
        b'"kubernetes":{"pod_name":5,"labels":{"app":{"nested":true},"spark-role":null}}}\n',
        GOOD + b"\n",
        b'{"timestamp":"2026-02-30T00:00:00Z","log_level":"INFO","message":"no such day"}\n',
        b'{"timestamp":"2026-01-01T00:00:00.1234567Z","log_level":"INFO","message":"7 digits"}\n',
        b'{"timestamp":"2026-01-01 10:00:00.5+05:30","log_level":"INFO","message":"offset"}\n',
        b'{"timestamp":"yesterday","log_level":"INFO","message":"m"}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":5,"message":"number level"}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO"}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"m","x":-NaN}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"m","x":Inf}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"m","x":NaN}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"m","message":"twice"}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"a"} {"b":1}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO",\n',
        b'"message":"split"}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"flat null",'
        b'"kubernetes.pod_name":null,"kubernetes":{"pod_name":"nested"}}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"escaped key",'
        b'"k\\u0075bernetes.pod_name":null,"kubernetes":{"pod_name":"nested"}}\n',
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"\\u00e9\\n\\t"}\n',
        b"\x0c\n",
        b"\xef\xbb\xbf" + GOOD + b"\n",
        b'{"timestamp":"2026-01-01T00:00:04Z","log_level":"INFO","message":"last line, no newline"}',
    ]
)


def rows(table) -> list[str]:
    return sorted(repr(tuple(r.values())) for r in table.to_pylist())


def same(fast, row) -> None:
    assert fast[0].schema == row[0].schema and fast[1].schema == row[1].schema
    assert rows(fast[0]) == rows(row[0])
    assert rows(fast[1]) == rows(row[1])


def logs(data: bytes, block_bytes: int = arrow_lines.BLOCK_BYTES):
    fast = spark_logs_fast.curate_file("/raw/spark-1/driver.log", "spark-1", data, block_bytes=block_bytes)
    row = spark_logs_fast.curate_file("/raw/spark-1/driver.log", "spark-1", data, fast=False)
    same(fast, row)
    return fast


@pytest.mark.parametrize("block_bytes", [1, 300, arrow_lines.BLOCK_BYTES])
def test_tricky_spark_logs_curate_alike_on_both_paths(block_bytes):
    good, bad = logs(TRICKY_LOGS, block_bytes)
    assert good.num_rows > 5 and bad.num_rows > 10


def test_the_row_paths_tables_are_the_shared_parsers_records():
    import io

    records = list(spark_logs.records("/raw/spark-1/driver.log", "spark-1", io.BytesIO(TRICKY_LOGS)))
    good, bad = spark_logs_fast.curate_file("/raw/spark-1/driver.log", "spark-1", TRICKY_LOGS, fast=False)
    assert bad.to_pylist() == [spark_logs.quarantine_row(r) for r in records if r["row"] is None]
    assert good.to_pylist() == [spark_logs.typed_row(r) for r in records if r["row"] is not None]


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n", b"\r\n", GOOD, GOOD + b"\r" + GOOD + b"\n", b"\xef\xbb\xbf" + GOOD, b"\xff\n" + GOOD],
    ids=["empty", "blank", "crlf-blank", "no-newline", "lone-cr", "bom", "not-utf8"],
)
def test_small_and_odd_log_files(data):
    logs(data)


def test_generated_logs_with_malformed_lines_keep_their_line_numbers(tmp_path):
    counts = generate_spark_logs(tmp_path, apps=1, executors=1, lines_per_file=2000, malformed_fraction=0.05)
    for path in sorted(tmp_path.rglob("*.log")):
        good, bad = logs(path.read_bytes(), block_bytes=20_000)
        assert bad.num_rows > 0 and good.num_rows > 1500
    assert counts["bad_total"] > 0


def test_clean_blocks_never_reach_the_row_parser(monkeypatch, tmp_path):
    generate_spark_logs(tmp_path, apps=1, executors=0, lines_per_file=3000, malformed_fraction=0.0)
    data = next(tmp_path.rglob("*.log")).read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("a clean line reached the row parser")

    monkeypatch.setattr(spark_logs_fast.spark_logs, "records", refuse)
    good, bad = spark_logs_fast.curate_file("/p", "spark-1", data, block_bytes=50_000)
    assert good.num_rows == 3000 and bad.num_rows == 0


def test_a_bad_line_sends_only_itself_to_the_row_parser(monkeypatch):
    data = b"\n".join([GOOD] * 50 + [b'{"timestamp":"x","log_level":"INFO","message":"m"}'] + [GOOD] * 50)
    seen = []
    records = spark_logs.records

    def counting(path, unit, stream):
        out = list(records(path, unit, stream))
        seen.extend(r["line_number"] for r in out)
        return out

    monkeypatch.setattr(spark_logs_fast.spark_logs, "records", counting)
    good, bad = spark_logs_fast.curate_file("/p", "spark-1", data)
    (quarantined,) = bad.to_pylist()
    assert quarantined["line_number"] == 51 and quarantined["reason"].startswith("bad_timestamp")
    assert good.num_rows == 100 and len(seen) == 1


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
    """tests/unit/test_tabular.py's corpus: a quoted field spanning lines, a blank line."""
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

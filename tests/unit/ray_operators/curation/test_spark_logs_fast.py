"""The vectorized Spark-log fast path against the row-by-row parser, without a cluster: on tricky
corpora both give the same curated rows and the same quarantined records (reason, raw line, line
number)."""

from __future__ import annotations

import pytest

from ray_operators.curation import arrow_lines, spark_logs, spark_logs_fast
from ray_operators.devstack.demo_data import generate_spark_logs
from tests.helpers.curation import same

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

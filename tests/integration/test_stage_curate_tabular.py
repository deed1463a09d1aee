"""The curate stage on CSV, JSON-lines and Parquet files: a declared schema, bad rows quarantined."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.airflow_helpers import get_dag, xcoms

pytestmark = pytest.mark.integration
DAG = "curate_tabular"

CSV_1 = """id,x,flag,seen,name,extra
1,1.5,true,2026-01-01T00:00:00Z,a,ignored
2,2.5,false,2026-01-02T00:00:00+00:00,b,
3,not-a-number,true,2026-01-03T00:00:00Z,c,
,4.5,true,2026-01-04T00:00:00Z,d,
5,5.5,maybe,2026-01-05T00:00:00Z,e,
6,6.5,,,,
"""
CSV_2 = """id,x,flag,seen,name
7,7.5,true,2026-02-01T00:00:00Z,g
8,8.5,1,yesterday,h
"""


def _run(raw, fmt: str, output: str, day: int):
    when = datetime(2026, 7, day, tzinfo=UTC)
    run = get_dag(DAG).test(
        logical_date=when, run_after=when, run_conf={"raw_root": str(raw), "format": fmt, "output": output}
    )
    assert run.state == "success"
    return xcoms(DAG, run.run_id, "curate")["return_value"]["result"]


def test_csv_rows_are_typed_or_quarantined_with_reasons_and_new_files_come_alone(
    airflow_db, ray_head, iceberg, tmp_path
):
    raw = tmp_path / "raw"
    (raw / "2026-01").mkdir(parents=True)
    (raw / "2026-01" / "part-1.csv").write_text(CSV_1)
    iceberg.catalog.create_namespace_if_not_exists("curated")

    first = _run(raw, "csv", "curated.samples", 1)
    table = iceberg.catalog.load_table("curated.samples")
    rows = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 6] and first["rows_out"] == 3
    assert rows[0]["seen"] == datetime(2026, 1, 1, tzinfo=UTC) and rows[1]["flag"] is False
    assert rows[2]["flag"] is None and rows[2]["name"] is None  # optional columns may be empty
    assert rows[0]["source_file"].endswith("2026-01/part-1.csv")  # lineage to the raw file
    assert [f.name for f in table.schema().fields] == ["id", "x", "flag", "seen", "name", "source_file"]
    quarantine = iceberg.catalog.load_table("curated.samples_quarantine").scan().to_arrow().to_pylist()
    reasons = sorted(
        (q["line_number"], q["reason"].split(":")[0] + ":" + q["reason"].split(":")[1]) for q in quarantine
    )
    assert reasons == [(4, "bad_value: x"), (5, "missing_field: id"), (6, "bad_value: flag")]
    assert first["quarantined"] == 3

    # A new file: only it is read; the first file is done (processing-metadata table).
    (raw / "2026-02").mkdir()
    (raw / "2026-02" / "part-2.csv").write_text(CSV_2)
    second = _run(raw, "csv", "curated.samples", 2)
    assert second["folders"] == ["2026-02/part-2.csv"] and second["skipped_folders"] == ["2026-01/part-1.csv"]
    assert second["rows_out"] == 1 and second["quarantined"] == 1  # 8 has a bad timestamp
    processing = iceberg.catalog.load_table("curated.samples_processing").scan().to_arrow().to_pylist()
    done = {r["folder"]: r for r in processing if r["status"] == "SUCCESS"}
    assert {k: (v["records_processed"], v["records_quarantined"]) for k, v in done.items()} == {
        "2026-01/part-1.csv": (3, 3),
        "2026-02/part-2.csv": (1, 1),
    }


def test_json_lines_and_parquet(airflow_db, ray_head, iceberg, tmp_path):
    iceberg.catalog.create_namespace_if_not_exists("curated")
    raw_json = tmp_path / "json"
    raw_json.mkdir()
    lines = [
        json.dumps({"id": 1, "x": 1.0, "flag": True, "seen": "2026-01-01T00:00:00Z", "name": "a"}),
        '{"id": 2, "x": ',
        json.dumps([1, 2]),
        json.dumps({"id": 3, "x": "3.25"}),
    ]
    (raw_json / "batch.json").write_text("\n".join(lines) + "\n")
    result = _run(raw_json, "json", "curated.from_json", 3)
    got = sorted(iceberg.catalog.load_table("curated.from_json").scan().to_arrow()["x"].to_pylist())
    assert got == [1.0, 3.25] and result["quarantined"] == 2
    reasons = [
        q["reason"]
        for q in iceberg.catalog.load_table("curated.from_json_quarantine").scan().to_arrow().to_pylist()
    ]
    assert sorted(r.split(":")[0] for r in reasons) == ["bad_json", "bad_json"]

    raw_pq = tmp_path / "parquet"
    raw_pq.mkdir()
    pq.write_table(
        pa.table({"id": [1, 2, None], "x": [0.5, 1.5, 2.5], "name": ["p", "q", "r"]}), raw_pq / "a.parquet"
    )
    result = _run(raw_pq, "parquet", "curated.from_parquet", 4)
    assert result["rows_out"] == 2 and result["quarantined"] == 1

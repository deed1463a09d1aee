"""The preprocess stage: user transforms and built-ins over a pinned snapshot or a snapshot range."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import INPUT_PREFIX
from ray_operators.jobs.preprocess import STATS_PROPERTY
from tests.airflow_helpers import get_dag, xcoms

pytestmark = pytest.mark.integration
DAG = "preprocess_features"
RAW = pa.schema([("x", pa.float64()), ("y", pa.float64()), ("color", pa.string()), ("text", pa.string())])


def _batch(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "x": [float(i) for i in range(start, start + n)],
            "y": [1.0] * n,
            "color": [("red", "green", "blue")[i % 3] for i in range(start, start + n)],
            "text": [f"Hello World {i}" for i in range(start, start + n)],
        },
        schema=RAW,
    )


def test_pinned_snapshot_then_incremental_range(airflow_db, ray_head, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.raw", schema=RAW)
    raw.append(_batch(0, 100))
    first = raw.metadata.current_snapshot_id
    raw.append(_batch(100, 50))
    second = raw.metadata.current_snapshot_id
    dag = get_dag(DAG)

    when = datetime(2026, 6, 1, tzinfo=UTC)
    inputs = json.dumps([{"table": "db.raw", "snapshot_id": first}])
    run = dag.test(logical_date=when, run_after=when, run_conf={"inputs_json": inputs})
    assert run.state == "success"
    result = xcoms(DAG, run.run_id, "preprocess")["return_value"]["result"]
    table = iceberg.catalog.load_table("db.features")
    features = table.scan(snapshot_id=result["output"]["snapshot_id"]).to_arrow().to_pandas()
    # Pinned: only the first snapshot's 100 rows, although the table has 150 now.
    assert len(features) == result["rows_out"] == 100
    assert abs(features["x"].mean()) < 1e-9 and abs(features["x"].std(ddof=0) - 1) < 1e-9
    assert sorted(features["total"]) == [float(i) + 1.0 for i in range(100)]  # user function ran first
    assert set(features["y"]) == {2.0}  # the stateful class ran
    assert set(features["color"]) == {0, 1, 2}  # codes from the sorted vocabulary
    assert list(features.sort_values("total")["text"].iloc[0]) == ["hello", "world", "0"]
    snap = table.metadata.snapshot_by_id(result["output"]["snapshot_id"])
    stats = json.loads(snap.summary[STATS_PROPERTY])
    assert stats["standardize.x"]["mean"] == pytest.approx(49.5)
    assert stats["categorical.color"]["vocabulary"] == ["blue", "green", "red"]
    assert snap.summary[INPUT_PREFIX + "db.raw"] == str(first)

    later = datetime(2026, 6, 2, tzinfo=UTC)
    inputs = json.dumps([{"table": "db.raw", "from_snapshot_id": first, "to_snapshot_id": second}])
    run2 = dag.test(logical_date=later, run_after=later, run_conf={"inputs_json": inputs})
    assert run2.state == "success"
    result2 = xcoms(DAG, run2.run_id, "preprocess")["return_value"]["result"]
    # Only what the range appended: one data file, 50 rows.
    assert result2["rows_in"] == 50 and result2["incremental_files"] == 1
    snap2 = iceberg.catalog.load_table("db.features").metadata.snapshot_by_id(
        result2["output"]["snapshot_id"]
    )
    assert snap2.summary[INPUT_PREFIX + "db.raw"] == f"{first}..{second}"

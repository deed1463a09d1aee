"""The preprocess stage through Airflow (dag.test) on a real Ray head: user transforms and built-ins
over a pinned snapshot or a snapshot range, with a preprocessing state fitted once and reused,
refitted only on request (the whole table rewritten in one commit), and named in the lineage."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from ray_operators.contract.lineage import (
    INPUT_PREFIX,
    PREPROCESS_REFIT,
    PREPROCESS_STATE_URI,
    PREPROCESS_STATE_VERSION,
    RUN_KEY,
)
from ray_operators.contract.params import UNSEEN_CATEGORY_CODE
from ray_operators.iceberg_snapshots import ancestors, operation
from ray_operators.jobs.preprocess import STATE_DIR, current_state, load_state
from tests.helpers.airflow_helpers import get_dag, xcoms
from tests.helpers.iceberg_helpers import RAW_FEATURES, raw_feature_batch

pytestmark = pytest.mark.integration
DAG = "preprocess_features"
EDGES = "preprocess_state_edges"
#: The old per-run statistics property: no longer written.
OLD_STATS_PROPERTY = "lakehouse.preprocess.stats"


def _std(values: range) -> float:
    """Population standard deviation (what the state stores: Ray's StandardScaler, ddof=0)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _run(dag_id: str, day: int, inputs: list[dict], **conf) -> dict:
    when = datetime(2026, 6, day, tzinfo=UTC)
    run = get_dag(dag_id).test(
        logical_date=when, run_after=when, run_conf={"inputs_json": json.dumps(inputs), **conf}
    )
    assert run.state == "success"
    return xcoms(dag_id, run.run_id, "preprocess")["return_value"]["result"]


def _summary(table, snapshot_id: int) -> dict[str, str]:
    return dict(table.metadata.snapshot_by_id(snapshot_id).summary.additional_properties)


def _raw_x_and_x(table) -> list[tuple[float, float]]:
    """``(raw x, x as written)`` of every row: the user transform's ``total`` is raw x + y (1.0)."""
    rows = table.scan().to_arrow().select(["total", "x"]).to_pylist()
    return sorted((r["total"] - 1.0, r["x"]) for r in rows)


def _assert_scaled(table, mean: float, std: float, rows: int) -> None:
    pairs = _raw_x_and_x(table)
    assert len(pairs) == rows
    for raw, scaled in pairs:
        assert scaled == pytest.approx((raw - mean) / std, rel=1e-9, abs=1e-9), raw


def test_pinned_snapshot_then_incremental_range_applies_the_first_state(airflow_db, ray_head, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.raw", schema=RAW_FEATURES)
    raw.append(raw_feature_batch(0, 100))
    first = raw.metadata.current_snapshot_id
    raw.append(raw_feature_batch(100, 50))
    second = raw.metadata.current_snapshot_id

    result = _run(DAG, 1, [{"table": "db.raw", "snapshot_id": first}])
    table = iceberg.catalog.load_table("db.features")
    features = table.scan(snapshot_id=result["output"]["snapshot_id"]).to_arrow().to_pandas()
    # Pinned: only the first snapshot's 100 rows, although the table has 150 now.
    assert len(features) == result["rows_out"] == 100
    assert abs(features["x"].mean()) < 1e-9 and abs(features["x"].std(ddof=0) - 1) < 1e-9
    assert sorted(features["total"]) == [float(i) + 1.0 for i in range(100)]  # user function ran first
    assert set(features["y"]) == {2.0}  # the stateful class ran
    assert set(features["color"]) == {0, 1, 2}  # codes from the sorted vocabulary
    assert list(features.sort_values("total")["text"].iloc[0]) == ["hello", "world", "0"]
    summary = _summary(table, result["output"]["snapshot_id"])
    assert summary[INPUT_PREFIX + "db.raw"] == str(first)
    assert OLD_STATS_PROPERTY not in summary
    # The statistics are in the state artifact the snapshot names, next to the table.
    uri = summary[PREPROCESS_STATE_URI]
    assert uri == f"{table.metadata.location}/{STATE_DIR}/v1.json"
    assert summary[PREPROCESS_STATE_VERSION] == "1"
    state = load_state(uri)
    assert state["version"] == 1 and state["run_key"] == summary[RUN_KEY]
    assert state["fitted_on"] == {"table": "db.raw", "scope": "input", "snapshot_id": first, "rows": 100}
    assert state["transforms"]["standardize"]["x"]["mean"] == pytest.approx(49.5)
    assert state["transforms"]["standardize"]["x"]["std"] == pytest.approx(_std(range(100)))
    assert state["transforms"]["categorical"]["color"] == {
        "vocabulary": ["blue", "green", "red"],
        "unseen_code": UNSEEN_CATEGORY_CODE,
    }
    assert state["transforms"]["tokenize"] == ["text"]
    assert result["stats"]["standardize.x"]["mean"] == pytest.approx(49.5)
    assert result["state"]["uri"] == uri and result["state"]["version"] == 1

    inputs = [{"table": "db.raw", "from_snapshot_id": first, "to_snapshot_id": second}]
    result2 = _run(DAG, 2, inputs)
    # Only what the range appended: one data file, 50 rows.
    assert result2["rows_in"] == 50 and result2["incremental_files"] == 1
    table = iceberg.catalog.load_table("db.features")
    summary2 = _summary(table, result2["output"]["snapshot_id"])
    assert summary2[INPUT_PREFIX + "db.raw"] == f"{first}..{second}"
    # The increment was scaled with the first run's state, not with its own statistics (whose
    # mean is 124.5): every row of the table, old and new, is on one scale.
    assert summary2[PREPROCESS_STATE_URI] == uri and summary2[PREPROCESS_STATE_VERSION] == "1"
    assert summary2[RUN_KEY] != summary[RUN_KEY]
    _assert_scaled(table, 49.5, _std(range(100)), 150)
    new = table.scan().to_arrow().to_pandas()
    new = new[new["total"] > 100.5]
    assert len(new) == 50 and new["x"].min() > 1.7  # (100 - 49.5) / 28.87; its own z-scores would be < 0
    assert sorted(p.name for p in _state_dir(table).iterdir()) == ["v1.json"]  # no second version


def _state_dir(table):
    from pathlib import Path

    return Path(table.metadata.location.removeprefix("file://")) / STATE_DIR


EDGE_RAW = pa.schema(
    [
        ("id", pa.int64()),
        ("x", pa.float64()),
        ("z", pa.int64()),
        ("color", pa.string()),
        ("text", pa.string()),
        ("void_s", pa.float64()),
        ("void_m", pa.float64()),
        ("flat_s", pa.float64()),
        ("flat_m", pa.int64()),
    ]
)
SECOND_TEXTS = ["", "  Leading  And Trailing ", None, "Tabs\tAND\nnewlines"]


def test_second_increment_uses_the_first_state_unseen_categories_null_and_constant_columns(
    airflow_db, ray_head, iceberg
):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.edge_raw", schema=EDGE_RAW)
    n1, n2 = 100, 40
    raw.append(
        pa.table(
            {
                "id": list(range(n1)),
                "x": [float(i) for i in range(n1)],
                "z": [10 + i % 10 for i in range(n1)],
                "color": [("red", "green", "blue")[i % 3] for i in range(n1)],
                "text": [f"Row {i}" for i in range(n1)],
                "void_s": [None] * n1,
                "void_m": [None] * n1,
                "flat_s": [7.0] * n1,
                "flat_m": [3] * n1,
            },
            schema=EDGE_RAW,
        )
    )
    first = raw.metadata.current_snapshot_id
    # Another distribution: x around 1000, z up to 139, a colour never seen, nulls, values in the
    # columns that were all null, other constants.
    raw.append(
        pa.table(
            {
                "id": [1000 + i for i in range(n2)],
                "x": [1000.0 + i for i in range(n2)],
                "z": [100 + i for i in range(n2)],
                "color": [("purple", None, "red", "blue")[i % 4] for i in range(n2)],
                "text": [SECOND_TEXTS[i % 4] for i in range(n2)],
                "void_s": [5.0] * n2,
                "void_m": [0.25] * n2,
                "flat_s": [9.0] * n2,
                "flat_m": [5] * n2,
            },
            schema=EDGE_RAW,
        )
    )
    second = raw.metadata.current_snapshot_id

    result1 = _run(EDGES, 10, [{"table": "db.edge_raw", "snapshot_id": first}])
    result2 = _run(EDGES, 11, [{"table": "db.edge_raw", "from_snapshot_id": first, "to_snapshot_id": second}])
    table = iceberg.catalog.load_table("db.edges")
    s1 = _summary(table, result1["output"]["snapshot_id"])
    s2 = _summary(table, result2["output"]["snapshot_id"])
    assert s1[PREPROCESS_STATE_URI] == s2[PREPROCESS_STATE_URI] and s1[PREPROCESS_STATE_VERSION] == "1"
    assert s2[PREPROCESS_STATE_VERSION] == "1"
    t = load_state(s2[PREPROCESS_STATE_URI])["transforms"]
    # Documented values for the degenerate columns.
    assert t["standardize"]["void_s"] == {"mean": 0.0, "std": 1.0, "count": 0}
    assert t["minmax"]["void_m"] == {"min": 0.0, "max": 1.0, "count": 0}
    assert t["standardize"]["flat_s"] == {"mean": 7.0, "std": 0.0, "count": n1}
    assert t["minmax"]["flat_m"] == {"min": 3.0, "max": 3.0, "count": n1}
    assert t["minmax"]["z"] == {"min": 10.0, "max": 19.0, "count": n1}

    rows = {r["id"]: r for r in table.scan().to_arrow().to_pylist()}
    assert len(rows) == n1 + n2
    std = _std(range(n1))
    for i in range(n1):
        r = rows[i]
        assert r["x"] == pytest.approx((i - 49.5) / std)
        assert r["z"] == pytest.approx((i % 10) / 9)
        assert r["void_s"] is None and r["void_m"] is None  # nulls stay null
        assert r["flat_s"] == 0.0 and r["flat_m"] == 0.0  # constant -> 0
        assert r["color"] == {"red": 2, "green": 1, "blue": 0}[("red", "green", "blue")[i % 3]]
        assert r["text"] == ["row", str(i)]
    for i in range(n2):
        r = rows[1000 + i]
        # The first increment's mean and std, not this increment's own (mean 1019.5).
        assert r["x"] == pytest.approx((1000 + i - 49.5) / std)
        assert r["z"] == pytest.approx((100 + i - 10) / 9)  # outside [0, 1]: the fitted range
        assert r["void_s"] == 5.0 and r["void_m"] == 0.25  # no values when fitted: pass through
        assert r["flat_s"] == 2.0 and r["flat_m"] == 2.0  # (9 - 7) / 1, (5 - 3) / 1
        colour = ("purple", None, "red", "blue")[i % 4]
        assert r["color"] == {"purple": -1, None: -1, "red": 2, "blue": 0}[colour]
        assert r["text"] == (SECOND_TEXTS[i % 4] or "").lower().split()
    schema = table.schema().as_arrow()
    assert schema.field("color").type == pa.int64() and schema.field("z").type == pa.float64()


def test_refit_rewrites_the_whole_table_once_with_the_next_version(airflow_db, ray_head, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.raw", schema=RAW_FEATURES)
    raw.append(raw_feature_batch(0, 100))
    first = raw.metadata.current_snapshot_id
    raw.append(raw_feature_batch(100, 50))
    second = raw.metadata.current_snapshot_id
    increment = [{"table": "db.raw", "from_snapshot_id": first, "to_snapshot_id": second}]
    _run(DAG, 20, [{"table": "db.raw", "snapshot_id": first}])
    _run(DAG, 21, increment)
    before = iceberg.catalog.load_table("db.features")
    uri1 = before.metadata.snapshots[-1].summary[PREPROCESS_STATE_URI]
    v1_text = (_state_dir(before) / "v1.json").read_text()
    known = {s.snapshot_id for s in before.metadata.snapshots}
    commits = len(before.metadata.metadata_log)

    # A run triggered with refit (the UI's run param), fitting on the whole input table.
    result = _run(DAG, 22, increment, refit=True, fit_on="table")
    table = iceberg.catalog.load_table("db.features")
    new = [s for s in table.metadata.snapshots if s.snapshot_id not in known]
    # One overwrite commit: Iceberg's delete of every old row and the append of the rewritten
    # table, one metadata update, both carrying the run key and the new state.
    assert len(table.metadata.metadata_log) == commits + 1
    assert [operation(s) for s in new] == ["delete", "append"]
    assert new[0].summary["deleted-records"] == "150" and new[1].summary["added-records"] == "150"
    assert table.metadata.current_snapshot_id == new[1].snapshot_id == result["output"]["snapshot_id"]
    key = new[1].summary[RUN_KEY]
    for snap in new:
        assert snap.summary[RUN_KEY] == key
        assert snap.summary[PREPROCESS_STATE_VERSION] == "2" and snap.summary[PREPROCESS_REFIT] == "true"
    uri2 = new[1].summary[PREPROCESS_STATE_URI]
    assert uri2 == f"{table.metadata.location}/{STATE_DIR}/v2.json"
    state = load_state(uri2)
    assert state["version"] == 2 and state["refit"] is True
    assert state["fitted_on"] == {"table": "db.raw", "scope": "table", "snapshot_id": second, "rows": 150}
    assert state["transforms"]["standardize"]["x"]["mean"] == pytest.approx(74.5)
    # Every row of the table, the first run's included, is on the new scale, once.
    assert result["rows_out"] == 150
    _assert_scaled(table, 74.5, _std(range(150)), 150)
    # The old version is still there, unchanged (the model trained on it can still use it).
    assert (_state_dir(table) / "v1.json").read_text() == v1_text
    assert load_state(uri1)["transforms"]["standardize"]["x"]["mean"] == pytest.approx(49.5)
    assert current_state(table)["version"] == 2


def test_state_version_in_the_lineage_and_a_rolled_back_refit_does_not_count(airflow_db, ray_head, iceberg):
    iceberg.catalog.create_namespace_if_not_exists("db")
    raw = iceberg.catalog.create_table("db.raw", schema=RAW_FEATURES)
    raw.append(raw_feature_batch(0, 100))
    first = raw.metadata.current_snapshot_id
    raw.append(raw_feature_batch(100, 50))
    second = raw.metadata.current_snapshot_id
    increment = [{"table": "db.raw", "from_snapshot_id": first, "to_snapshot_id": second}]
    r1 = _run(DAG, 25, [{"table": "db.raw", "snapshot_id": first}])
    # A refit fitted on this run's input only (the 50 appended rows), the whole table rewritten.
    r2 = _run(DAG, 26, increment, refit=True, fit_on="input")
    table = iceberg.catalog.load_table("db.features")
    state2 = load_state(_summary(table, r2["output"]["snapshot_id"])[PREPROCESS_STATE_URI])
    assert state2["fitted_on"] == {
        "table": "db.raw",
        "scope": "input",
        "from_snapshot_id": first,
        "to_snapshot_id": second,
        "rows": 50,
    }
    _assert_scaled(table, 124.5, _std(range(100, 150)), 150)
    # Every snapshot the stage made names the state it applied: the lineage of each row's scale.
    branch = ancestors(table.metadata)
    assert [s.summary[PREPROCESS_STATE_VERSION] for s in branch] == ["2", "2", "1"]
    assert all(
        s.summary[PREPROCESS_STATE_URI].endswith(f"/v{s.summary[PREPROCESS_STATE_VERSION]}.json")
        for s in branch
    )

    # Roll the refit back: v2 is off the branch, so the current state is v1 again, and the next
    # increment is scaled with v1.
    table.manage_snapshots().set_current_snapshot(r1["output"]["snapshot_id"]).commit()
    table = iceberg.catalog.load_table("db.features")
    assert current_state(table)["version"] == 1
    r3 = _run(DAG, 27, increment)
    table = iceberg.catalog.load_table("db.features")
    summary = _summary(table, r3["output"]["snapshot_id"])
    assert summary[PREPROCESS_STATE_VERSION] == "1" and PREPROCESS_REFIT not in summary
    _assert_scaled(table, 49.5, _std(range(100)), 150)
    assert [s.summary[PREPROCESS_STATE_VERSION] for s in ancestors(table.metadata)] == ["1", "1"]

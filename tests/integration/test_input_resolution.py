"""Where a generated stage's input snapshots come from, resolved against a real SqlCatalog.

The run context is a plain mapping here (the keys Airflow puts in a task's context); the
snapshots, their timestamps and the catalog are real.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from ray_operators.assets import iceberg_asset
from ray_operators.operators.inputs import InputResolutionError, resolve_inputs

pytestmark = pytest.mark.integration


class FakeTI:
    def __init__(self, values: dict) -> None:
        self.values = values

    def xcom_pull(self, task_ids: str):
        return self.values.get(task_ids)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest.fixture
def snapshots(airflow_db, iceberg):
    ids = []
    for _ in range(3):
        ids += iceberg.commit("db.events", "append", "1")
        time.sleep(0.05)  # distinct commit timestamps
    table = iceberg.catalog.load_table("db.events")
    stamps = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
    return ids, stamps, iceberg.conn_id


def _ref(read: str = "pinned", source: dict | None = None, **extra) -> list[dict]:
    return [{"table": "db.events", "read": read, "source": source or {"kind": "table"}, **extra}]


def test_time_travel_and_interval_commits(snapshots):
    (a, b, c), stamps, conn = snapshots
    interval = {"data_interval_start": _at(stamps[a]), "data_interval_end": _at(stamps[b]), "params": {}}

    inputs, identity = resolve_inputs(_ref("as_of_interval_end"), interval, conn)
    assert inputs == [{"table": "db.events", "snapshot_id": b}] and identity is None  # keyed by interval
    inputs, _ = resolve_inputs(_ref("interval_commits"), interval, conn)
    assert inputs == [{"table": "db.events", "snapshot_ids": [b]}]  # committed in (start, end]
    inputs, _ = resolve_inputs(_ref("current"), interval, conn)
    assert inputs == [{"table": "db.events", "snapshot_id": c}]
    before = {
        "data_interval_start": _at(stamps[a] - 60_000),
        "data_interval_end": _at(stamps[a] - 1),
        "params": {},
    }
    with pytest.raises(InputResolutionError, match="no snapshot existed at the end of the data interval"):
        resolve_inputs(_ref("as_of_interval_end"), before, conn)
    # A slice of the interval becomes a row filter on the pinned read.
    inputs, _ = resolve_inputs(_ref("current", slice_column="ts"), interval, conn)
    assert (
        inputs[0]["row_filter"]
        == f"ts >= '{_at(stamps[a]).isoformat()}' and ts < '{_at(stamps[b]).isoformat()}'"
    )
    with pytest.raises(InputResolutionError, match="needs a data interval"):
        resolve_inputs(_ref("current", slice_column="ts"), {"params": {}}, conn)


def test_params_sensor_producer_and_events(snapshots):
    (a, b, c), _, conn = snapshots
    # A UI trigger's params win for entry inputs, and key the run by the snapshots.
    inputs, identity = resolve_inputs(_ref(), {"params": {"snapshot_ids": [c, b, b]}}, conn)
    assert inputs == [{"table": "db.events", "snapshot_ids": [c, b]}]  # as asked, once each
    assert identity == "snapshots=" + "+".join(map(str, sorted([b, c])))  # order does not matter
    inputs, identity = resolve_inputs(_ref(), {"params": {"from_snapshot_id": a, "to_snapshot_id": c}}, conn)
    assert inputs == [{"table": "db.events", "from_snapshot_id": a, "to_snapshot_id": c}]
    assert identity == f"snapshots={a}..{c}"
    other = {"params": {"snapshot_ids": [b], "input_table": "db.other"}}
    inputs, _ = resolve_inputs(_ref(), other, conn)
    assert inputs == [{"table": "db.events", "snapshot_id": c}]  # the params named another table

    sensor = {"task": "wait", "kind": "sensor"}
    ti = FakeTI({"wait": {"kind": "snapshots", "snapshot_ids": [b, c], "new_head": {"snapshot_id": c}}})
    inputs, identity = resolve_inputs(_ref(source=sensor), {"ti": ti, "params": {}}, conn)
    assert inputs == [{"table": "db.events", "snapshot_ids": [b, c]}] and identity == f"snapshots={b}+{c}"
    rollback = FakeTI({"wait": {"kind": "rollback", "snapshot_ids": [], "new_head": {"snapshot_id": a}}})
    inputs, _ = resolve_inputs(_ref(source=sensor), {"ti": rollback, "params": {}}, conn)
    assert inputs == [{"table": "db.events", "snapshot_id": a}]

    producer = {"task": "prep", "kind": "stage"}
    ti = FakeTI({"prep": {"result": {"output": {"table": "db.events", "snapshot_id": b}}}})
    # A producing stage pins its own commit, even when params ask for other snapshots.
    inputs, identity = resolve_inputs(
        _ref(source=producer), {"ti": ti, "params": {"snapshot_ids": [c]}}, conn
    )
    assert inputs == [{"table": "db.events", "snapshot_id": b}] and identity == f"snapshots={b}"
    with pytest.raises(InputResolutionError, match="upstream stage prep reported no snapshot"):
        resolve_inputs(_ref(source=producer), {"ti": FakeTI({}), "params": {}}, conn)

    asset = iceberg_asset("db.events", iceberg_conn_id=conn)
    unrelated = iceberg_asset("db.elsewhere", iceberg_conn_id=conn)
    events = {
        asset: [
            SimpleNamespace(extra={"payload": {"snapshot_ids": [b]}}),
            SimpleNamespace(extra={"payload": {"snapshot_ids": [c]}}),
        ],
        unrelated: [SimpleNamespace(extra={"payload": {"snapshot_ids": [a]}})],
    }
    inputs, identity = resolve_inputs(
        _ref(source={"kind": "events"}), {"triggering_asset_events": events, "params": {}}, conn
    )
    assert inputs == [{"table": "db.events", "snapshot_ids": [b, c]}]  # both events, not the other table


def test_no_snapshot_yet_is_a_clear_error(airflow_db, iceberg):
    iceberg.catalog.create_table("db.empty", schema=iceberg.catalog.load_table("db.events").schema())
    ref = [{"table": "db.empty", "read": "pinned", "source": {"kind": "table"}}]
    with pytest.raises(InputResolutionError, match="input db.empty: the table has no snapshot yet"):
        resolve_inputs(
            ref, {"params": {}, "data_interval_start": None, "data_interval_end": None}, iceberg.conn_id
        )

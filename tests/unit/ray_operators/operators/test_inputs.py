"""Input resolution and requested snapshots on synthetic metadata: no Ray, no Airflow database."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest

from ray_operators.operators.inputs import InputResolutionError, requested_snapshots, resolve_inputs
from tests.helpers.snapshots import metadata, snap

START, END = datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 4, tzinfo=UTC)


class FakeTI:
    def __init__(self, xcoms):
        self.xcoms = xcoms

    def xcom_pull(self, task_ids, **_):
        return self.xcoms.get(task_ids)


def context(params=None, xcoms=None, interval=(START, END)):
    return {
        "params": params or {},
        "ti": FakeTI(xcoms or {}),
        "data_interval_start": interval[0],
        "data_interval_end": interval[1],
    }


# 11 (t=1s) <- 22 (t=2s) <- 33 (t=3s, overwrite) <- 44 (t=4s) ; 55 (t=3.5s) off the branch.
SNAPS = [snap(11, None, 1), snap(22, 11, 2), snap(33, 22, 3, op="overwrite"), snap(44, 33, 4)]
OFF_BRANCH = snap(55, 22, 3)
OFF_BRANCH.timestamp_ms = 3500
META = metadata([*SNAPS, OFF_BRANCH], 44)


def resolve(refs, ctx):
    return resolve_inputs(refs, ctx, "iceberg_test", load_metadata=lambda table: META)


def test_requested_snapshots_from_trigger_params():
    assert requested_snapshots({"snapshot_ids": [5, 3, 5]}, "db.t", entry=True) == {"snapshot_ids": [5, 3]}
    assert requested_snapshots({"snapshot_ids": "[7]"}, "db.t", entry=True) == {"snapshot_ids": [7]}
    assert requested_snapshots({"from_snapshot_id": "1", "to_snapshot_id": "9"}, "db.t", entry=True) == {
        "from_snapshot_id": 1,
        "to_snapshot_id": 9,
    }
    # Not an entry input and not named: a UI trigger does not reach past the first stage.
    assert requested_snapshots({"snapshot_ids": [5]}, "db.t", entry=False) is None
    assert requested_snapshots({"snapshot_ids": [5], "input_table": "db.t"}, "db.t", entry=False) == {
        "snapshot_ids": [5]
    }
    assert requested_snapshots({"snapshot_ids": [5], "input_table": "db.other"}, "db.t", entry=True) is None
    assert requested_snapshots({}, "db.t", entry=True) is None


def test_requested_snapshots_name_the_run_in_any_order():
    a, key_a = resolve([{"table": "db.t"}], context({"snapshot_ids": [44, 22]}))
    b, key_b = resolve([{"table": "db.t"}], context({"snapshot_ids": [22, 44]}))
    assert a[0]["snapshot_ids"] == [44, 22] and b[0]["snapshot_ids"] == [22, 44]  # order kept for the read
    assert key_a == key_b == "snapshots=22+44"


def test_upstream_stage_and_sensor_sources():
    stage = {"table": "db.t", "source": {"kind": "stage", "task": "prep", "appended": True}}
    out = {"prep": {"result": {"output": {"table": "db.t", "snapshot_id": 44}}}}
    assert resolve([stage], context(xcoms=out)) == ([{"table": "db.t", "snapshot_ids": [44]}], "snapshots=44")
    whole = {**stage, "source": {"kind": "stage", "task": "prep"}}
    assert resolve([whole], context(xcoms=out))[0] == [{"table": "db.t", "snapshot_id": 44}]
    with pytest.raises(InputResolutionError, match="upstream stage prep reported no snapshot"):
        resolve([stage], context(xcoms={"prep": {"result": {"output": {"table": "db.x", "snapshot_id": 1}}}}))
    sensor = {"table": "db.t", "source": {"kind": "sensor", "task": "wait"}}
    payload = {"wait": {"kind": "snapshots", "snapshot_ids": [22, 44], "new_head": {"snapshot_id": 44}}}
    assert resolve([sensor], context(xcoms=payload))[0] == [{"table": "db.t", "snapshot_ids": [22, 44]}]
    rollback = {"wait": {"kind": "rollback", "snapshot_ids": [], "new_head": {"snapshot_id": 22}}}
    assert resolve([sensor], context(xcoms=rollback))[0] == [{"table": "db.t", "snapshot_id": 22}]


def test_read_modes_follow_the_branch():
    # As of the interval end (t=4s): 44. At t=3.6s it would be 33, never the rolled-back 55.
    assert resolve([{"table": "db.t", "read": "as_of_interval_end"}], context()) == (
        [{"table": "db.t", "snapshot_id": 44}],
        None,
    )
    mid = (START, datetime(1970, 1, 1, 0, 0, 3, 600000, tzinfo=UTC))
    assert resolve([{"table": "db.t", "read": "as_of_interval_end"}], context(interval=mid))[0] == [
        {"table": "db.t", "snapshot_id": 33}
    ]
    # The appends committed in (2s, 4s] on the branch: 44 (33 is an overwrite, 55 is off the branch).
    items, key = resolve([{"table": "db.t", "read": "interval_commits"}], context())
    assert items == [{"table": "db.t", "snapshot_ids": [44]}] and key is None
    # A time-based read is named by the interval (the default rule), so it resolves to no identity.
    assert resolve([{"table": "db.t", "read": "current"}], context())[0] == [
        {"table": "db.t", "snapshot_id": 44}
    ]
    early = (START, datetime(1970, 1, 1, 0, 0, 0, 500000, tzinfo=UTC))
    with pytest.raises(InputResolutionError, match="no snapshot existed at the end of the data interval"):
        resolve([{"table": "db.t", "read": "as_of_interval_end"}], context(interval=early))


def test_slice_column_becomes_a_row_filter_and_needs_an_interval():
    items, _ = resolve([{"table": "db.t", "read": "current", "slice_column": "day"}], context())
    assert items[0]["row_filter"] == f"day >= '{START.isoformat()}' and day < '{END.isoformat()}'"
    with pytest.raises(InputResolutionError, match="slice_column day needs a data interval"):
        resolve([{"table": "db.t", "slice_column": "day"}], context(interval=(None, None)))


def test_resolution_imports_neither_ray_nor_airflow():
    import subprocess

    code = (
        "import sys\n"
        "from ray_operators.operators import inputs\n"
        "from ray_operators.contract import run_key, params, spec\n"
        "print(sorted(m for m in ('ray', 'airflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

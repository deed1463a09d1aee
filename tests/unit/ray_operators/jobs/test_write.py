"""find_committed on synthetic metadata: the run key's commit on the branch, never a rolled-back one."""

from __future__ import annotations

from types import SimpleNamespace

from ray_operators.iceberg_snapshots import (
    committed_with,
)
from ray_operators.jobs.write import find_committed
from tests.helpers.snapshots import metadata, snap


def test_find_committed_returns_the_newest_snapshot_with_the_run_key():
    delete = snap(1, None, 1, op="delete", **{"lakehouse.run-key": "k"})
    append = snap(2, 1, 2, **{"lakehouse.run-key": "k"})
    table = SimpleNamespace(metadata=metadata([delete, append], 2))
    assert find_committed(table, "k").snapshot_id == 2
    assert find_committed(table, "other") is None


def test_a_rolled_back_commit_is_not_a_commit():
    base = snap(1, None, 1)
    written = snap(2, 1, 2, **{"lakehouse.run-key": "k"})
    # main rolled back to 1: snapshot 2 is still in the metadata, but not on the branch.
    rolled_back = SimpleNamespace(metadata=metadata([base, written], 1))
    assert find_committed(rolled_back, "k") is None
    # The re-run's commit (3, on top of 1) is the one that counts; another branch's head does not.
    rewritten = snap(3, 1, 3, **{"lakehouse.run-key": "k"})
    assert (
        find_committed(SimpleNamespace(metadata=metadata([base, written, rewritten], 3)), "k").snapshot_id
        == 3
    )
    assert committed_with(metadata([base, written], 1), "lakehouse.run-key", "k", branch="audit") is None

"""Synthetic table metadata: snapshots on branches, for the snapshot-walk tests."""

from __future__ import annotations

from types import SimpleNamespace


def snap(sid, parent, seq, op="append", **props):
    summary = SimpleNamespace(
        operation=SimpleNamespace(value=op), additional_properties={"added-records": "1", **props}
    )
    summary.get = lambda key, default=None: summary.additional_properties.get(key, default)
    return SimpleNamespace(
        snapshot_id=sid,
        parent_snapshot_id=parent,
        sequence_number=seq,
        timestamp_ms=1000 * seq,
        summary=summary,
    )


def metadata(snaps, head):
    refs = {"main": SimpleNamespace(snapshot_id=head)} if head is not None else {}
    return SimpleNamespace(snapshots=snaps, refs=refs)

"""The run key: the identity of one stage run's output, stable across tries, clears and re-runs.

A commit carries its run key in the snapshot summary (:data:`~ray_operators.contract.lineage.RUN_KEY`).
A write whose run key is already committed *on the branch head's ancestry* writes nothing; a
snapshot that a rollback took off the branch does not count, so a re-run after a rollback writes
again. The rule has one home, this module; the operators compute keys with it and the jobs never
invent one.

``<dag_id>/<task_id>/<identity>``, where the identity is, in this order:

1. the input snapshots the run reads, when they came from a sensor, an upstream stage, asset
   events or a UI trigger (``snapshots=1+2``: order-independent for a list);
2. curation (a stage that claims raw units in its processing table): the run id, because any run
   may take the units nobody took yet and a retry must repeat exactly its own claim;
3. the data interval (``interval=<start>/<end>``), for time-based reads;
4. the partition key of a partitioned run;
5. the input snapshot ids of explicitly pinned inputs;
6. the run id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

#: Stages exactly-once per raw unit rather than per interval: their key follows the run.
RUN_KEYED_STAGES = frozenset({"curate"})


def snapshots_identity(
    snapshot_ids: Sequence[int] | None = None, *, range_: tuple[int, int] | None = None
) -> str:
    """``snapshots=...`` for a list (sorted: the same snapshots in any order are the same run) or
    a ``(from, to)`` range."""
    if range_ is not None:
        return f"snapshots={range_[0]}..{range_[1]}"
    return "snapshots=" + "+".join(str(int(s)) for s in sorted(int(s) for s in snapshot_ids or []))


def run_key(
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    stage: str | None = None,
    input_identity: str | None = None,
    interval: tuple[datetime, datetime] | None = None,
    partition_key: str | None = None,
    pinned_snapshot_ids: Sequence[int] = (),
) -> str:
    """The run key of one stage run (see the module docstring for the order of the rule)."""
    if input_identity:
        identity = input_identity
    elif stage in RUN_KEYED_STAGES:
        identity = f"run={run_id}"
    elif interval is not None and interval[0] is not None and interval[1] is not None:
        identity = f"interval={interval[0].isoformat()}/{interval[1].isoformat()}"
    elif partition_key is not None:
        identity = f"partition={partition_key}"
    elif pinned_snapshot_ids:
        identity = "snapshots=" + ",".join(str(s) for s in pinned_snapshot_ids)
    else:
        identity = f"run={run_id}"
    return f"{dag_id}/{task_id}/{identity}"


def derived(key: str, part: str) -> str:
    """The key of one of a run's auxiliary commits (``<key>/start``, ``<key>/quarantine``...)."""
    return f"{key}/{part}"

"""When a deferred task may be resumed: the one rule both of our triggers follow.

Airflow 3.3's scheduler fails a deferred task whose trigger fired before the scheduler processed
the executor's "success" for the deferring worker's exit: by the time that stale event arrives,
the resumed try is already queued or running, and the scheduler takes it for a task killed
outside Airflow (apache/airflow#67287, #72716; only the "scheduled" case is handled in 3.3.2).
Seen here with the real scheduler on 2 busy cores: the stale event came 5 s after the deferral.
So the operators set ``not_before`` when they defer, and a trigger holds its event until then,
and also for the hold from its own start (:func:`hold_from`): the task's clock starts before its
deferral reaches the database, and on 2 busy cores the API call that records it took 9 s (a call
that timed out on the worker's side and was sent again), most of a 10 s hold; the trigger starts
only once the deferral is recorded, so the worker's exit (and its stale event) follows soon after,
unless the worker's calls keep timing out: raise ``[workers] execution_api_timeout`` (default 5 s)
on a busy machine (the local stacks set 30). Quick jobs never pay for the hold: ``RayJobOperator``
watches a job in the worker for a few seconds before it defers (``wait_before_defer``).

The hold is ``[ray_lakehouse] resume_hold_seconds`` (``AIRFLOW__RAY_LAKEHOUSE__RESUME_HOLD_SECONDS``,
default 10), read by the task when it defers (``not_before``) and by the triggerer when the trigger
starts: set it on both (0 on both turns it off, as ``dag.test()`` runs do).
"""

from __future__ import annotations

import asyncio
import time

from ray_operators.airflow_conf import resume_hold_seconds


def not_before_from_now() -> float:
    """The ``not_before`` (epoch seconds) of a trigger created now: now plus the configured hold."""
    return time.time() + resume_hold_seconds()


def hold_from(not_before: float | None, started: float) -> float | None:
    """When the trigger of a deferred task, started at ``started`` (epoch seconds), may yield: the
    later of the task's ``not_before`` and ``started`` plus the hold (the triggerer's setting).
    None (a trigger no task deferred to, as an asset watcher's) holds nothing."""
    if not_before is None:
        return None
    return max(float(not_before), started + resume_hold_seconds())


async def hold_until(not_before: float | None) -> None:
    """Sleep until ``not_before`` (epoch seconds; None or past: return at once)."""
    if not_before is not None:
        delay = float(not_before) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

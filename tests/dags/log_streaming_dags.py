"""DAGs for the log-streaming tests: a job printing many lines, waited for deferred, in the
worker, and handed over from the worker to the trigger mid-log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG

from ray_operators.operators.ray_job import RayJobOperator

MANY_LINES = Path(__file__).resolve().parent.parent / "jobs" / "many_lines.py"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
LINES = 50_000
#: The handoff DAG's worker shows at least this many characters of the log before deferring.
HANDOFF_AFTER_CHARS = 100_000


def many_lines(count: int, pause_after: int | None = None, pause: float = 0.0) -> str:
    extra = f" {pause_after} {pause}" if pause_after is not None else ""
    return f"{sys.executable} {MANY_LINES} {count}{extra}"


class HandoffRayJobOperator(RayJobOperator):
    """Shows the first part of the log in the worker, then defers: the trigger goes on from there."""

    def poll_until_complete(self, external_id: Any, context: Any) -> dict[str, Any]:
        submission_id = self._submission_id = str(external_id)
        tail = self._start_log_tail(submission_id)
        try:
            while self._log_offset < HANDOFF_AFTER_CHARS and tail.running:
                tail.show_for(0.1, self._emit)
        finally:
            tail.stop()
        self._follower = None
        return super().poll_until_complete(external_id, context)


# "deferrable" defers at once (wait_before_defer=0): these DAGs test the trigger's path.
for mode, deferrable in (("deferrable", True), ("sync", False)):
    with DAG(f"ray_many_lines_{mode}", schedule=None, start_date=START, catchup=False):
        RayJobOperator(
            task_id="count",
            entrypoint=many_lines(LINES),
            deferrable=deferrable,
            wait_before_defer=0,
            poll_interval=0.5,
        )

# The default wait_before_defer: a quick job ends in the worker, a longer one is handed over.
with DAG("ray_quick_deferrable", schedule=None, start_date=START, catchup=False):
    RayJobOperator(task_id="count", entrypoint=many_lines(2_000), deferrable=True, poll_interval=0.5)
with DAG("ray_many_lines_wait_then_defer", schedule=None, start_date=START, catchup=False):
    # The job pauses mid-log longer than the worker watches it.
    RayJobOperator(
        task_id="count", entrypoint=many_lines(LINES, 20_000, 15.0), deferrable=True, poll_interval=0.5
    )

with DAG("ray_many_lines_handoff", schedule=None, start_date=START, catchup=False):
    # The job pauses mid-log, so it is still running when the worker defers.
    HandoffRayJobOperator(
        task_id="count",
        entrypoint=many_lines(LINES, 20_000, 8.0),
        deferrable=True,
        wait_before_defer=0,
        poll_interval=0.5,
    )

"""Trigger that waits for a Ray job while its task is deferred."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ray_operators._job_common import flush_log_tail, is_result_line, new_log_lines
from ray_operators.hooks.ray import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AsyncRayJobsClient,
    RayAuthError,
    RayJobsError,
    RayJobsHook,
)

#: Consecutive failed polls (network blips, a restarting dashboard) tolerated before giving up.
MAX_CONSECUTIVE_ERRORS = 10
#: How long to wait for a stopped job to report STOPPED.
STOP_GRACE_SECONDS = 15.0


class RayJobTrigger(BaseTrigger):
    """
    Wait for a Ray job to finish, streaming its driver log into the task log.

    Fires one event: ``{"status", "submission_id", "log_offset", "timed_out", "error"}``.
    The job's logs are read from ``log_offset`` on, so a handoff from the worker (or back) never
    repeats a line.

    ``cleanup()`` does not stop the job (it runs on every triggerer restart); :meth:`on_kill`
    does, when a user marks the deferred task failed or clears it.

    :param submission_id: the Ray job's submission id.
    :param ray_conn_id: the ``ray`` connection.
    :param poll_interval: seconds between status polls.
    :param log_offset: characters of the driver log already shown in the task log.
    :param deadline: epoch seconds after which the job is stopped and the event says ``timed_out``.
    :param stream_logs: copy the driver log into the task log.
    """

    def __init__(
        self,
        *,
        submission_id: str,
        ray_conn_id: str = RayJobsHook.default_conn_name,
        poll_interval: float = 2.0,
        log_offset: int = 0,
        deadline: float | None = None,
        stream_logs: bool = True,
    ) -> None:
        super().__init__()
        self.submission_id = submission_id
        self.ray_conn_id = ray_conn_id
        self.poll_interval = float(poll_interval)
        self.log_offset = int(log_offset)
        self.deadline = float(deadline) if deadline is not None else None
        self.stream_logs = bool(stream_logs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "submission_id": self.submission_id,
                "ray_conn_id": self.ray_conn_id,
                "poll_interval": self.poll_interval,
                "log_offset": self.log_offset,
                "deadline": self.deadline,
                "stream_logs": self.stream_logs,
            },
        )

    def _event(self, status: str | None, **extra: Any) -> TriggerEvent:
        payload = {
            "status": status,
            "submission_id": self.submission_id,
            "log_offset": self.log_offset,
            "timed_out": False,
            "error": None,
        }
        payload.update(extra)
        return TriggerEvent(payload)

    async def _stream(self, client: AsyncRayJobsClient, final: bool = False) -> None:
        if not self.stream_logs:
            return
        logs = await client.get_job_logs(self.submission_id)
        lines, offset = (flush_log_tail if final else new_log_lines)(logs, self.log_offset)
        # Advance the offset line by line, so a cancellation mid-batch never re-emits a line.
        for line in lines:
            if line.strip() and not is_result_line(line):
                self.log.info("[ray] %s", line)
        self.log_offset = offset

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            config = await RayJobsHook.aget_config(self.ray_conn_id)
        except Exception as err:
            yield self._event(None, error=f"Cannot load connection {self.ray_conn_id!r}: {err}")
            return
        errors = 0
        async with RayJobsHook.async_client(config) as client:
            while True:
                try:
                    info = await client.get_job_info(self.submission_id)
                    if info is None:
                        yield self._event(None, error=f"Ray has no job {self.submission_id}")
                        return
                    status = info["status"]
                    if status in TERMINAL_STATES:
                        await self._stream(client, final=True)
                        yield self._event(status)
                        return
                    await self._stream(client)
                    errors = 0
                    if self.deadline is not None and time.time() >= self.deadline:
                        status = await self._stop_and_wait(client)
                        yield self._event(status, timed_out=True)
                        return
                except RayAuthError as err:
                    # A token that stops working will not heal by itself: fail now, clearly.
                    yield self._event(None, error=str(err))
                    return
                except (RayJobsError, TimeoutError, OSError) as err:
                    errors += 1
                    self.log.warning("Polling Ray job %s failed (%s): %s", self.submission_id, errors, err)
                    if errors >= MAX_CONSECUTIVE_ERRORS:
                        yield self._event(None, error=str(err))
                        return
                await asyncio.sleep(self.poll_interval)

    async def _stop_and_wait(self, client: AsyncRayJobsClient) -> str | None:
        self.log.warning("Ray job %s passed its deadline: stopping it", self.submission_id)
        await client.stop_job(self.submission_id)
        give_up = time.monotonic() + STOP_GRACE_SECONDS
        status: str | None = None
        while time.monotonic() < give_up:
            info = await client.get_job_info(self.submission_id)
            status = info["status"] if info else None
            if status in TERMINAL_STATES:
                break
            await asyncio.sleep(0.5)
        await self._stream(client, final=True)
        return status

    async def on_kill(self) -> None:
        """The user killed the deferred task: stop the Ray job (stop, never delete)."""
        config = await RayJobsHook.aget_config(self.ray_conn_id)
        async with RayJobsHook.async_client(config) as client:
            info = await client.get_job_info(self.submission_id)
            if info and info["status"] in ACTIVE_STATES:
                self.log.warning("Task killed while deferred: stopping Ray job %s", self.submission_id)
                await client.stop_job(self.submission_id)

"""Trigger that waits for a Ray job while its task is deferred."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from ray_operators._job_common import LogFollower, is_result_line, poll_delays
from ray_operators._log_stream import JobLogStream
from ray_operators.hooks.ray import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    AsyncRayJobsClient,
    RayAuthError,
    RayJobsError,
    RayJobsHook,
)
from ray_operators.triggers._resume import hold_from, hold_until

#: Consecutive failed polls (network blips, a restarting dashboard) tolerated before giving up.
MAX_CONSECUTIVE_ERRORS = 10
#: How long to wait for a stopped job to report STOPPED.
STOP_GRACE_SECONDS = 15.0


class RayJobTrigger(BaseTrigger):
    """
    Wait for a Ray job to finish, streaming its driver log into the task log.

    Fires one event: ``{"status", "submission_id", "log_offset", "timed_out", "error",
    "log_summary"}``. The job's logs are shown from ``log_offset`` on, so a handoff from the worker
    (or back) never repeats a line.

    The driver log is followed over Ray's log websocket (:class:`~ray_operators._log_stream.JobLogStream`),
    beside the status polls, so a job's whole log crosses the network once; where the socket cannot
    be opened, the whole log is downloaded at every poll instead. ``log_summary`` is
    ``{"result", "tail"}`` (the reported result, and the last log lines of a job that did not
    succeed) once the log was read to its end, so the worker needs no download of its own; None
    when logs are not streamed.

    ``cleanup()`` does not stop the job (it runs on every triggerer restart); :meth:`on_kill`
    does, when a user marks the deferred task failed or clears it.

    :param submission_id: the Ray job's submission id.
    :param ray_conn_id: the ``ray`` connection.
    :param poll_interval: seconds between status polls, once the first, quicker ones are past
        (:func:`~ray_operators._job_common.poll_delays`).
    :param log_offset: characters of the driver log already shown in the task log.
    :param deadline: epoch seconds after which the job is stopped and the event says ``timed_out``.
    :param stream_logs: copy the driver log into the task log.
    :param result_ends_log: the job's last output is its result line (see
        :class:`~ray_operators._log_stream.JobLogStream`).
    :param not_before: epoch seconds before which the event is held (see
        :mod:`ray_operators.triggers._resume`: Airflow 3.3 fails a task resumed too soon).
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
        result_ends_log: bool = False,
        not_before: float | None = None,
    ) -> None:
        super().__init__()
        self.result_ends_log = bool(result_ends_log)
        self.not_before = float(not_before) if not_before is not None else None
        self.submission_id = submission_id
        self.ray_conn_id = ray_conn_id
        self.poll_interval = float(poll_interval)
        self.log_offset = int(log_offset)
        self.deadline = float(deadline) if deadline is not None else None
        self.stream_logs = bool(stream_logs)
        self._stream: JobLogStream | None = None

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
                "result_ends_log": self.result_ends_log,
                "not_before": self.not_before,
            },
        )

    def _event(self, status: str | None, **extra: Any) -> TriggerEvent:
        payload = {
            "status": status,
            "submission_id": self.submission_id,
            "log_offset": self.log_offset,
            "timed_out": False,
            "error": None,
            "log_summary": None,
        }
        payload.update(extra)
        return TriggerEvent(payload)

    async def _show(self, lines: list[str], offset: int) -> None:
        # No await in here: a cancellation never falls between a line shown and the offset moved.
        for line in lines:
            if line.strip() and not is_result_line(line):
                self.log.info("[ray] %s", line)
        self.log_offset = offset

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # All the work (and the socket's closing) happens before the event is yielded.
        started = time.time()
        event = await self._wait()
        await hold_until(hold_from(self.not_before, started))
        yield event

    async def _wait(self) -> TriggerEvent:
        try:
            config = await RayJobsHook.aget_config(self.ray_conn_id)
        except Exception as err:
            return self._event(None, error=f"Cannot load connection {self.ray_conn_id!r}: {err}")
        follower = LogFollower(self.log_offset) if self.stream_logs else None
        self._stream = None
        async with RayJobsHook.async_client(config) as client:
            try:
                return await self._poll(client, follower)
            finally:
                # Also when cancelled (triggerer restart, task killed): close the socket.
                if self._stream is not None:
                    await self._stream.close()

    async def _poll(self, client: AsyncRayJobsClient, follower: LogFollower | None) -> TriggerEvent:
        errors = 0
        delays = poll_delays(self.poll_interval)
        while True:
            try:
                info = await client.get_job_info(self.submission_id)
                if info is None:
                    return self._event(None, error=f"Ray has no job {self.submission_id}")
                status = info["status"]
                if follower is not None and self._stream is None:
                    # Opened once the job is known: follows the log while the polls go on.
                    self._stream = JobLogStream(
                        client,
                        self.submission_id,
                        follower,
                        self._show,
                        log=self.log,
                        retry_interval=self.poll_interval,
                        result_ends_log=self.result_ends_log,
                    ).start()
                    await self._stream.first_attempt()
                if status in TERMINAL_STATES:
                    await self._read_to_end(client, follower, succeeded=status == "SUCCEEDED")
                    return self._event(status, log_summary=self._summary(follower, status))
                if self._stream is not None and self._stream.fallback:
                    await self._catch_up(client, follower)
                errors = 0
                if self.deadline is not None and time.time() >= self.deadline:
                    status = await self._stop_and_wait(client, follower)
                    return self._event(status, timed_out=True)
            except RayAuthError as err:
                # A token that stops working will not heal by itself: fail now, clearly.
                return self._event(None, error=str(err))
            except (RayJobsError, TimeoutError, OSError) as err:
                errors += 1
                self.log.warning("Polling Ray job %s failed (%s): %s", self.submission_id, errors, err)
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    return self._event(None, error=str(err))
            await asyncio.sleep(next(delays))

    async def _catch_up(self, client: AsyncRayJobsClient, follower: LogFollower | None) -> None:
        """The fallback: download the whole log, show what is new (O(n) per poll)."""
        if follower is not None:
            logs = await client.get_job_logs(self.submission_id)
            await self._show(follower.catch_up(logs), follower.offset)

    async def _read_to_end(
        self, client: AsyncRayJobsClient, follower: LogFollower | None, *, succeeded: bool = False
    ) -> None:
        """The job is terminal: show the rest of its log, from the socket or one last download."""
        if follower is None or follower.complete:
            return
        if self._stream is not None and await self._stream.wait_complete(succeeded=succeeded):
            return
        await self._catch_up(client, follower)
        await self._show(follower.finish(), follower.offset)

    @staticmethod
    def _summary(follower: LogFollower | None, status: str) -> dict[str, Any] | None:
        if follower is None or not follower.complete:
            return None
        return {"result": follower.result, "tail": None if status == "SUCCEEDED" else follower.tail}

    async def _stop_and_wait(self, client: AsyncRayJobsClient, follower: LogFollower | None) -> str | None:
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
        if status in TERMINAL_STATES:
            await self._read_to_end(client, follower)
        elif follower is not None:
            await self._catch_up(client, follower)
        return status

    async def on_kill(self) -> None:
        """The user killed the deferred task: stop the Ray job (stop, never delete)."""
        config = await RayJobsHook.aget_config(self.ray_conn_id)
        async with RayJobsHook.async_client(config) as client:
            info = await client.get_job_info(self.submission_id)
            if info and info["status"] in ACTIVE_STATES:
                self.log.warning("Task killed while deferred: stopping Ray job %s", self.submission_id)
                await client.stop_job(self.submission_id)

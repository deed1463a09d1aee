"""Following a Ray job's driver log in time linear in its size, for the trigger and the operator.

Ray's REST endpoint ``GET /api/jobs/{id}/logs`` has no offset: it returns the whole log every
time, so downloading it at every poll costs O(n²) over a job. Ray's dashboard also serves
``/api/jobs/{id}/logs/tail``, a websocket that sends the log from its beginning and follows it
until the job is terminal and the log read to its end. :class:`JobLogStream` reads that socket
into a :class:`~ray_operators._job_common.LogFollower` (which skips what was already shown before
a handoff, and keeps the result line and the failure tail), reconnects when the socket drops, and
falls back, with one warning, to the whole download at every poll when the socket cannot be
opened (an older Ray, a proxy that refuses websocket upgrades).

:class:`LogTailThread` runs the same stream on a private event loop in a daemon thread for the
synchronous operator: the worker's thread shows the lines, between its status polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ray_operators._job_common import LogFollower
from ray_operators.hooks.ray import (
    TERMINAL_STATES,
    AsyncRayJobsClient,
    RayAuthError,
    RayJobsError,
    RayLogTailUnavailableError,
)

if TYPE_CHECKING:
    from ray_operators.hooks.ray import RayConnectionConfig

#: For the benchmark only: skip the websocket and download the whole log at every poll, as the
#: provider did before (O(n²) over a job). Never set it in production.
FORCE_WHOLE_LOG_DOWNLOAD = False
#: Consecutive websocket sessions that brought no new output before giving up on the socket.
MAX_TAIL_RETRIES = 5
#: A socket that stayed open this long was healthy: its closing starts the retry count afresh.
HEALTHY_SESSION_SECONDS = 60.0
#: Once the job is terminal, the socket must deliver something at least this often until Ray
#: closes it; otherwise the rest of the log is downloaded instead.
TAIL_STALL_SECONDS = 30.0
#: A terminal job whose socket has delivered fewer characters than this is finished with one
#: whole download instead of waiting for Ray to close the socket. Ray's tail starts about two
#: seconds after the job and closes about three seconds after it ends (it sleeps a second at each
#: end of file, and twice once the job is terminal): a fixed cost every short job would pay. A
#: download of a log this small takes milliseconds, and it is made at most once, so the log still
#: crosses the network O(n) times its size in all.
SMALL_LOG_CHARS = 1 << 20

_CLOSE_OK = 1000
#: Longest stretch the reader runs on the event loop without giving it back.
_SLICE_SECONDS = 0.005

Sink = Callable[[list[str], int], Awaitable[None]]


class JobLogStream:
    """
    Follow one job's driver log over Ray's log websocket, in a task of the running event loop.

    ``sink(lines, offset)`` receives every batch of lines to show and the offset after them; it
    runs on the loop, so it must not block. When the stream ends normally the log is complete
    (``follower.complete``); when it ends with :attr:`fallback` set, the owner downloads the whole
    log at every poll instead (:meth:`LogFollower.catch_up`).

    :param client: an open :class:`AsyncRayJobsClient`.
    :param submission_id: the job.
    :param follower: where the text goes (its ``offset`` says what was shown already).
    :param sink: ``async (lines, offset) -> None``.
    :param log: where the one fallback warning goes.
    :param retry_interval: seconds between reconnections.
    :param result_ends_log: the job's last output is its result line (a lakehouse stage's runner
        reports its result, then leaves at once): once a job that *succeeded* has sent it, the log
        is complete, without waiting for Ray to close the socket (Ray sleeps a second at the end
        of the file, twice, first).
    """

    def __init__(
        self,
        client: AsyncRayJobsClient,
        submission_id: str,
        follower: LogFollower,
        sink: Sink,
        *,
        log: logging.Logger | Any,
        retry_interval: float = 2.0,
        result_ends_log: bool = False,
    ) -> None:
        self.client = client
        self.result_ends_log = result_ends_log
        self.submission_id = submission_id
        self.follower = follower
        self.sink = sink
        self.log = log
        self.retry_interval = retry_interval
        #: Why the socket was given up for whole downloads, or None.
        self.fallback_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()

    @property
    def fallback(self) -> bool:
        return self.fallback_reason is not None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task that reads the socket (None before :meth:`start`, after :meth:`close`)."""
        return self._task

    def start(self) -> JobLogStream:
        if FORCE_WHOLE_LOG_DOWNLOAD:
            self.fallback_reason = "forced"
        else:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ray-log-tail")
        return self

    async def first_attempt(self) -> None:
        """Wait until the first socket is open, or known not to open (then :attr:`fallback` may be set).

        The handshake is quick (Ray answers it before the job's driver even starts), and after it
        the owner knows whether to download the whole log at its next poll.
        """
        if self._task is not None:
            waiter = asyncio.ensure_future(self._tried.wait())
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()

    async def wait_complete(self, stall_seconds: float | None = None, *, succeeded: bool = False) -> bool:
        """The job is terminal: wait until Ray has sent the rest of the log and closed the socket.

        Returns whether the log is complete. False means the owner must download it: the stream
        fell back, made no progress for ``stall_seconds``, or had delivered less than
        :data:`SMALL_LOG_CHARS` (it is then stopped). With
        ``succeeded`` and ``result_ends_log``, the log is complete once its result line was read.
        """
        stall_seconds = TAIL_STALL_SECONDS if stall_seconds is None else stall_seconds
        task = self._task
        last, since = self.follower.read, time.monotonic()
        ends_early = succeeded and self.result_ends_log
        while task is not None and not task.done():
            if ends_early and self.follower.ends_with_result:
                await self.close()
                await self.sink(self.follower.finish(), self.follower.offset)
                break
            if self.follower.read < SMALL_LOG_CHARS:
                await self.close()  # the owner downloads the log once (see SMALL_LOG_CHARS)
                break
            await asyncio.wait({task}, timeout=0.05 if ends_early else min(1.0, stall_seconds))
            if self.follower.read != last:
                last, since = self.follower.read, time.monotonic()
            elif time.monotonic() - since >= stall_seconds and not task.done():
                self.log.warning(
                    "The log websocket of Ray job %s stalled: downloading the rest of the log",
                    self.submission_id,
                )
                await self.close()
        return self.follower.complete

    async def close(self) -> None:
        """Stop following (closes the socket). Safe to call more than once."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except RayLogTailUnavailableError as err:
            self._fall_back(str(err))
        except Exception as err:  # the log is not worth failing the job for: download it instead
            self._fall_back(f"{type(err).__name__}: {err}")

    async def _follow(self) -> None:
        failures = 0
        while True:
            read_before, opened = self.follower.read, time.monotonic()
            # Every socket starts at the log's beginning: skip what earlier ones delivered.
            skip = self.follower.read
            closed_normally = False
            ran_since = time.perf_counter()
            try:
                async with self.client.tail_job_logs(self.submission_id) as ws:
                    self._tried.set()
                    async for message in ws:
                        if isinstance(message.data, str):
                            text = message.data
                        elif isinstance(message.data, bytes):
                            text = message.data.decode("utf-8", "replace")
                        else:  # an error (a missed heartbeat): the socket is done
                            break
                        if skip:
                            if len(text) <= skip:
                                skip -= len(text)
                                continue
                            text, skip = text[skip:], 0
                        lines = self.follower.feed(text)
                        if lines:
                            await self.sink(lines, self.follower.offset)
                        # Messages already buffered come back without a suspension: let the
                        # rest of the loop (status polls, other triggers) run every few ms.
                        if time.perf_counter() - ran_since > _SLICE_SECONDS:
                            await asyncio.sleep(0)
                            ran_since = time.perf_counter()
                    closed_normally = ws.close_code == _CLOSE_OK and skip == 0
            except RayAuthError:
                raise
            except RayLogTailUnavailableError:
                raise
            except RayJobsError as err:
                self.log.info("Log websocket of Ray job %s failed: %s", self.submission_id, err)
            self._tried.set()
            if closed_normally and await self._job_is_over():
                # Ray closes the socket once the job is terminal and the log read to its end.
                lines = self.follower.finish()
                await self.sink(lines, self.follower.offset)
                return
            if self.follower.read > read_before or time.monotonic() - opened >= HEALTHY_SESSION_SECONDS:
                failures = 0
            else:
                failures += 1
            if failures >= MAX_TAIL_RETRIES:
                raise RayJobsError(f"the log websocket closed {failures} times in a row without new output")
            await asyncio.sleep(self.retry_interval)

    async def _job_is_over(self) -> bool:
        try:
            info = await self.client.get_job_info(self.submission_id)
        except RayJobsError:
            return False
        return info is None or info["status"] in TERMINAL_STATES

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason = self.client.config.scrub(reason)
        self.log.warning(
            "Cannot follow the log of Ray job %s over Ray's log websocket (%s): downloading the whole "
            "log at every poll instead",
            self.submission_id,
            reason,
        )


class LogTailThread:
    """
    :class:`JobLogStream` on a private event loop in a daemon thread, for the synchronous operator.

    The thread only reads: batches of lines come back through a bounded queue (which slows the
    socket down when the worker shows lines slower than Ray sends them), and the calling thread
    shows them with :meth:`show_for` and :meth:`finish`, so the task log is written by one thread.

    :param config: the ``ray`` connection.
    :param submission_id: the job.
    :param follower: where the text goes; the caller reads it only once the thread has ended.
    :param log: where the fallback warning goes.
    :param retry_interval: seconds between reconnections.
    """

    def __init__(
        self,
        config: RayConnectionConfig,
        submission_id: str,
        follower: LogFollower,
        *,
        log: logging.Logger | Any,
        retry_interval: float = 2.0,
        result_ends_log: bool = False,
    ) -> None:
        self.config = config
        self.result_ends_log = result_ends_log
        self._succeeded = False
        self.submission_id = submission_id
        self.follower = follower
        self.log = log
        self.retry_interval = retry_interval
        self.fallback = False
        self._queue: queue.Queue[tuple[list[str], int]] = queue.Queue(maxsize=256)
        self._thread = threading.Thread(target=self._main, name=f"ray-log-tail-{submission_id}", daemon=True)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._terminal: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None

    def start(self) -> LogTailThread:
        if FORCE_WHOLE_LOG_DOWNLOAD:
            self.fallback = True
            return self
        self._thread.start()
        self._started.wait()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def show_for(self, seconds: float, show: Callable[[list[str], int], None]) -> None:
        """Show the lines that arrive during ``seconds`` (or until the thread ends)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            if not self._show_next(show, timeout=min(left, 0.5)) and not self.running:
                self._show_queued(show)
                time.sleep(max(until - time.monotonic(), 0))
                return
        self._show_queued(show)

    def finish(self, show: Callable[[list[str], int], None], *, succeeded: bool = False) -> bool:
        """The job is terminal: show the rest of the log as Ray sends it. Whether it is complete.
        ``succeeded``: the job succeeded (see ``result_ends_log``)."""
        self._succeeded = succeeded
        if self._loop is not None and self._terminal is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._terminal.set)
        while self.running:
            self._show_next(show, timeout=0.5)
        if self._thread.ident:
            self._thread.join()
        self._show_queued(show)
        return self.follower.complete

    def stop(self) -> None:
        """Stop following (closes the socket) and wait for the thread. Queued lines are dropped."""
        if self._loop is not None and self._main_task is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._main_task.cancel)
        while self.running:
            # Unblock a reader waiting for room in the queue.
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)
        if self._thread.ident:
            self._thread.join()

    def _show_next(self, show: Callable[[list[str], int], None], timeout: float) -> bool:
        try:
            lines, offset = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        show(lines, offset)
        self._show_queued(show)
        return True

    def _show_queued(self, show: Callable[[list[str], int], None]) -> None:
        while True:
            try:
                lines, offset = self._queue.get_nowait()
            except queue.Empty:
                return
            show(lines, offset)

    def _main(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException:  # a reader thread must never die loudly
            self.fallback = self.fallback or not self.follower.complete
        finally:
            self._started.set()

    async def _follow(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._terminal = asyncio.Event()
        self._main_task = asyncio.current_task()
        async with AsyncRayJobsClient(self.config) as client:
            stream = JobLogStream(
                client,
                self.submission_id,
                self.follower,
                self._put,
                log=self.log,
                retry_interval=self.retry_interval,
                result_ends_log=self.result_ends_log,
            ).start()
            try:
                await stream.first_attempt()
                self.fallback = stream.fallback
                self._started.set()
                terminal = asyncio.ensure_future(self._terminal.wait())
                reading = {stream.task} if stream.task is not None else set()
                await asyncio.wait({*reading, terminal}, return_when=asyncio.FIRST_COMPLETED)
                terminal.cancel()
                # Terminal (or the socket ended by itself): the rest, with the stall guard.
                await stream.wait_complete(succeeded=self._succeeded)
            finally:
                await stream.close()
                self.fallback = not self.follower.complete

    async def _put(self, lines: list[str], offset: int) -> None:
        while True:
            try:
                self._queue.put_nowait((lines, offset))
                return
            except queue.Full:
                await asyncio.sleep(0.005)

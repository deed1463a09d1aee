"""Pieces shared by RayJobOperator (worker side) and RayJobTrigger (triggerer side).

Pure functions over JSON-safe values: no clients, no Airflow context, no heavy imports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

from ray_operators.contract.result import RESULT_MARKER, parse_result

#: How many lines of the driver log a failed task shows.
FAILURE_TAIL_LINES = 50
#: The wait between status polls in a job's first :data:`FAST_POLL_SECONDS`; after that each wait
#: is 1.5x longer, up to the operator's ``poll_interval``. A job of a few seconds (a stage on a
#: small input) is seen done a quarter second after it ends, and a long one is polled at the
#: configured interval (see :func:`poll_delays`).
FIRST_POLL_SECONDS = 0.25
FAST_POLL_SECONDS = 5.0

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def submission_base(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """The deterministic prefix of a task instance's Ray submission ids.

    Readable (dag and task ids, shortened) and unique (a hash of the full identity), made of
    characters that are safe in URLs and Ray's job tables. The try number is left out on purpose:
    every try of the same task instance must find the same jobs.
    """
    identity = f"{dag_id}\x1f{task_id}\x1f{run_id}\x1f{-1 if map_index is None else map_index}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    readable = f"{_UNSAFE.sub('-', dag_id)[:40]}-{_UNSAFE.sub('-', task_id)[:40]}".strip("-")
    return f"af-{readable}-{digest}"


def attempt_id(base: str, attempt: int) -> str:
    """Submission id of the ``attempt``-th Ray job (1-based) of a task instance."""
    return f"{base}-a{attempt}"


def new_log_lines(logs: str, offset: int) -> tuple[list[str], int]:
    """Complete lines of ``logs`` after character ``offset``, and the offset after them.

    A trailing partial line is held back until its newline arrives, so a line is never emitted in
    two pieces or twice, whatever the polling rhythm.
    """
    if offset > len(logs):
        # The log shrank (a different job under the same id): never replay, start from its end.
        return [], len(logs)
    end = logs.rfind("\n", offset)
    if end == -1:
        return [], offset
    chunk = logs[offset:end]
    return chunk.split("\n"), end + 1


def flush_log_tail(logs: str, offset: int) -> tuple[list[str], int]:
    """Like :func:`new_log_lines`, but also returns a final line without a newline (job ended)."""
    lines, offset = new_log_lines(logs, offset)
    if offset < len(logs):
        lines.append(logs[offset:])
        offset = len(logs)
    return lines, offset


def is_result_line(line: str) -> bool:
    """Result-channel lines are data for XCom, not log output worth repeating."""
    return line.lstrip().startswith(RESULT_MARKER)


def log_tail(logs: str, lines: int = FAILURE_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log."""
    return "\n".join(logs.rstrip("\n").splitlines()[-lines:])


def failure_message(info: dict[str, Any], logs: str, *, tail: str | None = None) -> str:
    """What a failed task shows: Ray's message, the driver exit code and the log tail.

    ``tail`` is the tail already taken (:attr:`LogFollower.tail`); otherwise it is cut from ``logs``.
    """
    status = info.get("status")
    # Ray appends its own (20,000-character) copy of the log to the message: keep its first line.
    message = (info.get("message") or "").strip().splitlines()
    parts = [
        f"Ray job {info.get('submission_id')} ended {status}",
        f"message: {message[0].rstrip(':') if message else '-'}",
        f"driver exit code: {info.get('driver_exit_code')}",
        f"last {FAILURE_TAIL_LINES} log lines:",
        (log_tail(logs) if tail is None else tail) or "(no log output)",
    ]
    return "\n".join(parts)


def build_result(
    info: dict[str, Any], logs: str, dashboard_url: str, *, result: Any = None, parsed: bool = False
) -> dict[str, Any]:
    """The operator's XCom value; ``result`` replaces parsing ``logs`` when ``parsed`` is true."""
    return {
        "submission_id": info.get("submission_id"),
        "status": info.get("status"),
        "dashboard_url": dashboard_url,
        "start_time": info.get("start_time"),
        "end_time": info.get("end_time"),
        "result": result if parsed else parse_result(logs),
    }


def _line_result(line: str) -> tuple[bool, Any]:
    """:func:`parse_result` on one line: ``(True, value)`` when it carries a valid result."""
    position = line.rfind(RESULT_MARKER)
    while position != -1:
        if line[:position].strip() == "":
            try:
                return True, json.loads(line[position + len(RESULT_MARKER) :])
            except json.JSONDecodeError:
                pass
        position = line.rfind(RESULT_MARKER, 0, position)
    return False, None


def poll_delays(interval: float) -> Iterator[float]:
    """The waits between status polls: :data:`FIRST_POLL_SECONDS` for the first
    :data:`FAST_POLL_SECONDS`, then growing 1.5x per poll up to ``interval`` (never above it, and
    ``interval`` itself when that is shorter)."""
    delay = min(FIRST_POLL_SECONDS, interval)
    waited = 0.0
    while True:
        yield delay
        waited += delay
        if waited >= FAST_POLL_SECONDS:
            delay = min(delay * 1.5, interval)


class LogFollower:
    """Follows a driver log read from its beginning, piece by piece, in time linear in its size.

    :meth:`feed` takes the log's text in pieces of any size (websocket messages, or the new part of
    a whole download) and returns the complete lines past ``offset``, the characters already shown
    (by this process, or by another one before a handoff); a partial line is held back until its
    newline arrives, exactly as :func:`new_log_lines` does. Along the way it keeps what the end of a
    job needs, so the whole log is never downloaded again: the last valid result-channel line
    (:func:`parse_result`) and the last ``tail_lines`` lines (:func:`log_tail`), both counting the
    lines before ``offset`` too.

    :param offset: characters of the log already shown; lines up to there are not returned.
    :param tail_lines: how many lines :attr:`tail` keeps.
    """

    def __init__(self, offset: int = 0, tail_lines: int = FAILURE_TAIL_LINES) -> None:
        self.offset = int(offset)
        #: Characters of the log received so far.
        self.read = 0
        #: Whether the log was read to its end (the job is terminal and :meth:`finish` ran).
        self.complete = False
        self.found_result = False
        self.result: Any = None
        #: Whether the last non-empty line read so far is a valid result-channel line.
        self._last_is_result = False
        self._pending: list[str] = []
        self._line_start = 0
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._blank_run = 0

    def feed(self, text: str) -> list[str]:
        """The next piece of the log; returns its complete lines past :attr:`offset`."""
        if not text:
            return []
        self.read += len(text)
        if "\n" not in text:
            self._pending.append(text)
            return []
        pieces = text.split("\n")
        if self._pending:
            self._pending.append(pieces[0])
            pieces[0] = "".join(self._pending)
        rest = pieces.pop()
        self._pending = [rest] if rest else []
        return self._lines(pieces)

    def catch_up(self, logs: str) -> list[str]:
        """Feed the part of a whole-log download not read yet (the fallback without a websocket)."""
        return self.feed(logs[self.read :]) if len(logs) > self.read else []

    def finish(self) -> list[str]:
        """The log is complete (the job ended): also return a last line that has no newline."""
        lines: list[str] = []
        if self._pending:
            line = "".join(self._pending)
            self._pending = []
            self._remember(line)
            if self.read > self.offset:
                lines.append(line[max(self.offset - self._line_start, 0) :])
            self._line_start = self.read
        # As flush_log_tail: everything read is shown now (a log shorter than the offset included).
        self.offset = self.read
        self.complete = True
        return lines

    @property
    def ends_with_result(self) -> bool:
        """Whether the text read so far ends with a result-channel line (and its newline)."""
        return self._last_is_result and not self._pending

    @property
    def tail(self) -> str:
        """The same text as :func:`log_tail` of the whole log read so far."""
        lines = list(self._tail)
        if self._pending:
            lines += [""] * min(self._blank_run, self._tail.maxlen or 0) + ["".join(self._pending)]
        return log_tail("\n".join(lines))

    def _lines(self, complete: list[str]) -> list[str]:
        shown: list[str] = []
        position, offset = self._line_start, self.offset
        for line in complete:
            end = position + len(line)  # where its newline is
            self._remember(line)
            if end >= offset:
                shown.append(line[offset - position :] if offset > position else line)
                offset = end + 1
            position = end + 1
        self._line_start, self.offset = position, offset
        return shown

    def _remember(self, line: str) -> None:
        if not line:
            # Trailing empty lines do not count in a tail (log_tail strips them): hold them back.
            self._blank_run += 1
            return
        if self._blank_run:
            self._tail.extend([""] * min(self._blank_run, self._tail.maxlen or 0))
            self._blank_run = 0
        self._tail.append(line)
        self._last_is_result = False
        if RESULT_MARKER in line and is_result_line(line):
            found, value = _line_result(line)
            if found:
                self.found_result, self.result = True, value
                self._last_is_result = True

"""Pieces shared by RayJobOperator (worker side) and RayJobTrigger (triggerer side).

Pure functions over JSON-safe values: no clients, no Airflow context, no heavy imports.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ray_operators.contract.result import RESULT_MARKER, parse_result

#: How many lines of the driver log a failed task shows.
FAILURE_TAIL_LINES = 50

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


def failure_message(info: dict[str, Any], logs: str) -> str:
    """What a failed task shows: Ray's message, the driver exit code and the log tail."""
    status = info.get("status")
    # Ray appends its own (20,000-character) copy of the log to the message: keep its first line.
    message = (info.get("message") or "").strip().splitlines()
    parts = [
        f"Ray job {info.get('submission_id')} ended {status}",
        f"message: {message[0].rstrip(':') if message else '-'}",
        f"driver exit code: {info.get('driver_exit_code')}",
        f"last {FAILURE_TAIL_LINES} log lines:",
        log_tail(logs) or "(no log output)",
    ]
    return "\n".join(parts)


def build_result(info: dict[str, Any], logs: str, dashboard_url: str) -> dict[str, Any]:
    """The operator's XCom value."""
    return {
        "submission_id": info.get("submission_id"),
        "status": info.get("status"),
        "dashboard_url": dashboard_url,
        "start_time": info.get("start_time"),
        "end_time": info.get("end_time"),
        "result": parse_result(logs),
    }

"""The result channel between a Ray job and the Airflow task that submitted it.

Ray's Jobs API has no way for a job to return a value, so a job prints one marker line to its
driver log and the operator reads the last such line back from the job's logs. The marker keeps
the channel visible in the Ray dashboard and needs nothing beyond the Jobs API on either side.

This module is shared by both sides and imports only the standard library.
"""

from __future__ import annotations

import json
import sys
from typing import Any

RESULT_MARKER = "::ray-airflow-result::"
#: Environment variable through which RayJobOperator tells a job its own submission id.
SUBMISSION_ID_ENV = "RAY_AIRFLOW_SUBMISSION_ID"
#: Results travel through XCom: keep them small (ids and counts, not data).
MAX_RESULT_BYTES = 64 * 1024


class ResultTooLargeError(ValueError):
    """The job tried to report a result larger than :data:`MAX_RESULT_BYTES`."""


def report_result(result: Any) -> None:
    """Report a small JSON-serialisable result to the Airflow task that submitted this job.

    Call it once, at the end of the job's driver script. If it is called more than once the last
    call wins.

    :param result: any JSON-serialisable value, at most 64 KiB once encoded.
    """
    encoded = json.dumps(result, sort_keys=True, separators=(",", ":"), default=str)
    if len(encoded.encode()) > MAX_RESULT_BYTES:
        raise ResultTooLargeError(
            f"job result is {len(encoded.encode())} bytes; the limit is {MAX_RESULT_BYTES} "
            "(report ids and counts, and write data to a table)"
        )
    # One line, flushed, so it cannot interleave with other output.
    sys.stdout.write(f"\n{RESULT_MARKER}{encoded}\n")
    sys.stdout.flush()


def parse_result(logs: str) -> Any | None:
    """Return the last result a job reported in ``logs``, or ``None`` when it reported none."""
    position = logs.rfind(RESULT_MARKER)
    while position != -1:
        line_start = logs.rfind("\n", 0, position) + 1
        line_end = logs.find("\n", position)
        payload = logs[position + len(RESULT_MARKER) : line_end if line_end != -1 else len(logs)]
        # Only a marker at the start of a line counts: a log line that merely mentions it does not.
        if logs[line_start:position].strip() == "":
            try:
                return json.loads(payload)
            except json.JSONDecodeError:
                pass
        position = logs.rfind(RESULT_MARKER, 0, position)
    return None

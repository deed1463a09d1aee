"""Pure helpers: submission ids, log offsets, the result channel, failure messages."""

from __future__ import annotations

import random
import re

import pytest

from ray_operators._job_common import (
    attempt_id,
    build_result,
    failure_message,
    flush_log_tail,
    new_log_lines,
    submission_base,
)
from ray_operators.contract.result import RESULT_MARKER, ResultTooLargeError, parse_result, report_result


def test_submission_base_is_deterministic_and_unique_per_task_instance():
    base = submission_base("dag", "task", "manual__2026-01-01", -1)
    assert base == submission_base("dag", "task", "manual__2026-01-01", -1)
    others = {
        submission_base("dag", "task", "manual__2026-01-02", -1),
        submission_base("dag", "task", "manual__2026-01-01", 0),
        submission_base("dag", "task", "manual__2026-01-01", 1),
        submission_base("dag", "other", "manual__2026-01-01", -1),
        submission_base("dag2", "task", "manual__2026-01-01", -1),
    }
    assert base not in others and len(others) == 5


def test_submission_ids_are_url_safe_and_readable():
    base = submission_base(
        "my dag/with:odd chars" * 5, "group.task", "scheduled__2026-01-01T00:00:00+00:00", 3
    )
    sid = attempt_id(base, 2)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", sid), sid
    assert sid.endswith("-a2")
    assert "group-task" in sid
    assert len(sid) < 120


def test_new_log_lines_never_splits_or_repeats_a_line_whatever_the_polling_rhythm():
    full = "".join(f"line {i}\n" for i in range(200)) + "partial"
    rng = random.Random(7)
    for _ in range(50):
        offset, seen = 0, []
        cut = 0
        while cut < len(full):
            cut = min(len(full), cut + rng.randint(0, 40))
            lines, offset = new_log_lines(full[:cut], offset)
            seen.extend(lines)
        assert seen == [f"line {i}" for i in range(200)]
        # The unterminated last line shows once the job has ended.
        rest, offset = flush_log_tail(full, offset)
        assert rest == ["partial"] and offset == len(full)
        assert flush_log_tail(full, offset) == ([], len(full))


def test_new_log_lines_resumes_from_an_offset_handed_over_by_another_process():
    logs = "a\nb\nc\n"
    first, offset = new_log_lines(logs[:4], 0)
    second, _ = new_log_lines(logs, offset)
    assert first + second == ["a", "b", "c"]
    # A log shorter than the offset (not ours) is never replayed.
    assert new_log_lines("x\n", 100) == ([], 2)


def test_result_channel_round_trip(capsys):
    report_result({"table": "db.t", "snapshot_id": 123})
    report_result({"table": "db.t", "snapshot_id": 456})
    logs = "noise\n" + capsys.readouterr().out + "more noise\n"
    assert parse_result(logs) == {"table": "db.t", "snapshot_id": 456}


def test_result_channel_ignores_mentions_and_missing_results():
    assert parse_result("no result here\n") is None
    assert parse_result(f"log line mentioning {RESULT_MARKER}{{'x': 1}}\n") is None
    assert parse_result(f"{RESULT_MARKER}not json\n") is None
    assert parse_result(f"{RESULT_MARKER}[1, 2]") == [1, 2]


def test_result_channel_refuses_large_results():
    with pytest.raises(ResultTooLargeError, match="limit"):
        report_result({"data": "x" * 70_000})


def test_failure_message_has_ray_message_exit_code_and_tail_only():
    logs = "".join(f"line {i}\n" for i in range(80))
    info = {
        "submission_id": "s-a1",
        "status": "FAILED",
        "message": "Job entrypoint command failed with exit code 2, last available logs:\nline 79",
        "driver_exit_code": 2,
    }
    text = failure_message(info, logs)
    assert "s-a1 ended FAILED" in text
    assert "message: Job entrypoint command failed with exit code 2, last available logs" in text
    assert "driver exit code: 2" in text
    assert "line 79" in text and "line 30" in text
    assert "line 29\n" not in text


def test_build_result_shape():
    info = {"submission_id": "s", "status": "SUCCEEDED", "start_time": 1, "end_time": 2}
    result = build_result(info, f'{RESULT_MARKER}{{"rows": 3}}\n', "http://ray/#/jobs/s")
    assert result == {
        "submission_id": "s",
        "status": "SUCCEEDED",
        "dashboard_url": "http://ray/#/jobs/s",
        "start_time": 1,
        "end_time": 2,
        "result": {"rows": 3},
    }

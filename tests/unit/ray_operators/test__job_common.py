"""Pure helpers: submission ids, log offsets, the result channel, failure messages."""

from __future__ import annotations

import random
import re

import pytest

from ray_operators._job_common import (
    LogFollower,
    attempt_id,
    build_result,
    failure_message,
    flush_log_tail,
    log_tail,
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


# ---- LogFollower: the streamed log gives what the whole download gave ------------------------


def _random_log(rng: random.Random) -> str:
    pieces = [
        "line",
        "",
        " ",
        "\r",
        "é…",
        "x" * 30,
        f'{RESULT_MARKER}{{"n": 1}}',
        f"  {RESULT_MARKER}null",
        f"{RESULT_MARKER}not json",
        f"say {RESULT_MARKER}[1]",
        f"{RESULT_MARKER}[2]{RESULT_MARKER}[3]",
    ]
    lines = [rng.choice(pieces) + (str(i) if rng.random() < 0.5 else "") for i in range(rng.randint(0, 140))]
    text = "\n".join(lines)
    return text + rng.choice(["", "\n", "\n\n", "\n \n", "\n\n\n"])


def _feed_in_pieces(follower: LogFollower, text: str, rng: random.Random) -> list[str]:
    shown, at = [], 0
    while at < len(text):
        step = rng.choice([1, 2, 7, 40, 500])
        shown += follower.feed(text[at : at + step])
        at += step
    return shown + follower.finish()


def test_log_follower_matches_the_whole_download_helpers_on_random_logs():
    rng = random.Random(15)
    for _ in range(400):
        logs = _random_log(rng)
        offset = rng.choice([0, 0, rng.randint(0, len(logs)), len(logs), len(logs) + 5])
        expected, expected_offset = flush_log_tail(logs, offset)
        follower = LogFollower(offset)
        assert _feed_in_pieces(follower, logs, rng) == expected, (logs, offset)
        assert follower.offset == expected_offset
        assert follower.tail == log_tail(logs), logs
        assert follower.result == parse_result(logs), logs
        assert follower.complete and follower.read == len(logs)


def test_log_follower_never_splits_or_repeats_a_line_across_a_handoff():
    logs = "".join(f"line {i}\n" for i in range(300)) + f'{RESULT_MARKER}{{"lines": 300}}\n'
    first = LogFollower(0)
    shown = first.feed(logs[:1234])  # the worker saw part of the log, cut mid-line, then deferred
    second = LogFollower(first.offset)  # the trigger starts from the handed-over offset
    shown += _feed_in_pieces(second, logs, random.Random(1))
    assert shown == [f"line {i}" for i in range(300)] + [f'{RESULT_MARKER}{{"lines": 300}}']
    # Lines before the offset were not shown again, but still count for the result and the tail.
    assert second.result == {"lines": 300}
    assert second.tail == log_tail(logs)


def test_log_follower_catch_up_feeds_only_the_new_part_of_a_whole_download():
    follower = LogFollower()
    assert follower.catch_up("a\nb") == ["a"]
    assert follower.catch_up("a\nb") == []
    assert follower.catch_up("a\nbc\nd\n") == ["bc", "d"]
    assert follower.finish() == [] and follower.offset == len("a\nbc\nd\n")


def test_log_follower_tail_is_bounded():
    follower = LogFollower(tail_lines=3)
    for i in range(10_000):
        follower.feed(f"line {i}\n")
    assert follower.tail == "line 9997\nline 9998\nline 9999"
    assert len(follower._tail) == 3


def test_failure_message_takes_a_tail_already_cut():
    info = {"submission_id": "s-a1", "status": "FAILED", "message": "boom", "driver_exit_code": 1}
    assert failure_message(info, "", tail="last words").endswith("last 50 log lines:\nlast words")
    assert failure_message(info, "", tail="").endswith("(no log output)")


def test_polls_are_quick_for_the_first_seconds_then_back_off_to_the_interval():
    import itertools

    from ray_operators._job_common import FAST_POLL_SECONDS, FIRST_POLL_SECONDS, poll_delays

    delays = list(itertools.islice(poll_delays(2.0), 40))
    fast = int(FAST_POLL_SECONDS / FIRST_POLL_SECONDS)
    assert delays[:fast] == [FIRST_POLL_SECONDS] * fast
    growing = delays[fast:]
    assert all(b >= a for a, b in itertools.pairwise(growing)) and growing[0] > FIRST_POLL_SECONDS
    assert max(delays) == 2.0 and delays[-1] == 2.0
    # An interval shorter than the first poll is used as it is, and never exceeded.
    assert set(itertools.islice(poll_delays(0.1), 100)) == {0.1}

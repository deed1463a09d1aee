"""The Spark-log line parser (ray_operators.curation.spark_logs): a reason for every bad line."""

from __future__ import annotations

import json

import pytest

from ray_operators.curation.spark_logs import parse_line


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"timestamp": "2026-01-01T00:00:00Z", "log_level": "INFO"', "bad_json"),
        ('{"timestamp": "2026-01-01T00:00:00Z", "log_level": "INFO"}', "missing_field: message"),
        ('{"timestamp": "noon", "log_level": "INFO", "message": "m"}', "bad_timestamp"),
        ("[1, 2]", "bad_json: not an object"),
    ],
)
def test_parse_line_gives_a_reason_for_every_bad_line(line, reason):
    row, why = parse_line(line)
    assert row is None and why.startswith(reason)


def test_parse_line_reads_nested_and_dotted_kubernetes_fields():
    nested = {
        "timestamp": "2026-01-01T00:00:00Z",
        "log_level": "WARN",
        "message": "m",
        "kubernetes": {"pod_name": "p", "labels": {"spark-role": "driver"}},
    }
    row, _ = parse_line(json.dumps(nested))
    assert (row["pod_name"], row["spark_role"], row["namespace_name"]) == ("p", "driver", None)
    flat = {
        "timestamp": "2026-01-01T00:00:00",
        "log_level": "INFO",
        "message": "m",
        "kubernetes.pod_name": "q",
    }
    row, _ = parse_line(json.dumps(flat))
    assert row["pod_name"] == "q" and row["timestamp"].tzinfo is not None

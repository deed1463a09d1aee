"""The stage contract and the curate parser, without a cluster."""

from __future__ import annotations

import json

import pytest

from ray_operators.contract.spec import StageError, StageSpec, TableInput
from ray_operators.curation.spark_logs import parse_line
from ray_operators.devstack.demo_data import MALFORMED, generate_spark_logs


def _spec(**overrides):
    base = {
        "stage": "curate",
        "catalog_name": "lake",
        "catalog_properties": {"type": "sql", "uri": "sqlite:////tmp/c.db"},
        "output_table": "db.out",
        "run": {"run_key": "dag/task/run=1", "dag_id": "dag"},
    }
    return StageSpec.from_json({**base, **overrides})


def test_spec_round_trips_through_the_entrypoint_encoding():
    spec = _spec(inputs=[{"table": "db.in", "snapshot_id": 5}], params={"x": 1})
    again = StageSpec.decode(spec.encode())
    assert again.to_json() == spec.to_json()
    assert again.inputs == [TableInput(table="db.in", snapshot_id=5)]
    assert again.catalog_kwargs()["name"] == "lake"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "merge"}, "output mode must be append, overwrite or upsert"),
        ({"mode": "upsert"}, "upsert needs keys"),
        ({"catalog_properties": {"s3.secret-access-key": "x"}}, "looks like a secret"),
        ({"catalog_properties": {"credential": "id:secret"}}, "looks like a secret"),
    ],
)
def test_bad_specs_fail_clearly(overrides, message):
    with pytest.raises(StageError, match=message):
        _spec(**overrides)


def test_lineage_properties_carry_identity_and_pinned_inputs(monkeypatch):
    monkeypatch.setenv("RAY_AIRFLOW_SUBMISSION_ID", "af-x-a2")
    spec = _spec(
        inputs=[
            {"table": "db.a", "snapshot_id": 7},
            {"table": "db.b", "from_snapshot_id": 1, "to_snapshot_id": 9},
        ]
    )
    props = spec.lineage_properties()
    assert props["lakehouse.run-key"] == "dag/task/run=1"
    assert props["lakehouse.ray-submission-id"] == "af-x-a2"
    assert props["lakehouse.input.db.a"] == "7"
    assert props["lakehouse.input.db.b"] == "1..9"


def test_run_key_is_required():
    with pytest.raises(StageError, match="run_key"):
        _ = _spec(run={}).run_key


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


def test_generator_counts_match_what_the_parser_finds(tmp_path):
    counts = generate_spark_logs(
        tmp_path, apps=2, executors=1, lines_per_file=150, malformed_fraction=0.1, seed=9
    )
    found = {"good": 0, **dict.fromkeys(MALFORMED, 0)}
    for path in tmp_path.glob("spark-*/*.log"):
        for line in path.read_text().splitlines():
            row, reason = parse_line(line)
            found["good" if row else reason.split(":")[0]] += 1
    assert found == {"good": counts["good"], **counts["bad"]}
    assert counts["bad_total"] > 0


def test_gpu_setting_degrades_to_cpu_when_the_cluster_has_none(monkeypatch):
    import ray

    from ray_operators.jobs.train import resolve_use_gpu

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert resolve_use_gpu("auto") is False
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    assert resolve_use_gpu("auto") is True
    assert resolve_use_gpu(False) is False and resolve_use_gpu(True) is True


def test_run_stage_rejects_a_bad_spec_before_starting_ray(capsys):
    from ray_operators.jobs.run_stage import main

    assert main(["--spec", _spec(stage="nope").encode()]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err

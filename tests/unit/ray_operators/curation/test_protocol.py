"""The curation protocol both curate engines implement (``ray_operators.curation``), without a
cluster: claims, processing rows, commit keys, the shared reader, and the ancestry walk's view of
Iceberg write-audit-publish commits."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from ray_operators.contract.lineage import ENGINE, RUN_KEY
from ray_operators.curation import protocol, spark_logs, spark_logs_fast
from ray_operators.iceberg_snapshots import committed_with, lineage_of, rolled_back_ids, values_on_branch

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def row(folder, status, run_key, minute, end=True):
    start = T0.replace(minute=minute)
    return {
        "folder": folder,
        "status": status,
        "run_key": run_key,
        "start_time": start,
        "end_time": start.replace(second=30) if end else None,
    }


def test_a_new_run_claims_what_no_committed_run_curated():
    rows = [
        row("a", "PROCESSING", "k1", 1, end=False),
        row("a", "SUCCESS", "k1", 1),
        row("b", "PROCESSING", "k2", 2, end=False),
        row("b", "FAILED", "k2", 2),
    ]
    claim = protocol.plan_claim(rows, run_key="k3", on_branch={"k1"}, found=["a", "b", "c"])
    assert claim == protocol.Claim(claimed=["b", "c"], done=["a"], rolled_back=[], retry=False)


def test_a_retry_takes_exactly_its_first_claim_even_when_more_units_arrived():
    rows = [row("a", "PROCESSING", "k1", 1, end=False), row("b", "PROCESSING", "k1", 1, end=False)]
    claim = protocol.plan_claim(rows, run_key="k1", on_branch=set(), found=["a", "b", "c"])
    assert claim.claimed == ["a", "b"] and claim.retry


def test_a_failed_row_after_the_runs_commit_does_not_undo_it():
    """A run whose curated commit is on the branch curated its units, whatever row came last (its
    quarantine commit failed, a zombie try marked FAILED): a new run must not curate them twice."""
    rows = [row("a", "PROCESSING", "k1", 1, end=False), row("a", "FAILED", "k1", 1)]
    claim = protocol.plan_claim(rows, run_key="k2", on_branch={"k1"}, found=["a"])
    assert claim.claimed == [] and claim.done == ["a"]
    claim = protocol.plan_claim(rows, run_key="k2", on_branch=set(), found=["a"])
    assert claim.claimed == ["a"]  # its output never landed


def test_units_whose_commit_was_rolled_back_are_curated_again():
    rows = [row("a", "SUCCESS", "k1", 1), row("b", "SUCCESS", "k2", 2)]
    claim = protocol.plan_claim(rows, run_key="k3", on_branch={"k2"}, found=["a", "b"])
    assert claim.claimed == ["a"] and claim.done == ["b"] and claim.rolled_back == ["a"]


def test_naive_times_from_spark_order_like_aware_ones():
    naive = {**row("a", "SUCCESS", "k1", 5), "end_time": datetime(2026, 1, 1, 0, 5, 30)}
    later = row("a", "FAILED", "k2", 6)
    claim = protocol.plan_claim([later, naive], run_key="k3", on_branch={"k1"}, found=["a"])
    assert claim.claimed == ["a"]  # its latest row is the FAILED one


def test_processing_rows_and_commit_keys():
    claim = protocol.Claim(["a", "b"], [], [], False)
    start = protocol.processing_rows(claim, protocol.PROCESSING, run_key="k", job_id="j", started=T0)
    assert [(r["folder"], r["status"], r["end_time"]) for r in start] == [
        ("a", "PROCESSING", None),
        ("b", "PROCESSING", None),
    ]
    end = protocol.processing_rows(
        claim, protocol.FAILED, run_key="k", job_id="j", started=T0, error="x" * 5000, stats={"a": (3, 1)}
    )
    assert end[0]["records_processed"] == 3 and end[1]["records_quarantined"] == 0
    assert len(end[0]["error"]) == protocol.ERROR_LIMIT and end[0]["end_time"] >= T0
    with pytest.raises(ValueError, match="unknown processing status"):
        protocol.processing_rows(claim, "DONE", run_key="k", job_id="j", started=T0)
    keys = protocol.CommitKeys("d/t/run=r")
    assert (keys.start, keys.output, keys.quarantine, keys.failed, keys.end) == (
        "d/t/run=r/start",
        "d/t/run=r",
        "d/t/run=r/quarantine",
        "d/t/run=r/failed",
        "d/t/run=r/end",
    )


def test_both_engines_create_the_same_iceberg_columns():
    from pyiceberg.io.pyarrow import pyarrow_to_schema

    schema = protocol.arrow_schema(spark_logs.CURATED_COLUMNS)
    assert schema.names == [name for name, _ in spark_logs.CURATED_COLUMNS]
    assert protocol.spark_ddl(protocol.QUARANTINE_COLUMNS) == (
        "source_file STRING, line_number BIGINT, raw_line STRING, reason STRING"
    )
    assert "start_time TIMESTAMP_LTZ" in protocol.spark_ddl(protocol.PROCESSING_COLUMNS)
    # Spark's TIMESTAMP is Iceberg's timestamptz: so is a UTC pyarrow timestamp.
    iceberg = pyarrow_to_schema(protocol.arrow_schema(protocol.PROCESSING_COLUMNS), name_mapping=_names())
    assert str(iceberg.find_field("start_time").field_type) == "timestamptz"


def _names():
    from pyiceberg.table.name_mapping import MappedField, NameMapping

    return NameMapping(
        [MappedField(field_id=i + 1, names=[name]) for i, (name, _) in enumerate(protocol.PROCESSING_COLUMNS)]
    )


def test_records_number_lines_in_the_file_and_quarantine_with_reasons():
    data = (
        b'{"timestamp":"2026-01-01T00:00:00Z","log_level":"INFO","message":"a"}\r\n'
        b"\n"
        b"[1]\n"
        b'{"timestamp":"2026-01-01T00:00:01","log_level":"INFO","message":"\xff"}\n'
        b'{"log_level":"INFO"}'
    )
    out = list(spark_logs.records("/raw/spark-1/driver.log", "spark-1", io.BytesIO(data)))
    assert [(r["line_number"], r["reason"]) for r in out] == [
        (1, None),
        (3, "bad_json: not an object"),
        (4, None),
        (5, "missing_field: timestamp, message"),
    ]
    row_, reason = spark_logs.parse_line(
        '{"timestamp":"2026-01-01T00:00:00Z","log_level":"I","message":"m","kubernetes":{"pod_name":5,'
        '"labels":{"app":{"b":1,"a":[true]}}}}'
    )
    assert reason is None and row_["pod_name"] == "5" and row_["app"] == '{"a": [true], "b": 1}'
    typed = spark_logs.typed_row(out[2])
    assert typed["timestamp"] == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert typed["message"] == "\ufffd" and typed["source_folder"] == "spark-1"
    assert spark_logs.quarantine_row(out[1]) == {
        "source_file": "/raw/spark-1/driver.log",
        "line_number": 3,
        "raw_line": "[1]",
        "reason": "bad_json: not an object",
    }


def test_discovery_takes_every_raw_root(tmp_path: Path):
    for root, unit in (("a", "spark-1"), ("b", "spark-2")):
        (tmp_path / root / unit).mkdir(parents=True)
        (tmp_path / root / unit / "driver.log").write_text("{}\n")
        (tmp_path / root / unit / "notes.txt").write_text("x\n")
    (tmp_path / "b" / "other").mkdir()
    found = spark_logs.discover_all([str(tmp_path / "a"), str(tmp_path / "b")])
    assert found == {
        "spark-1": [str(tmp_path / "a" / "spark-1" / "driver.log")],
        "spark-2": [str(tmp_path / "b" / "spark-2" / "driver.log")],
    }


def snap(sid, parent, **summary):
    return SimpleNamespace(snapshot_id=sid, parent_snapshot_id=parent, summary=summary, sequence_number=None)


def metadata(snaps, head, log=()):
    return SimpleNamespace(
        snapshots=snaps,
        refs={"main": SimpleNamespace(snapshot_id=head)},
        snapshot_log=[SimpleNamespace(snapshot_id=s) for s in log],
    )


def test_a_cherry_picked_wap_commit_carries_its_run_key_and_its_staged_lineage():
    staged = snap(2, 1, **{RUN_KEY: "k", "wap.id": "k", ENGINE: "spark"})
    other = snap(3, 1, **{RUN_KEY: "other"})
    published = snap(4, 3, **{"published-wap-id": "k", "source-snapshot-id": "2"})
    meta = metadata([snap(1, None), staged, other, published], 4, log=[1, 3, 4])
    assert committed_with(meta, RUN_KEY, "k") is published
    assert values_on_branch(meta, RUN_KEY) == {"k", "other"}
    assert lineage_of(meta, published)[ENGINE] == "spark"
    assert lineage_of(meta, published)["published-wap-id"] == "k"


def test_a_staged_snapshot_never_published_is_not_a_rolled_back_commit():
    staged = snap(2, 1, **{RUN_KEY: "k", "wap.id": "k"})
    rolled_back = snap(3, 1, **{RUN_KEY: "k"})
    meta = metadata([snap(1, None), staged, rolled_back], 1, log=[1, 3, 1])
    assert committed_with(meta, RUN_KEY, "k") is None
    assert rolled_back_ids(meta, RUN_KEY, "k") == [3]


def test_both_engines_run_the_shared_protocol():
    """The Ray job and the Spark application take claims, keys, rows, parser and lineage from
    ``ray_operators.curation``: neither has its own."""
    import ray_operators.jobs.curate as on_ray
    import ray_operators.spark.curate_spark_logs as on_spark

    for module in (on_ray, on_spark):
        source = Path(module.__file__).read_text()
        for shared in (
            "protocol.plan_claim(",
            "protocol.CommitKeys(",
            "protocol.processing_rows(",
            "protocol.lineage(",
            "protocol.result(",
        ):
            assert shared in source, f"{module.__name__} does not use {shared}"
        assert "def parse_line" not in source and "json.loads(line" not in source
    # The Ray job parses through the shared fast path, whose fallback is the shared row parser.
    assert "spark_logs_fast.curate_file(" in Path(on_ray.__file__).read_text()
    assert "spark_logs.records(" in Path(spark_logs_fast.__file__).read_text()
    assert "spark_logs.records(" in Path(on_spark.__file__).read_text()
    assert (
        json.loads(
            json.dumps(protocol.result("x", protocol.Claim([], [], [], False), {"rows": 1}, {"rows": 2}))
        )["rows_in"]
        == 3
    )

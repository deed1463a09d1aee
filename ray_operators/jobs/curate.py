"""Stage 1, curate: raw Spark application logs (JSON lines) -> a typed Iceberg table.

New ``spark-*`` folders under the raw root are discovered; folders whose latest status in the
processing-metadata table is SUCCESS are skipped. Every line is either a typed row or a
quarantined line with its reason; nothing is dropped silently and a bad line never fails the job.

Tables (``<output>`` is the spec's output table):
- ``<output>``: timestamp, log_level, message, pod_name, namespace_name, app, spark_app_selector,
  spark_role, spark_version, submission_id, source_folder;
- ``<output>_quarantine``: source_file, line_number, raw_line, reason;
- ``<output>_processing``: folder, status (PROCESSING/SUCCESS/FAILED), records_processed,
  records_quarantined, start_time, end_time, error, job_id, run_key (an append-only log: a
  folder's status is its latest row).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from ray_operators.contract.lineage import RUN_KEY
from ray_operators.contract.run_key import derived
from ray_operators.contract.spec import StageSpec
from ray_operators.iceberg_snapshots import values_on_branch
from ray_operators.jobs.write import commit_exactly_once, ensure_table

REQUIRED = ("timestamp", "log_level", "message")


def schemas():
    import pyarrow as pa

    logs = pa.schema(
        [
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("log_level", pa.string()),
            ("message", pa.string()),
            ("pod_name", pa.string()),
            ("namespace_name", pa.string()),
            ("app", pa.string()),
            ("spark_app_selector", pa.string()),
            ("spark_role", pa.string()),
            ("spark_version", pa.string()),
            ("submission_id", pa.string()),
            ("source_folder", pa.string()),
        ]
    )
    quarantine = pa.schema(
        [
            ("source_file", pa.string()),
            ("line_number", pa.int64()),
            ("raw_line", pa.string()),
            ("reason", pa.string()),
        ]
    )
    processing = pa.schema(
        [
            ("folder", pa.string()),
            ("status", pa.string()),
            ("records_processed", pa.int64()),
            ("records_quarantined", pa.int64()),
            ("start_time", pa.timestamp("us", tz="UTC")),
            ("end_time", pa.timestamp("us", tz="UTC")),
            ("error", pa.string()),
            ("job_id", pa.string()),
            ("run_key", pa.string()),
        ]
    )
    return logs, quarantine, processing


def _get(record: dict[str, Any], dotted: str) -> Any:
    """``kubernetes.labels.app`` from nested objects or from a flat dotted key."""
    if dotted in record:
        return record[dotted]
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def parse_line(line: str) -> tuple[dict[str, Any] | None, str | None]:
    """One log line -> (typed row, None) or (None, quarantine reason)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return None, f"bad_json: {err.msg} at column {err.colno}"
    if not isinstance(record, dict):
        return None, "bad_json: not an object"
    missing = [name for name in REQUIRED if record.get(name) in (None, "")]
    if missing:
        return None, f"missing_field: {', '.join(missing)}"
    try:
        ts = datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
    except ValueError:
        return None, f"bad_timestamp: {str(record['timestamp'])[:40]!r}"
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return {
        "timestamp": ts.astimezone(UTC),
        "log_level": str(record["log_level"]),
        "message": str(record["message"]),
        "pod_name": _get(record, "kubernetes.pod_name"),
        "namespace_name": _get(record, "kubernetes.namespace_name"),
        "app": _get(record, "kubernetes.labels.app"),
        "spark_app_selector": _get(record, "kubernetes.labels.spark-app-selector"),
        "spark_role": _get(record, "kubernetes.labels.spark-role"),
        "spark_version": _get(record, "kubernetes.labels.spark-version"),
        "submission_id": _get(record, "kubernetes.labels.submission-id"),
    }, None


def parse_file(item: dict[str, Any], properties: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """flat_map UDF: one log file -> one record per non-empty line, parsed or with its reason.
    ``properties``: the catalog's, for opening ``s3://`` raw files like its data files."""
    from ray_operators.jobs import storage

    path = item["path"]
    out = []
    with storage.open_text(path, properties) as handle:
        for number, text in enumerate(handle, start=1):
            text = text.rstrip("\n")
            if not text.strip():
                continue
            row, reason = parse_line(text)
            out.append(
                {
                    "row": json.dumps(row, default=str) if row else None,
                    "reason": reason,
                    "path": path,
                    "unit": item.get("unit") or PurePosixPath(path).parent.name,
                    "line_number": number,
                    "raw": text[:10_000],
                }
            )
    return out


def discover(raw_root: str, properties: dict[str, str] | None = None) -> dict[str, list[str]]:
    """The Spark-log units under a raw root (local path, ``file://`` or ``s3://``): each
    ``spark-*`` folder and its ``*.log`` files, sorted."""
    import pyarrow.fs as pafs

    from ray_operators.jobs import storage

    storage.check_readable(raw_root, properties)
    _, root_path = storage.filesystem(raw_root, properties)
    found: dict[str, list[str]] = {}
    for folder in storage.listing(raw_root, properties):
        name = folder.path.rstrip("/").rpartition("/")[2]
        if folder.type != pafs.FileType.Directory or not name.startswith("spark-"):
            continue
        folder_uri = storage.uri_of(raw_root, root_path, folder.path)
        found[name] = [
            storage.uri_of(raw_root, root_path, f.path)
            for f in storage.listing(folder_uri, properties)
            if f.type == pafs.FileType.File and f.path.endswith(".log")
        ]
    return found


def run(spec: StageSpec) -> dict[str, Any]:
    """Curate the raw roots' new units (Spark-log folders, or files of a tabular format)."""
    from functools import partial

    params = spec.typed_params()  # the defaults live in the contract (CurateParams)
    fmt = str(params.format).lower()
    _, quarantine_schema, processing_schema = schemas()
    if fmt == "spark_logs":
        good_schema = schemas()[0]

        def units() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for root in spec.raw_paths:
                found.update(discover(root, spec.storage_properties()))
            return found

        items = lambda unit, path: {"path": path, "unit": unit}  # noqa: E731
        parse, typed = partial(parse_file, properties=spec.storage_properties()), _typed
    else:
        from ray_operators.jobs import tabular

        try:
            fmt, columns, required = tabular.declared(spec.params)
        except tabular.TabularError as err:
            from ray_operators.contract.spec import StageError

            raise StageError(str(err)) from None
        good_schema = tabular.arrow_schema(columns)

        def units() -> dict[str, list[str]]:
            found: dict[str, list[str]] = {}
            for root in spec.raw_paths:
                found.update(tabular.discover(root, fmt, params.pattern, spec.storage_properties()))
            return found

        encoded = {"columns": json.dumps(columns), "required": json.dumps(required), "format": fmt}
        items = lambda unit, path: {"path": path, "unit": unit, **encoded}  # noqa: E731
        parse = partial(tabular.parse_file, properties=spec.storage_properties())
        typed = partial(tabular.typed, columns=columns)
    return _curate(spec, good_schema, quarantine_schema, processing_schema, units, items, parse, typed)


def _curate(
    spec: StageSpec,
    good_schema: Any,
    quarantine_schema: Any,
    processing_schema: Any,
    units: Any,
    items: Any,
    parse: Any,
    typed: Any,
) -> dict[str, Any]:
    import pyarrow as pa
    import ray

    out = spec.output_table
    curated = ensure_table(spec, out, good_schema)
    ensure_table(spec, f"{out}_quarantine", quarantine_schema)
    processing = ensure_table(spec, f"{out}_processing", processing_schema)

    rows = processing.scan().to_arrow().to_pylist()
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["end_time"] or r["start_time"]):
        latest[row["folder"]] = row
    # A retry of this run re-processes exactly the units its first try claimed (its PROCESSING
    # rows), never more: its write may already be committed under this run key.
    own_run = sorted({r["folder"] for r in rows if r["run_key"] == spec.run_key})
    # A unit is done when its SUCCESS run's commit is still on the curated table's branch: after
    # a rollback of that table, its units are curated again (the processing row alone is no proof).
    on_branch = values_on_branch(curated.metadata, RUN_KEY)
    done = {
        f
        for f, r in latest.items()
        if r["status"] == "SUCCESS" and r["run_key"] != spec.run_key and r["run_key"] in on_branch
    }
    rolled_back = sorted(f for f, r in latest.items() if r["status"] == "SUCCESS" and f not in done)
    if rolled_back and not own_run:
        print(f"units whose curated commit is no longer on {out}'s branch, curated again: {rolled_back}")
    found = units()
    if own_run:
        claimed = [f for f in own_run if f in found]
    else:
        claimed = sorted(f for f in found if f not in done)
    started = datetime.now(UTC)
    job_id = spec.lineage_properties()["lakehouse.ray-submission-id"]

    def log_rows(status: str, stats: dict[str, tuple[int, int]], error: str | None = None) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {
                    "folder": f,
                    "status": status,
                    "records_processed": stats.get(f, (0, 0))[0],
                    "records_quarantined": stats.get(f, (0, 0))[1],
                    "start_time": started,
                    "end_time": None if status == "PROCESSING" else datetime.now(UTC),
                    "error": error,
                    "job_id": job_id,
                    "run_key": spec.run_key,
                }
                for f in claimed
            ],
            schema=processing_schema,
        )

    start_spec = spec.with_run_key(derived(spec.run_key, "start"))
    commit_exactly_once(
        start_spec,
        ray.data.from_arrow(log_rows("PROCESSING", {})) if claimed else None,
        table=f"{out}_processing",
    )
    try:
        files = [items(unit, path) for unit in claimed for path in found[unit]]
        if files:
            parsed = ray.data.from_items(files).flat_map(parse).materialize()
            good = parsed.filter(lambda r: r["row"] is not None).map_batches(
                _TypedBatch(typed, good_schema), batch_format="pyarrow"
            )
            bad = parsed.filter(lambda r: r["row"] is None).map(
                lambda r: {
                    "source_file": r["path"],
                    "line_number": r["line_number"],
                    "raw_line": r["raw"],
                    "reason": r["reason"],
                }
            )
        else:
            good = bad = None
        logs_result = commit_exactly_once(spec, good, schema=good_schema)
        q_spec = spec.with_run_key(derived(spec.run_key, "quarantine"))
        q_result = commit_exactly_once(q_spec, bad, table=f"{out}_quarantine", schema=quarantine_schema)
        stats = _per_unit(parsed) if files else {}
    except Exception as err:
        end_spec = spec.with_run_key(derived(spec.run_key, "failed"))
        commit_exactly_once(
            end_spec, ray.data.from_arrow(log_rows("FAILED", {}, str(err)[:2000])), table=f"{out}_processing"
        )
        raise
    end_spec = spec.with_run_key(derived(spec.run_key, "end"))
    if claimed:
        commit_exactly_once(
            end_spec, ray.data.from_arrow(log_rows("SUCCESS", stats)), table=f"{out}_processing"
        )
    return {
        "stage": "curate",
        "folders": claimed,
        "skipped_folders": sorted(done),
        "output": logs_result,
        "quarantine": q_result,
        "rows_in": logs_result["rows"] + q_result["rows"],
        "rows_out": logs_result["rows"],
        "quarantined": q_result["rows"],
    }


class _TypedBatch:
    """Records -> typed rows, built into Arrow with the declared schema (so a column that mixes
    values and nulls, or tz-aware datetimes, never falls back to pickled Python objects)."""

    def __init__(self, typed: Any, schema: Any) -> None:
        self.typed = typed
        self.schema = schema

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist([self.typed(r) for r in batch.to_pylist()], schema=self.schema)


def _typed(record: dict[str, Any]) -> dict[str, Any]:
    row = json.loads(record["row"])
    row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    row["source_folder"] = PurePosixPath(record["path"]).parent.name
    return row


def _per_unit(parsed: Any) -> dict[str, tuple[int, int]]:
    """(good, quarantined) records per unit (folder or file)."""
    counts = parsed.map(
        lambda r: {"unit": r["unit"], "good": int(r["row"] is not None), "bad": int(r["row"] is None)}
    )
    stats = {}
    for row in counts.groupby("unit").sum(["good", "bad"]).take_all():
        stats[row["unit"]] = (int(row["sum(good)"]), int(row["sum(bad)"]))
    return stats

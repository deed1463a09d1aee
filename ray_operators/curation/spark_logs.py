"""The ``spark_logs`` format: raw Spark application logs (JSON lines, one ``spark-*`` folder per
application) -> typed rows or quarantined lines. Discovery, parser and quarantine reasons of both
curate engines.

Quarantine reasons: ``bad_json: <message> at column <n>``, ``bad_json: not an object``,
``missing_field: <names>``, ``bad_timestamp: <value>``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from ray_operators.curation.protocol import RAW_LINE_LIMIT, Columns

REQUIRED = ("timestamp", "log_level", "message")
#: The curated table; ``source_folder`` is the unit a row came from (lineage).
CURATED_COLUMNS: Columns = (
    ("timestamp", "timestamp"),
    ("log_level", "string"),
    ("message", "string"),
    ("pod_name", "string"),
    ("namespace_name", "string"),
    ("app", "string"),
    ("spark_app_selector", "string"),
    ("spark_role", "string"),
    ("spark_version", "string"),
    ("submission_id", "string"),
    ("source_folder", "string"),
)
UNIT_PREFIX = "spark-"
FILE_SUFFIX = ".log"


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


def _text(value: Any) -> str | None:
    """A label as text: a number or an object in a string column is kept, as its JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value, sort_keys=True)


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
        "pod_name": _text(_get(record, "kubernetes.pod_name")),
        "namespace_name": _text(_get(record, "kubernetes.namespace_name")),
        "app": _text(_get(record, "kubernetes.labels.app")),
        "spark_app_selector": _text(_get(record, "kubernetes.labels.spark-app-selector")),
        "spark_role": _text(_get(record, "kubernetes.labels.spark-role")),
        "spark_version": _text(_get(record, "kubernetes.labels.spark-version")),
        "submission_id": _text(_get(record, "kubernetes.labels.submission-id")),
    }, None


def records(path: str, unit: str, stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    """One file's records: one per non-empty line, parsed (``row``: the typed row as JSON) or with
    its ``reason``. Lines are numbered in the file from 1, blank lines included; bytes that are not
    UTF-8 are replaced; ``\\r\\n`` and ``\\r`` end lines like ``\\n``."""
    with io.TextIOWrapper(stream, encoding="utf-8", errors="replace") as text:
        for number, line in enumerate(text, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            row, reason = parse_line(line)
            yield {
                "row": json.dumps(row, default=str) if row else None,
                "reason": reason,
                "path": path,
                "unit": unit,
                "line_number": number,
                "raw": line[:RAW_LINE_LIMIT],
            }


def typed_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed record's row, typed for the curated table."""
    row = json.loads(record["row"])
    row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    row["source_folder"] = record["unit"]
    return row


def quarantine_row(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source_file": record["path"],
        "line_number": record["line_number"],
        "raw_line": record["raw"],
        "reason": record["reason"],
    }


def discover(raw_root: str, properties: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The units under one raw root (local path, ``file://``, ``s3://`` or ``s3a://``): each
    ``spark-*`` folder and its ``*.log`` files, sorted, as URIs in the root's own form."""
    import pyarrow.fs as pafs

    import ray_operators.jobs.storage as storage

    storage.check_readable(raw_root, properties)
    _, root_path = storage.filesystem(raw_root, properties)
    found: dict[str, list[str]] = {}
    for folder in storage.listing(raw_root, properties):
        name = folder.path.rstrip("/").rpartition("/")[2]
        if folder.type != pafs.FileType.Directory or not name.startswith(UNIT_PREFIX):
            continue
        folder_uri = storage.uri_of(raw_root, root_path, folder.path)
        found[name] = [
            storage.uri_of(raw_root, root_path, f.path)
            for f in storage.listing(folder_uri, properties)
            if f.type == pafs.FileType.File and f.path.endswith(FILE_SUFFIX)
        ]
    return found


def discover_all(
    raw_paths: Sequence[str], properties: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """The units under every raw root, in root order (a unit name found under two roots is the
    later root's)."""
    found: dict[str, list[str]] = {}
    for root in raw_paths:
        found.update(discover(root, properties))
    return found

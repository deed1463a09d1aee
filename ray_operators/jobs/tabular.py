"""CSV, JSON-lines and Parquet files into a declared schema, row by row (for the curate stage; the
vectorized fast path for CSV, :mod:`ray_operators.jobs.tabular_fast`, hands this parser what it
cannot vouch for).

Stage params: ``format`` (``csv``, ``json`` or ``parquet``), ``schema`` (``{column: type}`` with
types ``string``, ``long``/``int``, ``double``/``float``, ``boolean``, ``timestamp``, ``date``),
``required`` (columns that may not be empty; default: all), ``pattern`` (file glob under each raw
root, default ``**/*.<format>``).

Each record becomes a typed row or a quarantined record with its reason (``missing_field``,
``bad_value: column: ...``, ``bad_json``, ``bad_file``); columns the schema does not declare are
ignored. Converted rows travel as JSON and are typed again by :func:`typed`.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

TYPES = {
    "string": "string",
    "str": "string",
    "long": "long",
    "int": "long",
    "integer": "long",
    "int64": "long",
    "bigint": "long",
    "double": "double",
    "float": "double",
    "float64": "double",
    "boolean": "boolean",
    "bool": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}
FORMATS = {"csv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}


class TabularError(ValueError):
    """The stage params do not describe a usable format or schema."""


def declared(params: dict[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    fmt = FORMATS.get(str(params.get("format", "")).lower())
    if fmt is None:
        raise TabularError(
            f"curate format must be one of spark_logs, {', '.join(FORMATS)}; got {params.get('format')!r}"
        )
    schema = params.get("schema") or {}
    if not isinstance(schema, dict) or not schema:
        raise TabularError(f"curate format {fmt} needs params.schema: {{column: type}}")
    bad = {c: t for c, t in schema.items() if str(t).lower() not in TYPES}
    if bad:
        raise TabularError(f"unknown column types {bad}; types are {sorted(set(TYPES.values()))}")
    columns = {str(c): TYPES[str(t).lower()] for c, t in schema.items()}
    required = list(params.get("required", list(columns)))
    unknown = sorted(set(required) - set(columns))
    if unknown:
        raise TabularError(f"required columns {unknown} are not in the schema")
    return fmt, columns, required


def arrow_schema(columns: dict[str, str]):
    """The declared columns and ``source_file`` (the raw file a row came from), in pyarrow."""
    from ray_operators.curation.protocol import arrow_schema as of_columns

    return of_columns([*columns.items(), ("source_file", "string")])


def discover(
    raw_root: str, fmt: str, pattern: str | None, properties: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """The files under a raw root (local path, ``file://`` or ``s3://``) that match ``pattern``
    (default ``**/*.<format>``; for json, ``**/*.jsonl`` when there is no ``*.json``), each its own
    unit named by its path relative to the root."""
    import pyarrow.fs as pafs

    from ray_operators.jobs import storage

    storage.check_readable(raw_root, properties)
    _, root_path = storage.filesystem(raw_root, properties)
    files = {}
    for info in storage.listing(raw_root, properties, recursive=True):
        if info.type == pafs.FileType.File:
            files[info.path[len(root_path.rstrip("/")) :].lstrip("/")] = info.path
    if pattern is None:
        json_files = any(name.endswith(".json") for name in files)
        pattern = "**/*.jsonl" if fmt == "json" and not json_files else f"**/*.{fmt}"
    match = storage.glob_regex(pattern)
    return {
        relative: [storage.uri_of(raw_root, root_path, path)]
        for relative, path in sorted(files.items())
        if match.match(relative)
    }


def _convert(value: Any, kind: str) -> Any:
    if kind == "string":
        return str(value)
    if kind == "long":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        number = float(value) if isinstance(value, str) and "." in value else value
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError("not a whole number")
            return int(number)
        return int(number)
    if kind == "double":
        if isinstance(value, bool):
            raise ValueError("a boolean is not a number")
        return float(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes", "t"):
            return True
        if text in ("false", "0", "no", "f"):
            return False
        raise ValueError("not a boolean")
    if kind == "timestamp":
        if isinstance(value, datetime):
            stamp = value
        else:
            stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if kind == "date":
        return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).isoformat()
    raise ValueError(f"unknown type {kind}")


def convert(
    record: dict[str, Any], columns: dict[str, str], required: list[str]
) -> tuple[dict | None, str | None]:
    missing = [c for c in required if record.get(c) in (None, "")]
    if missing:
        return None, f"missing_field: {', '.join(missing)}"
    row: dict[str, Any] = {}
    for column, kind in columns.items():
        value = record.get(column)
        if value in (None, ""):
            row[column] = None
            continue
        try:
            row[column] = _convert(value, kind)
        except (TypeError, ValueError, OverflowError) as err:
            return None, f"bad_value: {column}: {str(value)[:40]!r} is not a {kind} ({err})"
    return row, None


def parse_file(item: dict[str, Any], properties: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One file -> one record per row, converted or with its reason (the row parser).
    ``properties``: the catalog's, for opening ``s3://`` raw files like its data files."""
    return parse_bytes(item, read_file(item, properties))


def read_file(item: dict[str, Any], properties: dict[str, str] | None = None) -> bytes:
    # Storage trouble (network, credentials, a file gone) fails the job: a retry heals it, and no
    # data is quarantined for it. Everything the parser raises on these bytes is the file's fault.
    from ray_operators.jobs import storage

    data = storage.read_bytes(item["path"], properties)
    if data is None:
        raise FileNotFoundError(f"raw file {item['path']} disappeared after discovery")
    return data


def curate_file(
    item: dict[str, Any], properties: dict[str, str] | None = None, fast: bool = True
) -> tuple[Any, Any]:
    """One file -> (curated rows, quarantined records) as Arrow tables. ``fast``: CSV through
    :mod:`ray_operators.jobs.tabular_fast` (pyarrow, the row parser for what it cannot vouch for);
    otherwise, and for the other formats, the row parser."""
    data = read_file(item, properties)
    if fast and item["format"] == "csv":
        from ray_operators.jobs import tabular_fast

        tables = tabular_fast.curate_csv(item, data)
        if tables is not None:
            return tables
    return tables_of(parse_bytes(item, data), json.loads(item["columns"]))


def tables_of(records: list[dict[str, Any]], columns: dict[str, str]) -> tuple[Any, Any]:
    """Row-parser records -> (curated rows, quarantined records) as Arrow tables."""
    import pyarrow as pa

    from ray_operators.curation import protocol, spark_logs

    good = [typed(r, columns) for r in records if r["row"] is not None]
    bad = [spark_logs.quarantine_row(r) for r in records if r["row"] is None]
    quarantine = protocol.arrow_schema(protocol.QUARANTINE_COLUMNS)
    return pa.Table.from_pylist(good, schema=arrow_schema(columns)), pa.Table.from_pylist(
        bad, schema=quarantine
    )


class Emit:
    """Collects a file's records: each converted to a row or given its quarantine reason."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.path, self.unit = item["path"], item["unit"]
        self.columns, self.required = json.loads(item["columns"]), json.loads(item["required"])
        self.out: list[dict[str, Any]] = []

    def __call__(self, number: int, record: Any, raw: str) -> None:
        row: dict[str, Any] | None
        reason: str | None
        if not isinstance(record, dict):
            row, reason = None, "bad_json: not an object"
        else:
            row, reason = convert(record, self.columns, self.required)
        self.add(number, row, reason, raw)

    def add(self, number: int, row: dict | None, reason: str | None, raw: str) -> None:
        self.out.append(
            {
                "row": json.dumps(row) if row is not None else None,
                "reason": reason,
                "path": self.path,
                "unit": self.unit,
                "line_number": number,
                "raw": raw[:10_000],
            }
        )


def parse_bytes(item: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    """A file's bytes -> its records (see :func:`parse_file`)."""
    emit = Emit(item)
    try:
        if item["format"] == "csv":
            csv_rows(data.decode("utf-8", errors="replace"), emit)
        elif item["format"] == "json":
            _json_rows(data.decode("utf-8", errors="replace"), emit)
        else:
            _parquet_rows(data, emit)
    except Exception as err:  # an undecodable file is quarantined as a whole, never a crash
        emit.add(0, None, f"bad_file: {type(err).__name__}: {err}"[:500], "")
    return emit.out


def csv_rows(text: str, emit: Emit, header: list[str] | None = None, first_line: int = 1) -> None:
    """CSV text -> records. ``header``: the file's, when ``text`` is a part of the file after it
    that starts on line ``first_line``."""
    with io.StringIO(text, newline="") as handle:
        # A record's line is where it starts in the file: a quoted field may span lines, so count
        # with the reader's own line counter (line 1 is the header).
        reader = csv.reader(handle)
        if header is None:
            header = next(reader, None) or []
        start = reader.line_num + first_line
        for row in reader:
            if row:  # a blank line is no record (as csv.DictReader has it)
                record = _as_record(header, row)
                emit(start, record, ",".join("" if v is None else str(v) for v in record.values()))
            start = reader.line_num + first_line


def _json_rows(text: str, emit: Emit) -> None:
    with io.StringIO(text) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                emit.add(number, None, f"bad_json: {err.msg} at column {err.colno}", line.rstrip("\n"))
                continue
            emit(number, record, line.rstrip("\n"))


def _parquet_rows(data: bytes, emit: Emit) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            number += 1
            emit(number, record, json.dumps(record, default=str))


def _as_record(header: list[str], row: list[str]) -> dict[Any, Any]:
    """A CSV row by column name, as ``csv.DictReader`` builds it: missing fields are None, extra
    fields a list under the key None."""
    record: dict[Any, Any] = dict(zip(header, row, strict=False))
    if len(row) > len(header):
        record[None] = row[len(header) :]
    for name in header[len(row) :]:
        record[name] = None
    return record


def typed(record: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    row = json.loads(record["row"])
    for column, kind in columns.items():
        value = row.get(column)
        if value is None:
            continue
        if kind == "timestamp":
            row[column] = datetime.fromisoformat(value)
        elif kind == "date":
            row[column] = date.fromisoformat(value)
    row["source_file"] = record["path"]
    return row

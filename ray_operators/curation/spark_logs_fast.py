"""The ``spark_logs`` format, vectorized: one file's bytes -> (curated rows, quarantined lines) as
Arrow tables, equal to what :func:`ray_operators.curation.spark_logs.records` gives line by line.

The fast path reads blocks of lines with pyarrow's JSON reader and types them with
``pyarrow.compute``. A line goes to the row parser (``spark_logs.records``, so its quarantine
reason, raw text and line number are the row parser's) when it could be quarantined or typed
differently: a line that is not one ``{...}`` object, a block that is not UTF-8, a line pyarrow
cannot read, a missing or empty required field, a timestamp outside the shapes pyarrow and
``datetime.fromisoformat`` agree on, a label that is not a string, a flat dotted key whose value
pyarrow cannot tell from an absent one, or a bare ``NaN``/``Inf`` (which pyarrow reads and Python
does not always). A file with a lone ``\\r`` goes to the row parser whole.
"""

from __future__ import annotations

import io
from typing import Any

from ray_operators.curation import arrow_lines, protocol, spark_logs

#: Curated label columns and the dotted record paths they come from (nested or flat).
LABELS = (
    ("pod_name", "kubernetes.pod_name"),
    ("namespace_name", "kubernetes.namespace_name"),
    ("app", "kubernetes.labels.app"),
    ("spark_app_selector", "kubernetes.labels.spark-app-selector"),
    ("spark_role", "kubernetes.labels.spark-role"),
    ("spark_version", "kubernetes.labels.spark-version"),
    ("submission_id", "kubernetes.labels.submission-id"),
)
#: Bare non-finite numbers: pyarrow reads ``-NaN`` and ``Inf``, Python's json does not.
_NON_FINITE = r"[:,\[]\s*-?(NaN|Inf)"


def curate_file(
    path: str, unit: str, data: bytes, *, fast: bool = True, block_bytes: int = arrow_lines.BLOCK_BYTES
) -> tuple[Any, Any]:
    """One file -> ``(curated, quarantined)`` pyarrow tables (the curated table's and the quarantine
    table's schemas). ``fast=False``: the row parser alone, for every line."""
    out = _Out(path, unit)
    lines = arrow_lines.split_lines(data) if fast else None
    if lines is None:
        out.rows(spark_logs.records(path, unit, io.BytesIO(data)))
    else:
        for first, stop in arrow_lines.blocks(lines, block_bytes):
            _block(lines, first, stop, out)
    return out.tables()


class _Out:
    """What a file gave: fast Arrow tables, and the row parser's records."""

    def __init__(self, path: str, unit: str) -> None:
        self.path, self.unit = path, unit
        self.fast: list[Any] = []
        self.good: list[dict[str, Any]] = []
        self.bad: list[dict[str, Any]] = []

    def rows(self, records: Any, shift: int = 0) -> None:
        for record in records:
            record["line_number"] += shift
            if record["row"] is None:
                self.bad.append(spark_logs.quarantine_row(record))
            else:
                self.good.append(spark_logs.typed_row(record))

    def lines(self, lines: arrow_lines.Lines, indices: Any) -> None:
        """The row parser over these lines (0-based indices, ascending), numbered in the file."""
        for first, stop in arrow_lines.runs(indices):
            chunk = lines.data[lines.starts[first] : lines.ends[stop - 1]]
            self.rows(spark_logs.records(self.path, self.unit, io.BytesIO(chunk)), shift=first)

    def tables(self) -> tuple[Any, Any]:
        import pyarrow as pa

        curated, quarantine = schemas()
        parts = [*self.fast, pa.Table.from_pylist(self.good, schema=curated)]
        return pa.concat_tables(parts), pa.Table.from_pylist(self.bad, schema=quarantine)


def schemas() -> tuple[Any, Any]:
    return (
        protocol.arrow_schema(spark_logs.CURATED_COLUMNS),
        protocol.arrow_schema(protocol.QUARANTINE_COLUMNS),
    )


def _block(lines: arrow_lines.Lines, first: int, stop: int, out: _Out) -> None:
    """One block of lines: the fast path where it can vouch for a line, the row parser elsewhere."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = lines.text(first, stop)
    except (pa.ArrowInvalid, ValueError):  # not UTF-8: the row parser replaces what does not decode
        out.lines(lines, np.arange(first, stop))
        return
    trimmed = pc.utf8_trim(text, " \t\r\n")
    blank = _np(pc.equal(pc.binary_length(trimmed), 0))
    one_object = _np(pc.and_(pc.starts_with(trimmed, "{"), pc.ends_with(trimmed, "}")))
    lo, hi = int(lines.starts[first]), int(lines.ends[stop - 1])
    if _has(lines.data, lo, hi, b"NaN", b"Inf"):
        one_object &= ~_np(pc.match_substring_regex(text, _NON_FINITE))
    maybe_flat = None
    if _has(lines.data, lo, hi, b'"kubernetes.', b"\\u"):
        maybe_flat = _np(pc.or_(pc.match_substring(text, '"kubernetes.'), pc.match_substring(text, "\\u")))
    out.lines(lines, first + np.flatnonzero(~blank & ~one_object))
    candidates = first + np.flatnonzero(one_object)
    for table, part in arrow_lines.read_json_lines(lines, candidates, _parse_options()):
        if table is None:
            out.lines(lines, part)
            continue
        typed, flagged = _typed(table, None if maybe_flat is None else maybe_flat[part - first], out.unit)
        out.fast.append(typed)
        out.lines(lines, part[flagged])


def _has(data: bytes, lo: int, hi: int, *needles: bytes) -> bool:
    return any(data.find(n, lo, hi) != -1 for n in needles)


def _np(mask: Any) -> Any:
    """A boolean pyarrow array as numpy, null as false."""
    import pyarrow.compute as pc

    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _parse_options() -> Any:
    """Read the fields the curated table needs as strings (a number there fails the read, and the
    row parser takes the line); ignore the rest (only their syntax is checked)."""
    import pyarrow as pa
    import pyarrow.json as pj

    text = pa.string()
    labels = pa.struct([(d.rpartition(".")[2], text) for _, d in LABELS if d.count(".") == 2])
    kubernetes = pa.struct(
        [*((d.rpartition(".")[2], text) for _, d in LABELS if d.count(".") == 1), ("labels", labels)]
    )
    fields = [(name, text) for name in spark_logs.REQUIRED]
    fields += [("kubernetes", kubernetes), *((dotted, text) for _, dotted in LABELS)]
    return pj.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore")


def _typed(table: Any, maybe_flat: Any, unit: str) -> tuple[Any, Any]:
    """pyarrow rows -> (the curated rows the fast path vouches for, mask of the rows it does not)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    flagged = np.zeros(table.num_rows, dtype=bool)
    for name in spark_logs.REQUIRED:
        flagged |= ~_np(pc.not_equal(table[name], ""))  # null or "": missing_field
    timestamps, exact = arrow_lines.iso_timestamps(table["timestamp"])
    flagged |= ~_np(exact)
    columns: dict[str, Any] = {"timestamp": timestamps}
    columns.update({name: table[name] for name in spark_logs.REQUIRED[1:]})
    for column, dotted in LABELS:
        flat, nested = table[dotted], pc.struct_field(table["kubernetes"], dotted.split(".")[1:])
        if maybe_flat is not None:  # a flat key present with null wins over the nested value
            flagged |= maybe_flat & _np(pc.and_(pc.is_null(flat), pc.is_valid(nested)))
        columns[column] = pc.coalesce(flat, nested)
    columns["source_folder"] = pa.repeat(pa.scalar(unit, pa.string()), table.num_rows)
    typed = pa.table(columns, schema=schemas()[0])
    return typed.filter(pa.array(~flagged)), flagged

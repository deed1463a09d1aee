"""CSV into a declared schema, vectorized: pyarrow's CSV reader and casts with error masks, equal
to what the row parser (:func:`ray_operators.jobs.tabular.parse_bytes`) gives record by record.

A file is split into records (at line breaks outside quotes) and blocks of records. The fast path
reads a block with ``pyarrow.csv`` (every declared column as text) and types each column with
``pyarrow.compute``; a record whose value it cannot vouch for (an empty required field, a number,
boolean, timestamp or date outside the shapes both agree on) goes to the row parser alone, with its
line number; a block pyarrow cannot read, or whose rows do not match its records one for one (a
short or long row, say), goes to the row parser whole. The whole file goes to the row parser when
its structure is one the two parsers might read differently: a byte-order mark, a NUL, a lone
``\\r``, a quote that RFC 4180 would not write, a field longer than the csv module's limit, or a
header with a blank or repeated name.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from ray_operators.curation import arrow_lines
from ray_operators.jobs import tabular

_FIELD = r'(?:[^",\r\n]*|"(?:[^"]|"")*")'
#: A record RFC 4180 would write: where the csv module and pyarrow read the same fields.
_CONFORMANT = rf"^{_FIELD}(?:,{_FIELD})*\r?\n?$"
_LONG = r"^-?\d{1,18}$"
_DOUBLE = r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,2})?$"
_DATE = r"^[1-9]\d{3}-\d{2}-\d{2}"
_TRUE, _FALSE = ["true", "1", "yes", "t"], ["false", "0", "no", "f"]


class _RowParser(Exception):
    """The file goes to the row parser whole."""


def curate_csv(item: dict[str, Any], data: bytes, block_bytes: int = arrow_lines.BLOCK_BYTES) -> Any:
    """One CSV file's bytes -> (curated rows, quarantined records) as Arrow tables, or ``None``
    when the row parser must read the whole file."""
    try:
        records = _Records.of(data)
        out = _Out(item, records)
        for first, stop in records.blocks(block_bytes):
            _block(out, first, stop)
    except _RowParser:
        return None
    return out.tables()


class _Records:
    """A CSV file's records: ``data[starts[k]:ends[k]]`` is record ``k`` (0: the header), which
    starts on line ``lines[k]``."""

    def __init__(self, data: bytes, starts: Any, ends: Any, lines: Any) -> None:
        self.data, self.starts, self.ends, self.lines = data, starts, ends, lines
        self.header = _header(self.text(0))

    @classmethod
    def of(cls, data: bytes) -> _Records:
        import numpy as np

        if not data or b"\x00" in data or data.startswith(b"\xef\xbb\xbf"):
            raise _RowParser
        split = arrow_lines.split_lines(data)
        if split is None:
            raise _RowParser
        quotes = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x22)
        if len(quotes) % 2:
            raise _RowParser
        closed = np.searchsorted(quotes, split.ends) % 2 == 0  # a line break outside quotes
        last = np.flatnonzero(closed)
        first = np.concatenate(([0], last[:-1] + 1))
        records = cls(data, split.starts[first], split.ends[last], first + 1)
        records.check(quotes.size > 0)
        return records

    def check(self, quoted: bool) -> None:
        """Raise :class:`_RowParser` where the two parsers could disagree on the records."""
        import numpy as np
        import pyarrow.compute as pc

        if int(np.max(self.ends - self.starts)) > csv.field_size_limit():
            raise _RowParser
        if quoted:
            try:
                text = arrow_lines.Lines(self.data, self.starts, self.ends).text(0, len(self.starts))
            except ValueError:  # not UTF-8 (pyarrow.ArrowInvalid)
                raise _RowParser from None
            odd = pc.invert(pc.match_substring_regex(text, _CONFORMANT))
            if pc.any(pc.and_(pc.match_substring(text, '"'), odd)).as_py():
                raise _RowParser

    def text(self, k: int) -> str:
        return self.data[self.starts[k] : self.ends[k]].decode("utf-8", errors="replace")

    def blocks(self, block_bytes: int) -> Any:
        """``(first, stop)`` record ranges after the header, of about ``block_bytes`` each."""
        lines = arrow_lines.Lines(self.data, self.starts[1:], self.ends[1:])
        for first, stop in arrow_lines.blocks(lines, block_bytes):
            yield first + 1, stop + 1


def _header(text: str) -> list[str]:
    header = next(csv.reader(io.StringIO(text, newline="")), [])
    if not header or len(set(header)) != len(header) or not all(header):
        raise _RowParser
    return header


class _Out:
    """A file's fast tables and row-parser records."""

    def __init__(self, item: dict[str, Any], records: _Records) -> None:
        self.records = records
        self.emit = tabular.Emit(item)
        self.fast: list[Any] = []

    def rows(self, indices: Any) -> None:
        """The row parser over these records (ascending indices), numbered in the file."""
        for first, stop in arrow_lines.runs(indices):
            r = self.records
            text = r.data[r.starts[first] : r.ends[stop - 1]].decode("utf-8", errors="replace")
            try:
                tabular.csv_rows(text, self.emit, header=r.header, first_line=int(r.lines[first]))
            except csv.Error:  # the row parser quarantines the whole file from here on
                raise _RowParser from None

    def tables(self) -> tuple[Any, Any]:
        import pyarrow as pa

        good, bad = tabular.tables_of(self.emit.out, self.emit.columns)
        return pa.concat_tables([*self.fast, good]), bad


def _block(out: _Out, first: int, stop: int) -> None:
    import numpy as np

    r = out.records
    lo, hi = int(r.starts[first]), int(r.ends[stop - 1])
    present = first + np.flatnonzero(~_blank(r, first, stop))
    if not _utf8(r.data[lo:hi]):  # the row parser replaces what does not decode
        out.rows(present)
        return
    table = _read(r, lo, hi, quoted=r.data.find(b'"', lo, hi) != -1, columns=out.emit.columns)
    if table is None or table.num_rows != len(present):
        out.rows(present)
        return
    typed, flagged = _typed(table, out.emit, r.header)
    out.fast.append(typed)
    out.rows(present[flagged])


def _utf8(data: bytes) -> bool:
    try:
        return data.isascii() or bool(data.decode("utf-8"))
    except UnicodeDecodeError:
        return False


def _blank(r: _Records, first: int, stop: int) -> Any:
    """Records that are a bare line break (``\\n`` or ``\\r\\n``): no record for the csv module."""
    import numpy as np

    size = r.ends[first:stop] - r.starts[first:stop]
    heads = np.frombuffer(r.data, dtype=np.uint8)[np.minimum(r.starts[first:stop], len(r.data) - 1)]
    return (size == 0) | ((size == 1) & (heads == 0x0A)) | ((size == 2) & (heads == 0x0D))


def _read(r: _Records, lo: int, hi: int, *, quoted: bool, columns: dict[str, str]) -> Any:
    """The block's declared columns as text, or ``None`` when pyarrow cannot read it row for row."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    included = [c for c in columns if c in r.header]
    if not included:
        raise _RowParser
    invalid: list[Any] = []

    def skip(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pcsv.read_csv(
            pa.BufferReader(r.data[lo:hi]),
            read_options=pcsv.ReadOptions(column_names=r.header, use_threads=False, block_size=hi - lo + 1),
            parse_options=pcsv.ParseOptions(newlines_in_values=quoted, invalid_row_handler=skip),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(included, pa.string()),
                include_columns=included,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, ValueError):
        return None
    return None if invalid else table  # a short or long row: the row parser reads the block


def _typed(table: Any, emit: tabular.Emit, header: list[str]) -> tuple[Any, Any]:
    """Text columns -> (the curated rows the fast path vouches for, mask of those it does not)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    flagged = np.zeros(table.num_rows, dtype=bool)
    columns = {}
    for name, kind in emit.columns.items():
        if name not in header:
            flagged |= name in emit.required
            columns[name] = pa.nulls(table.num_rows, tabular.arrow_schema({name: kind}).field(0).type)
            continue
        values = table[name]
        empty = _mask(pc.equal(values, ""))
        if name in emit.required:
            flagged |= empty
        columns[name], exact = _convert(values, kind)
        flagged |= ~(exact | empty)
    columns["source_file"] = pa.repeat(pa.scalar(emit.path, pa.string()), table.num_rows)
    typed = pa.table(columns, schema=tabular.arrow_schema(emit.columns))
    return typed.filter(pa.array(~flagged)), flagged


def _mask(values: Any) -> Any:
    import pyarrow.compute as pc

    return pc.fill_null(values, False).to_numpy(zero_copy_only=False)


def _convert(values: Any, kind: str) -> tuple[Any, Any]:
    """Text -> (typed values, mask of the values the row parser would type the same way)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    nothing = pa.scalar(None, pa.string())
    if kind == "string":
        return pc.if_else(pc.equal(values, ""), nothing, values), _mask(pc.not_equal(values, ""))
    if kind == "timestamp":
        stamps, exact = arrow_lines.iso_timestamps(values)
        return stamps, _mask(exact)
    if kind == "boolean":
        lower = pc.ascii_lower(values)
        yes, no = pc.is_in(lower, pa.array(_TRUE)), pc.is_in(lower, pa.array(_FALSE))
        return pc.if_else(yes, True, pc.if_else(no, False, None)), _mask(pc.or_(yes, no))
    pattern, target = {"long": (_LONG, pa.int64()), "double": (_DOUBLE, pa.float64())}.get(
        kind, (_DATE, pa.date32())
    )
    shaped = pc.match_substring_regex(values, pattern)
    text = pc.utf8_slice_codeunits(values, 0, 10) if kind == "date" else values
    try:
        return pc.if_else(shaped, text, nothing).cast(target), _mask(shaped)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a date that does not exist, say
        return pa.nulls(len(values), target), np.zeros(len(values), dtype=bool)

"""The vectorized fast path's building blocks, for any engine: a raw file's bytes as numbered
lines in blocks, pyarrow's JSON reader over a set of lines (a failing set is split until the lines
it cannot read stand alone), and ISO-8601 timestamps parsed by pyarrow exactly where Python's
``datetime.fromisoformat`` would give the same instant.

The rule of the fast path: a value it computes is the row parser's value, or the line is handed to
the row parser. Everything here reports what it cannot vouch for (a mask, ``None``, an exception)
and never guesses. Lines are split at ``\\n``; a file with a lone ``\\r`` (a line break for the row
parsers' universal newlines) is not split at all (:func:`split_lines` returns ``None``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Bytes of whole lines per block: one bad line sends at most its block to the row parser.
BLOCK_BYTES = 4 << 20

#: The timestamps the fast path parses (years 1000-2999, seconds, at most six fraction digits, an
#: optional ``Z`` or ``±HH:MM`` zone): for these pyarrow and ``datetime.fromisoformat`` agree.
_TIMESTAMP = r"^[12]\d{3}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-](0\d|1\d|2[0-3]):[0-5]\d)?$"
_ZONED = r"(Z|[+-]\d{2}:\d{2})$"
_ROW_HINT = re.compile(r"in row (\d+)")


@dataclass(frozen=True)
class Lines:
    """A file's lines: ``data[starts[i]:ends[i]]`` is line ``i + 1`` with its line break."""

    data: bytes
    starts: Any  # numpy int64
    ends: Any

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, first: int, stop: int) -> Any:
        """Lines ``first..stop-1`` (0-based) as a pyarrow string array, line breaks included;
        raises ``pyarrow.ArrowInvalid`` when they are not valid UTF-8."""
        import numpy as np
        import pyarrow as pa

        offsets = np.append(self.starts[first:stop], self.ends[stop - 1] if stop > first else 0)
        binary = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), stop - first, [None, pa.py_buffer(offsets), pa.py_buffer(self.data)]
        )
        return binary.cast(pa.large_string())

    def joined(self, indices: Any) -> bytes:
        """The lines at ``indices`` (ascending), each ended by a line break."""
        parts = (self.data[self.starts[a] : self.ends[b - 1]] for a, b in runs(indices))
        return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)


def runs(indices: Any) -> list[tuple[int, int]]:
    """Ascending indices -> ``(first, stop)`` ranges of consecutive ones."""
    import numpy as np

    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1)
    firsts = np.concatenate(([0], breaks + 1))
    lasts = np.concatenate((breaks, [len(indices) - 1]))
    return [(int(indices[a]), int(indices[b]) + 1) for a, b in zip(firsts, lasts, strict=True)]


def split_lines(data: bytes) -> Lines | None:
    """``data`` split after every ``\\n``; ``None`` when a lone ``\\r`` (a line break for Python's
    universal newlines) would number the lines differently."""
    import numpy as np

    returns = data.count(b"\r")
    if returns and returns != data.count(b"\r\n"):
        return None
    breaks = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A).astype(np.int64)
    starts = np.concatenate(([0], breaks + 1)).astype(np.int64)
    ends = np.concatenate((breaks + 1, [len(data)])).astype(np.int64)
    if starts[-1] == len(data):  # nothing after the last line break
        starts, ends = starts[:-1], ends[:-1]
    return Lines(data, starts, ends)


def blocks(lines: Lines, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, int]]:
    """``(first, stop)`` line ranges of about ``block_bytes`` each, in order."""
    import numpy as np

    first, total = 0, len(lines)
    while first < total:
        limit = lines.starts[first] + block_bytes
        stop = max(first + 1, int(np.searchsorted(lines.ends, limit, side="right")))
        yield first, min(stop, total)
        first = stop


def read_json_lines(
    lines: Lines, indices: Any, parse_options: Any, max_failures: int = 64
) -> Iterator[tuple[Any, Any]]:
    """pyarrow's JSON reader over the lines at ``indices``, one object per line: yields
    ``(table, line indices of its rows)`` for what it reads, and ``(None, [i])`` for each line it
    cannot read on its own. A failing set is split at the row the error names (or in halves); after
    ``max_failures`` failures the lines left are yielded one by one as unread."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.json as pj

    pending, failures = [np.asarray(indices, dtype=np.int64)], 0
    while pending:
        part = pending.pop()
        if len(part) == 0:
            continue
        if failures >= max_failures:
            yield from ((None, part[i : i + 1]) for i in range(len(part)))
            continue
        data = lines.joined(part)
        options = pj.ReadOptions(use_threads=False, block_size=len(data) + 1)
        try:
            table = pj.read_json(pa.BufferReader(data), read_options=options, parse_options=parse_options)
            error = "" if table.num_rows == len(part) else "not one object per line"
        except (pa.ArrowException, ValueError) as err:
            error = str(err) or type(err).__name__
        if not error:
            yield table, part
        elif len(part) == 1:
            failures += 1
            yield None, part
        else:
            failures += 1
            pending.extend(reversed(_split(part, error)))


def _split(part: Any, error: str) -> list[Any]:
    hint = _ROW_HINT.search(error)
    row = int(hint.group(1)) if hint else -1
    if 0 <= row < len(part):
        return [part[:row], part[row : row + 1], part[row + 1 :]]
    half = len(part) // 2
    return [part[:half], part[half:]]


def iso_timestamps(values: Any) -> tuple[Any, Any]:
    """Strings -> (``timestamp[us, UTC]`` values, mask of the values that are exactly what
    ``datetime.fromisoformat(v.replace("Z", "+00:00"))`` gives, a naive time read as UTC).
    A value outside the mask is null; when pyarrow refuses one the mask is all false."""
    import pyarrow as pa
    import pyarrow.compute as pc

    utc = pa.timestamp("us", tz="UTC")
    values = values.cast(pa.string()) if values.type != pa.string() else values
    shaped = pc.fill_null(pc.match_substring_regex(values, _TIMESTAMP), False)
    zoned = pc.and_(shaped, pc.match_substring_regex(values, _ZONED))
    naive = pc.and_(shaped, pc.invert(zoned))
    try:
        null = pa.scalar(None, pa.string())
        with_zone = pc.if_else(zoned, values, null).cast(utc)
        without = pc.if_else(naive, values, null).cast(pa.timestamp("us")).cast(utc)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a date that does not exist, say
        return pa.nulls(len(values), utc), pa.array([False] * len(values))
    return pc.coalesce(with_zone, without), shaped

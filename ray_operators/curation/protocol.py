"""Tables, processing states, claims, commit keys and lineage of a curate run, for every engine.

A curate run writes four kinds of commits, each exactly once under its own key
(:class:`CommitKeys`), in this order:

1. ``<output>_processing``: a PROCESSING row per claimed unit (key ``<run key>/start``);
2. ``<output>``: the typed rows (the run key itself);
3. ``<output>_quarantine``: the lines that did not parse, with their reasons (``<run key>/quarantine``);
4. ``<output>_processing``: a SUCCESS row per claimed unit with its counts (``<run key>/end``), or,
   when the run fails after its claim, a FAILED row per unit with the error (``<run key>/failed``).

The processing table is an append-only log: a unit's status is its latest row. Which units a run
takes is :func:`plan_claim`'s one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ray_operators.contract.lineage import ENGINE
from ray_operators.contract.run_key import derived

PROCESSING = "PROCESSING"
SUCCESS = "SUCCESS"
FAILED = "FAILED"

#: A quarantined line keeps at most this many characters; an error text at most ERROR_LIMIT.
RAW_LINE_LIMIT = 10_000
ERROR_LIMIT = 2_000

#: ``(name, type)``; types are ``string``, ``long`` and ``timestamp`` (microseconds, UTC).
Columns = Sequence[tuple[str, str]]

QUARANTINE_COLUMNS: Columns = (
    ("source_file", "string"),
    ("line_number", "long"),
    ("raw_line", "string"),
    ("reason", "string"),
)
PROCESSING_COLUMNS: Columns = (
    ("folder", "string"),
    ("status", "string"),
    ("records_processed", "long"),
    ("records_quarantined", "long"),
    ("start_time", "timestamp"),
    ("end_time", "timestamp"),
    ("error", "string"),
    ("job_id", "string"),
    ("run_key", "string"),
)


def quarantine_table(output: str) -> str:
    return f"{output}_quarantine"


def processing_table(output: str) -> str:
    return f"{output}_processing"


def arrow_schema(columns: Columns) -> Any:
    """The pyarrow schema of ``columns`` (what the Ray engine creates its tables with)."""
    import pyarrow as pa

    kinds = {
        "string": pa.string(),
        "long": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }
    return pa.schema([(name, kinds[kind]) for name, kind in columns])


def spark_ddl(columns: Columns) -> str:
    """The Spark SQL column list of ``columns`` (Spark's ``TIMESTAMP_LTZ`` is Iceberg's
    ``timestamptz``, as pyarrow's UTC timestamp is: both engines create the same Iceberg schema,
    whatever ``spark.sql.timestampType`` says)."""
    kinds = {
        "string": "STRING",
        "long": "BIGINT",
        "double": "DOUBLE",
        "boolean": "BOOLEAN",
        "timestamp": "TIMESTAMP_LTZ",
        "date": "DATE",
    }
    return ", ".join(f"{name} {kinds[kind]}" for name, kind in columns)


@dataclass(frozen=True)
class CommitKeys:
    """The run key of each of a curate run's commits (see the module docstring)."""

    run_key: str

    @property
    def start(self) -> str:
        return derived(self.run_key, "start")

    @property
    def output(self) -> str:
        return self.run_key

    @property
    def quarantine(self) -> str:
        return derived(self.run_key, "quarantine")

    @property
    def failed(self) -> str:
        return derived(self.run_key, "failed")

    @property
    def end(self) -> str:
        return derived(self.run_key, "end")


@dataclass(frozen=True)
class Claim:
    """The units a run takes. ``retry``: this run key claimed them before (a retry of the run, which
    takes exactly its first claim, never more: its output may already be committed)."""

    claimed: list[str]
    done: list[str]
    rolled_back: list[str]
    retry: bool


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when(row: Mapping[str, Any]) -> datetime:
    return _utc(row["end_time"] or row["start_time"])


def plan_claim(
    rows: Iterable[Mapping[str, Any]], *, run_key: str, on_branch: set[str], found: Iterable[str]
) -> Claim:
    """Which of the ``found`` units this run curates.

    :param rows: the processing table's rows (any order; naive times are UTC).
    :param on_branch: the run keys committed on the curated table's branch
        (:func:`ray_operators.iceberg_snapshots.values_on_branch`).

    A unit is done when the run of its latest row (another run, whatever the row's status) has its
    curated commit on the branch: that commit holds every unit the run claimed, so a FAILED row
    written after it (the quarantine commit failed, a zombie try) does not undo it. After a rollback
    of the curated table the unit is curated again (the processing row alone is no proof). A run
    that claimed units before (a retry) takes exactly those that still exist.

    Two *different* runs that plan at the same moment can claim the same unit: pipelines run one at
    a time by default (``max_active_runs: 1``).
    """
    rows = list(rows)
    latest: dict[str, Mapping[str, Any]] = {}
    for row in sorted(rows, key=_when):
        latest[row["folder"]] = row
    own = sorted({r["folder"] for r in rows if r["run_key"] == run_key})
    done = sorted(f for f, r in latest.items() if r["run_key"] != run_key and r["run_key"] in on_branch)
    rolled_back = sorted(f for f, r in latest.items() if r["status"] == SUCCESS and f not in done)
    found = set(found)
    if own:
        return Claim([f for f in own if f in found], done, rolled_back, True)
    return Claim(sorted(f for f in found if f not in set(done)), done, rolled_back, False)


def processing_rows(
    claim: Claim,
    status: str,
    *,
    run_key: str,
    job_id: str,
    started: datetime,
    stats: Mapping[str, tuple[int, int]] | None = None,
    error: str | None = None,
) -> list[dict[str, Any]]:
    """One processing row per claimed unit. ``stats``: ``{unit: (curated, quarantined)}``."""
    if status not in (PROCESSING, SUCCESS, FAILED):
        raise ValueError(f"unknown processing status {status!r}")
    ended = None if status == PROCESSING else datetime.now(UTC)
    stats = stats or {}
    return [
        {
            "folder": unit,
            "status": status,
            "records_processed": int(stats.get(unit, (0, 0))[0]),
            "records_quarantined": int(stats.get(unit, (0, 0))[1]),
            "start_time": started,
            "end_time": ended,
            "error": error[:ERROR_LIMIT] if error else None,
            "job_id": job_id,
            "run_key": run_key,
        }
        for unit in claim.claimed
    ]


def lineage(base: Mapping[str, str], engine: str, **extra: str) -> dict[str, str]:
    """The snapshot properties of every commit of a curate run: the stage spec's lineage
    (:meth:`~ray_operators.contract.spec.StageSpec.lineage_properties`), the engine, and the
    engine's own ids (``lakehouse.spark-app-id``...)."""
    return {**base, ENGINE: engine, **extra}


def result(
    engine: str, claim: Claim, output: Mapping[str, Any], quarantine: Mapping[str, Any]
) -> dict[str, Any]:
    """What a curate run reports (the task's XCom ``result``), the same for every engine.
    ``output``/``quarantine``: ``{"table", "snapshot_id", "rows", "skipped"}`` of the two commits."""
    return {
        "stage": "curate",
        "engine": engine,
        "folders": list(claim.claimed),
        "skipped_folders": list(claim.done),
        "output": dict(output),
        "quarantine": dict(quarantine),
        "rows_in": int(output["rows"]) + int(quarantine["rows"]),
        "rows_out": int(output["rows"]),
        "quarantined": int(quarantine["rows"]),
    }

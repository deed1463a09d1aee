"""Stage 1, curate, on Ray: raw files -> a typed Iceberg table, by the curation protocol
(:mod:`ray_operators.curation`), which the Spark engine implements too.

New units (``spark-*`` folders of Spark application logs, or files of a tabular format) are
discovered under every raw root; a unit whose latest status in the processing-metadata table is
SUCCESS (and whose curated commit is still on the branch) is skipped. Every line is either a typed
row or a quarantined line with its reason; nothing is dropped silently and a bad line never fails
the job.

Tables (``<output>`` is the spec's output table):
- ``<output>``: for ``spark_logs``, timestamp, log_level, message, pod_name, namespace_name, app,
  spark_app_selector, spark_role, spark_version, submission_id, source_folder;
- ``<output>_quarantine``: source_file, line_number, raw_line, reason;
- ``<output>_processing``: folder, status (PROCESSING/SUCCESS/FAILED), records_processed,
  records_quarantined, start_time, end_time, error, job_id, run_key (an append-only log: a
  unit's status is its latest row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from ray_operators.contract.lineage import RUN_KEY, SUBMISSION_ID
from ray_operators.contract.spec import StageSpec
from ray_operators.curation import protocol, spark_logs
from ray_operators.iceberg_snapshots import values_on_branch
from ray_operators.jobs.write import commit_exactly_once, ensure_table

ENGINE = "ray"


def schemas():
    """(curated ``spark_logs``, quarantine, processing) pyarrow schemas."""
    return (
        protocol.arrow_schema(spark_logs.CURATED_COLUMNS),
        protocol.arrow_schema(protocol.QUARANTINE_COLUMNS),
        protocol.arrow_schema(protocol.PROCESSING_COLUMNS),
    )


def parse_file(item: dict[str, Any], properties: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """flat_map UDF: one log file -> its records (:func:`ray_operators.curation.spark_logs.records`).
    ``properties``: the catalog's, for opening ``s3://`` raw files like its data files."""
    from ray_operators.jobs import storage

    fs, path = storage.filesystem(item["path"], properties)
    return list(spark_logs.records(item["path"], item["unit"], fs.open_input_stream(path)))


@dataclass(frozen=True)
class _Format:
    """What differs between raw formats: how units are found, what a task gets, how a file is
    parsed and how a parsed record becomes a row of the curated table."""

    schema: Any
    units: Callable[[], dict[str, list[str]]]
    item: Callable[[str, str], dict[str, Any]]
    parse: Callable[[dict[str, Any]], list[dict[str, Any]]]
    typed: Callable[[dict[str, Any]], dict[str, Any]]


def _spark_logs(spec: StageSpec) -> _Format:
    props = spec.storage_properties()
    return _Format(
        schema=schemas()[0],
        units=lambda: spark_logs.discover_all(spec.raw_paths, props),
        item=lambda unit, path: {"path": path, "unit": unit},
        parse=partial(parse_file, properties=props),
        typed=spark_logs.typed_row,
    )


def _tabular(spec: StageSpec, pattern: str | None) -> _Format:
    from ray_operators.contract.spec import StageError
    from ray_operators.jobs import tabular

    try:
        fmt, columns, required = tabular.declared(spec.params)
    except tabular.TabularError as err:
        raise StageError(str(err)) from None
    props = spec.storage_properties()

    def units() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for root in spec.raw_paths:
            found.update(tabular.discover(root, fmt, pattern, props))
        return found

    encoded = {"columns": json.dumps(columns), "required": json.dumps(required), "format": fmt}
    return _Format(
        schema=tabular.arrow_schema(columns),
        units=units,
        item=lambda unit, path: {"path": path, "unit": unit, **encoded},
        parse=partial(tabular.parse_file, properties=props),
        typed=partial(tabular.typed, columns=columns),
    )


def run(spec: StageSpec) -> dict[str, Any]:
    """Curate the raw roots' new units (Spark-log folders, or files of a tabular format)."""
    params = spec.typed_params()  # the defaults live in the contract (CurateParams)
    if str(params.format).lower() == "spark_logs":
        return _curate(spec, _spark_logs(spec))
    return _curate(spec, _tabular(spec, params.pattern))


def _claim(spec: StageSpec, fmt: _Format) -> tuple[protocol.Claim, dict[str, list[str]]]:
    out = spec.output_table
    curated = ensure_table(spec, out, fmt.schema)
    ensure_table(spec, protocol.quarantine_table(out), schemas()[1])
    processing = ensure_table(spec, protocol.processing_table(out), schemas()[2])
    claim = protocol.plan_claim(
        processing.scan().to_arrow().to_pylist(),
        run_key=spec.run_key,
        on_branch=values_on_branch(curated.metadata, RUN_KEY),
        found=(found := fmt.units()),
    )
    if claim.rolled_back and not claim.retry:
        print(
            f"units whose curated commit is no longer on {out}'s branch, curated again: {claim.rolled_back}"
        )
    return claim, found


def _curate(spec: StageSpec, fmt: _Format) -> dict[str, Any]:
    import ray

    out = spec.output_table
    keys = protocol.CommitKeys(spec.run_key)
    claim, found = _claim(spec, fmt)
    base = spec.lineage_properties()
    mark = partial(
        _mark,
        spec,
        claim,
        job_id=base[SUBMISSION_ID],
        started=datetime.now(UTC),
        table=protocol.processing_table(out),
    )
    mark(protocol.PROCESSING, keys.start, empty_too=True)
    lineage = protocol.lineage(base, ENGINE)
    try:
        files = [fmt.item(unit, path) for unit in claim.claimed for path in found[unit]]
        parsed = ray.data.from_items(files).flat_map(fmt.parse).materialize() if files else None
        good = bad = None
        if parsed is not None:
            good = parsed.filter(lambda r: r["row"] is not None).map_batches(
                _TypedBatch(fmt.typed, fmt.schema), batch_format="pyarrow"
            )
            bad = parsed.filter(lambda r: r["row"] is None).map(spark_logs.quarantine_row)
        logs_result = commit_exactly_once(spec, good, schema=fmt.schema, extra_properties=lineage)
        q_result = commit_exactly_once(
            spec.with_run_key(keys.quarantine),
            bad,
            table=protocol.quarantine_table(out),
            schema=schemas()[1],
            extra_properties={**lineage, RUN_KEY: keys.quarantine},
        )
        stats = _per_unit(parsed) if parsed is not None else {}
    except Exception as err:
        mark(protocol.FAILED, keys.failed, error=str(err))
        raise
    mark(protocol.SUCCESS, keys.end, stats=stats)
    return protocol.result(ENGINE, claim, logs_result, q_result)


def _mark(
    spec: StageSpec,
    claim: protocol.Claim,
    status: str,
    key: str,
    *,
    table: str,
    job_id: str,
    started: datetime,
    stats: dict[str, tuple[int, int]] | None = None,
    error: str | None = None,
    empty_too: bool = False,
) -> None:
    """Commit the claimed units' processing rows under ``key`` (an empty commit for no units when
    ``empty_too``: the run's start is recorded even when it found nothing to curate)."""
    import pyarrow as pa
    import ray

    if not claim.claimed and not empty_too:
        return
    rows = protocol.processing_rows(
        claim, status, run_key=spec.run_key, job_id=job_id, started=started, stats=stats, error=error
    )
    data = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=schemas()[2])) if rows else None
    lineage = protocol.lineage(spec.lineage_properties(), ENGINE)
    commit_exactly_once(spec.with_run_key(key), data, table=table, extra_properties={**lineage, RUN_KEY: key})


class _TypedBatch:
    """Records -> typed rows, built into Arrow with the declared schema (so a column that mixes
    values and nulls, or tz-aware datetimes, never falls back to pickled Python objects)."""

    def __init__(self, typed: Any, schema: Any) -> None:
        self.typed = typed
        self.schema = schema

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        return pa.Table.from_pylist([self.typed(r) for r in batch.to_pylist()], schema=self.schema)


def _per_unit(parsed: Any) -> dict[str, tuple[int, int]]:
    """(good, quarantined) records per unit (folder or file)."""
    counts = parsed.map(
        lambda r: {"unit": r["unit"], "good": int(r["row"] is not None), "bad": int(r["row"] is None)}
    )
    stats = {}
    for row in counts.groupby("unit").sum(["good", "bad"]).take_all():
        stats[row["unit"]] = (int(row["sum(good)"]), int(row["sum(bad)"]))
    return stats

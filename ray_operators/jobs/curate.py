"""Stage 1, curate, on Ray: raw files -> a typed Iceberg table, by the curation protocol
(:mod:`ray_operators.curation`), which the Spark engine implements too.

New units (``spark-*`` folders of Spark application logs, or files of a tabular format) are
discovered under every raw root; a unit whose latest status in the processing-metadata table is
SUCCESS (and whose curated commit is still on the branch) is skipped. Every line is either a typed
row or a quarantined line with its reason; nothing is dropped silently and a bad line never fails
the job.

Every claimed file is parsed once, in Ray tasks (or, when the claimed files are small, in the
driver: the ``local_max_bytes`` stage param, :mod:`ray_operators.jobs.execution`), into Arrow
tables of curated rows and quarantined records (with pyarrow's readers where they can vouch for
a line, the row parser elsewhere: the ``fast_path`` stage param); the two commits write from
those tables, and the processing rows' counts come from the same parse.

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
from typing import Any, Protocol

from ray_operators.contract.lineage import RUN_KEY, SUBMISSION_ID
from ray_operators.contract.spec import StageSpec
from ray_operators.curation import protocol, spark_logs, spark_logs_fast
from ray_operators.iceberg_snapshots import values_on_branch
from ray_operators.jobs import execution, storage
from ray_operators.jobs.write import commit_exactly_once, ensure_table

ENGINE = "ray"


def schemas():
    """(curated ``spark_logs``, quarantine, processing) pyarrow schemas."""
    return (
        protocol.arrow_schema(spark_logs.CURATED_COLUMNS),
        protocol.arrow_schema(protocol.QUARANTINE_COLUMNS),
        protocol.arrow_schema(protocol.PROCESSING_COLUMNS),
    )


def parse_file(
    item: dict[str, Any], properties: dict[str, str] | None = None, fast: bool = True
) -> tuple[Any, Any]:
    """One log file -> (curated rows, quarantined lines) as Arrow tables
    (:func:`ray_operators.curation.spark_logs_fast.curate_file`: pyarrow where it can vouch for a
    line, the shared row parser ``spark_logs.records`` elsewhere, or everywhere when not ``fast``).
    ``properties``: the catalog's, for opening ``s3://`` raw files like its data files."""
    data = storage.read_bytes(item["path"], properties)
    if data is None:
        raise FileNotFoundError(f"raw file {item['path']} disappeared after discovery")
    return spark_logs_fast.curate_file(item["path"], item["unit"], data, fast=fast)


class CurationFormat(Protocol):
    """What differs between raw formats: how units are found, what a parse task gets, and how a
    file becomes Arrow tables of curated rows (``schema``) and quarantined records."""

    @property
    def schema(self) -> Any: ...

    def units(self) -> dict[str, list[str]]:
        """``{unit: [file paths]}`` under every raw root."""
        ...

    def item(self, unit: str, path: str) -> dict[str, Any]:
        """What the parse task of one file gets (plain data: it travels to a Ray task)."""
        ...

    def parser(self) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
        """The parse function: a picklable callable of an item, run in Ray tasks or the driver."""
        ...


@dataclass(frozen=True)
class SparkLogsFormat:
    """Spark application logs: a unit is a ``spark-*`` folder."""

    spec: StageSpec
    fast: bool

    @property
    def schema(self) -> Any:
        return schemas()[0]

    def units(self) -> dict[str, list[str]]:
        return spark_logs.discover_all(self.spec.raw_paths, self.spec.storage_properties())

    def item(self, unit: str, path: str) -> dict[str, Any]:
        return {"path": path, "unit": unit}

    def parser(self) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
        return partial(parse_file, properties=self.spec.storage_properties(), fast=self.fast)


@dataclass(frozen=True)
class TabularFormat:
    """CSV, JSON lines or Parquet files of declared columns: a unit is a file."""

    spec: StageSpec
    pattern: str | None
    fast: bool
    format: str
    columns: dict[str, str]
    required: list[str]

    @classmethod
    def declared(cls, spec: StageSpec, pattern: str | None, fast: bool) -> TabularFormat:
        from ray_operators.contract.spec import StageError
        from ray_operators.jobs import tabular

        try:
            fmt, columns, required = tabular.declared(spec.params)
        except tabular.TabularError as err:
            raise StageError(str(err)) from None
        return cls(spec, pattern, fast, fmt, columns, required)

    @property
    def schema(self) -> Any:
        from ray_operators.jobs import tabular

        return tabular.arrow_schema(self.columns)

    def units(self) -> dict[str, list[str]]:
        from ray_operators.jobs import tabular

        found: dict[str, list[str]] = {}
        for root in self.spec.raw_paths:
            found.update(tabular.discover(root, self.format, self.pattern, self.spec.storage_properties()))
        return found

    def item(self, unit: str, path: str) -> dict[str, Any]:
        encoded = {"columns": json.dumps(self.columns), "required": json.dumps(self.required)}
        return {"path": path, "unit": unit, **encoded, "format": self.format}

    def parser(self) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
        from ray_operators.jobs import tabular

        return partial(tabular.curate_file, properties=self.spec.storage_properties(), fast=self.fast)


def run(spec: StageSpec) -> dict[str, Any]:
    """Curate the raw roots' new units (Spark-log folders, or files of a tabular format)."""
    params = spec.typed_params()  # the defaults live in the contract (CurateParams)
    if str(params.format).lower() == "spark_logs":
        return _curate(spec, SparkLogsFormat(spec, params.fast_path))
    return _curate(spec, TabularFormat.declared(spec, params.pattern, params.fast_path))


def _claim(spec: StageSpec, fmt: CurationFormat) -> tuple[protocol.Claim, dict[str, list[str]]]:
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


def _curate(spec: StageSpec, fmt: CurationFormat) -> dict[str, Any]:
    out = spec.output_table
    keys = protocol.CommitKeys(spec.run_key)
    claim, found = _claim(spec, fmt)
    base = spec.lineage_properties()
    files = [fmt.item(unit, path) for unit in claim.claimed for path in found[unit]]
    local = execution.runs_locally(
        storage.total_size([f["path"] for f in files], spec.storage_properties()),
        spec.typed_params().local_max_bytes,
    )
    if local:
        print(f"{len(files)} raw file(s): parsed and committed in the job's driver", flush=True)
    mark = partial(
        _mark,
        spec,
        claim,
        job_id=base[SUBMISSION_ID],
        started=datetime.now(UTC),
        table=protocol.processing_table(out),
        local=local,
    )
    mark(protocol.PROCESSING, keys.start, empty_too=True)
    lineage = protocol.lineage(base, ENGINE)
    try:
        good, bad, stats = _parse_all(files, fmt.parser(), local=local)
        logs_result = commit_exactly_once(spec, good, schema=fmt.schema, extra_properties=lineage)
        q_result = commit_exactly_once(
            spec.with_run_key(keys.quarantine),
            bad,
            table=protocol.quarantine_table(out),
            schema=schemas()[1],
            extra_properties={**lineage, RUN_KEY: keys.quarantine},
        )
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
    local: bool = False,
) -> None:
    """Commit the claimed units' processing rows under ``key`` (an empty commit for no units when
    ``empty_too``: the run's start is recorded even when it found nothing to curate)."""
    import pyarrow as pa

    if not claim.claimed and not empty_too:
        return
    rows = protocol.processing_rows(
        claim, status, run_key=spec.run_key, job_id=job_id, started=started, stats=stats, error=error
    )
    data = (
        execution.from_arrow(pa.Table.from_pylist(rows, schema=schemas()[2]), local=local) if rows else None
    )
    lineage = protocol.lineage(spec.lineage_properties(), ENGINE)
    commit_exactly_once(spec.with_run_key(key), data, table=table, extra_properties={**lineage, RUN_KEY: key})


def _parse_all(
    files: list[dict[str, Any]], parse: Callable, *, local: bool = False
) -> tuple[Any, Any, dict[str, tuple[int, int]]]:
    """Parse every file once, in Ray tasks over groups of files (``local``: here, as one group):
    (curated rows and quarantined records as datasets over the Arrow tables,
    ``{unit: (curated, quarantined)}``). The commits write from those tables; nothing is parsed
    twice. ``(None, None, {})`` for no files."""
    if not files:
        return None, None, {}
    if local:
        good, bad, unit_counts = _parse_group(files, parse)
        return execution.from_arrow(good, local=True), execution.from_arrow(bad, local=True), unit_counts
    import ray

    execution.warm_workers()
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = min(len(files), 4 * cpus)  # a few tasks per CPU: balanced, and few large blocks
    task = ray.remote(num_returns=3)(_parse_group)
    refs: list[Any] = [task.remote(files[i::count], parse) for i in range(count)]  # 3 refs each
    stats: dict[str, tuple[int, int]] = {}
    for counts in ray.get([r[2] for r in refs]):
        for unit, (good, bad) in counts.items():
            before = stats.get(unit, (0, 0))
            stats[unit] = (before[0] + good, before[1] + bad)
    good = ray.data.from_arrow_refs([r[0] for r in refs])
    return good, ray.data.from_arrow_refs([r[1] for r in refs]), stats


def _parse_group(items: list[dict[str, Any]], parse: Callable) -> tuple[Any, Any, dict[str, tuple[int, int]]]:
    """A Ray task: files -> (their curated rows, their quarantined records, counts per unit)."""
    import pyarrow as pa

    goods: list[Any] = []
    bads: list[Any] = []
    counts: dict[str, tuple[int, int]] = {}
    for item in items:
        good, bad = parse(item)
        goods.append(good)
        bads.append(bad)
        before = counts.get(item["unit"], (0, 0))
        counts[item["unit"]] = (before[0] + good.num_rows, before[1] + bad.num_rows)
    return pa.concat_tables(goods), pa.concat_tables(bads), counts

"""PySpark application: the curate stage on Spark, by the curation protocol
(:mod:`ray_operators.curation`), which the Ray curate stage implements too.

``spark-submit curate_spark_logs.py --spec <base64 stage spec>``, submitted by
``SparkCurateOperator`` with the Iceberg Spark runtime and ``ray_operators`` on ``--py-files``.

What the protocol gives it, and the Ray stage the same: the tables and their columns, discovery of
the raw units under every raw root, the claim (a retry takes exactly its first claim), the
PROCESSING/SUCCESS/FAILED rows, the line parser and quarantine reasons, the commit keys and lineage.
What is Spark's own: Spark reads the claimed files (``binaryFile``) and parses them in its tasks,
and every commit goes through Iceberg's write-audit-publish:

1. the run key is looked up on the branch (the shared ancestry walk over Spark's ``snapshots``,
   ``refs`` and ``history`` metadata tables); when it is there, nothing is written;
2. the write is staged with ``spark.wap.id`` = the commit's run key: a snapshot that is not on
   the branch;
3. ``CALL <catalog>.system.cherrypick_snapshot`` publishes it. Iceberg refuses to publish a WAP id
   that is already on the branch's ancestry, and checks that again on every commit retry against
   the refreshed table, so two tries of one run (a zombie driver and its retry) cannot both
   commit: the loser gets ``DuplicateWAPCommitException`` and reports the winner's snapshot.

The catalog is the stage spec's ``catalog_name``, configured by the operator through
``spark.sql.catalog.<name>.*`` (see ``ray_operators.spark.conf``).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

ENGINE = "spark"
WAP_ENABLED = "write.wap.enabled"
#: A staged snapshot's own mark: two tries of one run stage under the same WAP id.
STAGED_BY = "lakehouse.staged-by"


class SparkTables:
    """The stage's Iceberg tables as Spark sees them: create, read metadata, write exactly once."""

    def __init__(self, spark: Any, catalog: str) -> None:
        self.spark = spark
        self.catalog = catalog

    def full(self, table: str) -> str:
        return f"{self.catalog}.{table}"

    def ensure(self, table: str, ddl: str) -> None:
        """Create ``table`` (``namespace.name``) when missing; turn on write-audit-publish."""
        namespace = table.rpartition(".")[0]
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.catalog}.{namespace}")
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self.full(table)} ({ddl}) USING iceberg "
            f"TBLPROPERTIES ('{WAP_ENABLED}'='true')"
        )
        props = {
            r["key"]: r["value"] for r in self.spark.sql(f"SHOW TBLPROPERTIES {self.full(table)}").collect()
        }
        if props.get(WAP_ENABLED) != "true":  # created by another engine
            self.spark.sql(f"ALTER TABLE {self.full(table)} SET TBLPROPERTIES ('{WAP_ENABLED}'='true')")

    def metadata(self, table: str) -> Any:
        """What :mod:`ray_operators.iceberg_snapshots` walks: snapshots, refs and the history log."""
        full = self.full(table)
        snapshots = [
            SimpleNamespace(
                snapshot_id=r["snapshot_id"],
                parent_snapshot_id=r["parent_id"],
                sequence_number=None,
                timestamp_ms=r["ms"],
                summary=dict(r["summary"] or {}),
            )
            for r in self.spark.sql(
                f"SELECT snapshot_id, parent_id, unix_millis(committed_at) AS ms, summary FROM {full}.snapshots"
            ).collect()
        ]
        refs = {
            r["name"]: SimpleNamespace(snapshot_id=r["snapshot_id"])
            for r in self.spark.sql(f"SELECT name, snapshot_id FROM {full}.refs").collect()
        }
        log = [
            SimpleNamespace(snapshot_id=r["snapshot_id"])
            for r in self.spark.sql(f"SELECT snapshot_id FROM {full}.history").collect()
        ]
        return SimpleNamespace(snapshots=snapshots, refs=refs, snapshot_log=log)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The table's rows; timestamps as UTC datetimes (PySpark's own conversion uses the local zone)."""
        frame = self.spark.table(self.full(table))
        stamps = [f.name for f in frame.schema.fields if f.dataType.typeName() == "timestamp"]
        columns = [f"unix_micros({c}) AS {c}" if c in stamps else c for c in frame.columns]
        out = []
        for row in frame.selectExpr(*columns).collect():
            record = row.asDict()
            for c in stamps:
                if record[c] is not None:
                    record[c] = datetime.fromtimestamp(record[c] / 1_000_000, UTC)
            out.append(record)
        return out

    def write_once(self, frame: Any, table: str, key: str, properties: dict[str, str]) -> dict[str, Any]:
        """Append ``frame`` as one commit carrying run key ``key``, unless the branch has it; return
        ``{"table", "snapshot_id", "rows", "skipped"}`` of the commit that carries it."""
        from ray_operators.contract.lineage import REPLACES_ROLLED_BACK, RUN_KEY
        from ray_operators.iceberg_snapshots import committed_with, rolled_back_ids

        metadata = self.metadata(table)
        if (done := committed_with(metadata, RUN_KEY, key)) is not None:
            print(f"{table}: run key {key} already committed, writing nothing", flush=True)
            return _facts(table, done, skipped=True)
        props = {**properties, RUN_KEY: key}
        if gone := rolled_back_ids(metadata, RUN_KEY, key):
            props[REPLACES_ROLLED_BACK] = ",".join(str(s) for s in gone)
        return self.publish(table, key, self.stage(frame, table, key, props))

    def stage(self, frame: Any, table: str, key: str, props: dict[str, str]) -> int:
        """Write ``frame`` as a staged (unpublished) snapshot with WAP id ``key``; its id. The
        snapshot is told apart from another try's staging of the same key by a mark of its own."""
        import uuid

        mark = uuid.uuid4().hex
        self.spark.conf.set("spark.wap.id", key)
        try:
            writer = frame.writeTo(self.full(table))
            for name, value in {**props, STAGED_BY: mark}.items():
                writer = writer.option(f"snapshot-property.{name}", value)
            writer.append()
        finally:
            self.spark.conf.unset("spark.wap.id")
        staged = [s.snapshot_id for s in self.metadata(table).snapshots if s.summary.get(STAGED_BY) == mark]
        if len(staged) != 1:
            from ray_operators.contract.spec import StageError

            raise StageError(f"{table}: the staged write of {key} left {len(staged)} snapshots, not one")
        return staged[0]

    def publish(self, table: str, key: str, staged: int) -> dict[str, Any]:
        """Cherry-pick the staged snapshot onto the branch, once per WAP id (see the module docstring)."""
        from ray_operators.contract.lineage import RUN_KEY
        from ray_operators.iceberg_snapshots import committed_with

        skipped = False
        try:
            self.spark.sql(f"CALL {self.catalog}.system.cherrypick_snapshot('{table}', {staged})").collect()
        except Exception as err:
            if "DuplicateWAPCommitException" not in str(err):
                raise
            # Another try of this run published the same key first: that commit stands, ours is
            # left staged (off the branch, never read).
            print(
                f"{table}: run key {key} was published by another try meanwhile, writing nothing", flush=True
            )
            skipped = True
        snap = committed_with(self.metadata(table), RUN_KEY, key)
        if snap is None:
            from ray_operators.contract.spec import StageError

            raise StageError(f"published {table} but found no snapshot carrying run key {key}")
        return _facts(table, snap, skipped=skipped)


def _facts(table: str, snap: Any, *, skipped: bool) -> dict[str, Any]:
    added = (snap.summary or {}).get("added-records") or 0
    return {"table": table, "snapshot_id": int(snap.snapshot_id), "rows": int(added), "skipped": skipped}


def spark_path(uri: str) -> str:
    """A discovered raw file's URI as Spark's Hadoop file systems name it, its glob characters
    escaped (Spark reads a path as a glob)."""
    if uri.startswith("s3://"):
        uri = "s3a://" + uri[len("s3://") :]
    elif "://" not in uri:
        uri = "file://" + uri
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", uri)


def _same_file(path: str, *, from_spark: bool = False) -> str:
    """One spelling for a file however Spark or pyarrow wrote it (``file:/p`` = ``file:///p`` = ``/p``;
    Spark's ``path`` column is percent-encoded)."""
    if from_spark:
        from urllib.parse import unquote

        path = unquote(path)
    if path.startswith("file:"):
        return "/" + path[len("file:") :].lstrip("/")
    if path.startswith("s3a://"):
        return "s3://" + path[len("s3a://") :]
    return path


def parse_claimed(spark: Any, claimed: list[str], found: dict[str, list[str]]) -> Any:
    """The claimed units' records (an RDD of :func:`ray_operators.curation.spark_logs.records`
    dicts), cached: Spark reads the files, the shared parser parses them. Records name their file
    by its discovered URI, exactly as the Ray engine does."""
    from ray_operators.curation import spark_logs

    files = {_same_file(uri): (unit, uri) for unit in claimed for uri in found[unit]}
    if not files:
        return spark.sparkContext.emptyRDD()

    def parse(row: Any) -> Any:
        unit, uri = files[_same_file(row.path, from_spark=True)]
        return spark_logs.records(uri, unit, io.BytesIO(row.content))

    frame = spark.read.format("binaryFile").load([spark_path(uri) for _, uri in files.values()])
    return frame.select("path", "content").rdd.flatMap(parse).cache()


def curate(spark: Any, spec: Any) -> dict[str, Any]:
    """One curate run on Spark (see the module docstring)."""
    from ray_operators.contract.lineage import RUN_KEY, SPARK_APP_ID
    from ray_operators.contract.spec import StageError
    from ray_operators.curation import protocol, spark_logs
    from ray_operators.iceberg_snapshots import values_on_branch

    if str(spec.typed_params().format).lower() != "spark_logs":
        raise StageError("the Spark curate engine curates format spark_logs only")
    tables = SparkTables(spark, spec.catalog_name)
    out = spec.output_table
    quarantine, processing = protocol.quarantine_table(out), protocol.processing_table(out)
    tables.ensure(out, protocol.spark_ddl(spark_logs.CURATED_COLUMNS))
    tables.ensure(quarantine, protocol.spark_ddl(protocol.QUARANTINE_COLUMNS))
    tables.ensure(processing, protocol.spark_ddl(protocol.PROCESSING_COLUMNS))

    keys = protocol.CommitKeys(spec.run_key)
    app_id = spark.sparkContext.applicationId
    lineage = protocol.lineage(spec.lineage_properties(), ENGINE, **{SPARK_APP_ID: app_id})
    found = spark_logs.discover_all(spec.raw_paths, spec.storage_properties())
    claim = protocol.plan_claim(
        tables.rows(processing),
        run_key=spec.run_key,
        on_branch=values_on_branch(tables.metadata(out), RUN_KEY),
        found=found,
    )
    if claim.rolled_back and not claim.retry:
        print(
            f"units whose curated commit is no longer on {out}'s branch, curated again: {claim.rolled_back}"
        )
    started = datetime.now(UTC)

    def mark(status: str, key: str, **kwargs: Any) -> None:
        rows = protocol.processing_rows(
            claim, status, run_key=spec.run_key, job_id=app_id, started=started, **kwargs
        )
        schema = spark.table(tables.full(processing)).schema
        frame = spark.createDataFrame([tuple(r[f.name] for f in schema) for r in rows], schema)
        tables.write_once(frame, processing, key, lineage)

    mark(protocol.PROCESSING, keys.start)
    try:
        parsed = parse_claimed(spark, claim.claimed, found)
        good_schema = spark.table(tables.full(out)).schema
        bad_schema = spark.table(tables.full(quarantine)).schema
        good = spark.createDataFrame(
            parsed.filter(lambda r: r["row"] is not None).map(
                lambda r: tuple(spark_logs.typed_row(r)[f.name] for f in good_schema)
            ),
            good_schema,
        )
        bad = spark.createDataFrame(
            parsed.filter(lambda r: r["row"] is None).map(
                lambda r: tuple(spark_logs.quarantine_row(r)[f.name] for f in bad_schema)
            ),
            bad_schema,
        )
        output = tables.write_once(good, out, keys.output, lineage)
        quarantined = tables.write_once(bad, quarantine, keys.quarantine, lineage)
        stats = dict(
            parsed.map(lambda r: (r["unit"], (int(r["row"] is not None), int(r["row"] is None))))
            .reduceByKey(lambda a, b: (a[0] + b[0], a[1] + b[1]))
            .collect()
        )
    except Exception as err:
        if claim.claimed:
            mark(protocol.FAILED, keys.failed, error=str(err))
        raise
    if claim.claimed:
        mark(protocol.SUCCESS, keys.end, stats=stats)
    return protocol.result(ENGINE, claim, output, quarantined)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="base64 JSON stage spec")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession

    from ray_operators.contract.result import report_result
    from ray_operators.contract.spec import StageSpec

    spec = StageSpec.decode(args.spec)
    spark = (
        SparkSession.builder.appName(f"curate {spec.output_table}")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        result = curate(spark, spec)
    finally:
        spark.stop()
    report_result(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

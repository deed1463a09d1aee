"""PySpark application: the curate stage on Spark (raw Spark logs -> typed Iceberg tables).

``spark-submit curate_spark_logs.py --spec <base64 stage spec>``, submitted by
``SparkCurateOperator`` with the Iceberg Spark runtime and ``ray_operators`` on ``--py-files``.

Same contract and tables as the Ray curate stage (``ray_operators.jobs.curate``):
- ``<output>`` (typed rows), ``<output>_quarantine`` (line, reason), ``<output>_processing``
  (folder, status, counts, times, job id, run key);
- lines are parsed by ``ray_operators.jobs.curate.parse_line`` itself, so both variants agree on
  what is valid and on the quarantine reasons;
- every commit carries the lineage properties of the stage spec as Iceberg snapshot properties
  (``snapshot-property.*`` write options), and a table that already holds a snapshot with this
  run key is not written again: a retried or re-run task never duplicates rows.

The catalog is the stage spec's ``catalog_name``, configured by the operator through
``spark.sql.catalog.<name>.*`` (see ``ray_operators.spark.conf``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def committed(spark: Any, table: str, run_key: str) -> bool:
    """Whether ``table`` already holds a snapshot written under ``run_key``."""
    from ray_operators.contract.lineage import RUN_KEY

    rows = spark.sql(f"SELECT summary FROM {table}.snapshots").collect()
    return any((row["summary"] or {}).get(RUN_KEY) == run_key for row in rows)


def write_once(spark: Any, frame: Any, table: str, properties: dict[str, str]) -> bool:
    """Append ``frame`` with lineage, unless this run key is there already. True when written."""
    from ray_operators.contract.lineage import RUN_KEY

    if committed(spark, table, properties[RUN_KEY]):
        print(f"{table}: run key {properties[RUN_KEY]} already committed, writing nothing", flush=True)
        return False
    writer = frame.writeTo(table)
    for key, value in properties.items():
        writer = writer.option(f"snapshot-property.{key}", value)
    writer.append()
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="base64 JSON stage spec")
    args = parser.parse_args(argv)

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from ray_operators.contract.lineage import RUN_KEY
    from ray_operators.contract.result import report_result
    from ray_operators.contract.spec import StageSpec
    from ray_operators.jobs.curate import parse_line

    spec = StageSpec.decode(args.spec)
    spark = SparkSession.builder.appName(f"curate {spec.output_table}").getOrCreate()
    cat = spec.catalog_name
    out = f"{cat}.{spec.output_table}"
    namespace = spec.output_table.rpartition(".")[0]
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {cat}.{namespace}")
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {out} (timestamp TIMESTAMP, log_level STRING, message STRING, "
        "pod_name STRING, namespace_name STRING, app STRING, spark_app_selector STRING, spark_role STRING, "
        "spark_version STRING, submission_id STRING, source_folder STRING) USING iceberg"
    )
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {out}_quarantine (source_file STRING, line_number BIGINT, "
        "raw_line STRING, reason STRING) USING iceberg"
    )
    spark.sql(
        f"CREATE TABLE IF NOT EXISTS {out}_processing (folder STRING, status STRING, records_processed BIGINT, "
        "records_quarantined BIGINT, start_time TIMESTAMP, end_time TIMESTAMP, error STRING, job_id STRING, "
        "run_key STRING) USING iceberg"
    )
    lineage = spec.lineage_properties()
    lineage["lakehouse.engine"] = "spark"
    lineage["lakehouse.spark-app-id"] = spark.sparkContext.applicationId
    started = datetime.now(UTC)

    done = {
        row["folder"]
        for row in spark.sql(
            f"SELECT folder, status, run_key, ROW_NUMBER() OVER (PARTITION BY folder ORDER BY "
            f"COALESCE(end_time, start_time) DESC) AS n FROM {out}_processing"
        )
        .where("n = 1 AND status = 'SUCCESS'")
        .where(F.col("run_key") != spec.run_key)
        .collect()
    }
    root = spec.raw_paths[0].rstrip("/")
    lines = (
        spark.read.text(f"{root}/spark-*/*.log")
        .withColumn("source_file", F.input_file_name())
        .withColumn("source_folder", F.regexp_extract("source_file", r"/(spark-[^/]+)/[^/]+$", 1))
        .where(~F.col("source_folder").isin(sorted(done)) if done else F.lit(True))
    )

    def parse_partition(rows: Any) -> Any:
        # Line numbers come from the file; Spark's text reader loses them, so number per file here.
        numbers: dict[str, int] = {}
        for row in rows:
            numbers[row.source_file] = numbers.get(row.source_file, 0) + 1
            if not row.value.strip():
                continue
            parsed, reason = parse_line(row.value)
            yield (
                json.dumps(parsed, default=str) if parsed else None,
                reason,
                row.source_file,
                row.source_folder,
                numbers[row.source_file],
                row.value[:10_000],
            )

    parsed = (
        lines.rdd.mapPartitions(parse_partition)
        .toDF(
            "row STRING, reason STRING, source_file STRING, source_folder STRING, line_number BIGINT, raw STRING"
        )
        .cache()
    )
    good_schema = spark.table(out).schema
    good = (
        parsed.where("row IS NOT NULL")
        .select(F.from_json("row", good_schema).alias("r"), "source_folder")
        .select(
            *[F.col(f"r.{f.name}").alias(f.name) for f in good_schema if f.name != "source_folder"],
            "source_folder",
        )
    )
    bad = parsed.where("row IS NULL").select(
        "source_file", "line_number", F.col("raw").alias("raw_line"), "reason"
    )
    written = write_once(spark, good, out, lineage)
    write_once(spark, bad, f"{out}_quarantine", {**lineage, RUN_KEY: f"{spec.run_key}/quarantine"})

    counts = {
        r["source_folder"]: (r["good"], r["bad"])
        for r in parsed.groupBy("source_folder")
        .agg(
            F.sum(F.col("row").isNotNull().cast("long")).alias("good"),
            F.sum(F.col("row").isNull().cast("long")).alias("bad"),
        )
        .collect()
    }
    ended = datetime.now(UTC)
    processing = spark.createDataFrame(
        [
            (
                folder,
                "SUCCESS",
                good_n,
                bad_n,
                started,
                ended,
                None,
                lineage["lakehouse.spark-app-id"],
                spec.run_key,
            )
            for folder, (good_n, bad_n) in sorted(counts.items())
        ],
        spark.table(f"{out}_processing").schema,
    )
    write_once(spark, processing, f"{out}_processing", {**lineage, RUN_KEY: f"{spec.run_key}/end"})
    result = {
        "stage": "curate",
        "engine": "spark",
        "folders": sorted(counts),
        "skipped_folders": sorted(done),
        "rows_out": sum(g for g, _ in counts.values()),
        "quarantined": sum(b for _, b in counts.values()),
        "written": written,
    }
    report_result(result)
    spark.stop()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

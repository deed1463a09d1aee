"""spark-submit script for the tests: two tries of one run stage the same WAP id and both publish;
then a publish onto a branch that moved since staging. Prints one JSON line of facts.

Runs ``ray_operators.spark.curate_spark_logs.SparkTables`` itself (the Spark engine's write path)
on the catalog ``lake`` that the command line configures.
"""

from __future__ import annotations

import json

from pyspark.sql import SparkSession

from ray_operators.contract.lineage import ENGINE, RUN_KEY
from ray_operators.iceberg_snapshots import PUBLISHED_WAP_ID, committed_with, lineage_of
from ray_operators.spark.curate_spark_logs import SparkTables

spark = SparkSession.builder.appName("wap race").getOrCreate()
tables = SparkTables(spark, "lake")
tables.ensure("race.t", "id BIGINT, v STRING")
schema = "id BIGINT, v STRING"


def props(key: str) -> dict[str, str]:
    return {RUN_KEY: key, ENGINE: "spark"}


key = "race/run=1"
# Both tries checked the branch before either published: both stage.
first_try = tables.stage(
    spark.createDataFrame([(1, "a"), (2, "a"), (3, "a")], schema), "race.t", key, props(key)
)
second_try = tables.stage(spark.createDataFrame([(1, "b"), (2, "b")], schema), "race.t", key, props(key))
first = tables.publish("race.t", key, first_try)
second = tables.publish("race.t", key, second_try)
rows = spark.table("lake.race.t").count()

# A commit lands between staging and publishing: the cherry-pick makes a new snapshot.
moved_key = "race/run=2"
staged = tables.stage(
    spark.createDataFrame([(i, "c") for i in range(5)], schema), "race.t", moved_key, props(moved_key)
)
spark.createDataFrame([(7, "d"), (8, "d")], schema).writeTo("lake.race.t").append()
moved = tables.publish("race.t", moved_key, staged)
metadata = tables.metadata("race.t")
published = committed_with(metadata, RUN_KEY, moved_key)
print(
    json.dumps(
        {
            "first": first,
            "second": second,
            "rows": rows,
            "moved": {
                "published_wap_id": published.summary.get(PUBLISHED_WAP_ID),
                "found_by_run_key": published.snapshot_id == moved["snapshot_id"]
                and published.snapshot_id != staged,
                "lineage_engine": lineage_of(metadata, published).get(ENGINE),
                "rows": spark.table("lake.race.t").count(),
            },
        }
    )
)
spark.stop()

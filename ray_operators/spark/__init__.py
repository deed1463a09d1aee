"""The Spark variant of the curate stage: a PySpark application and its catalog configuration.

In production, Spark curates raw data into Iceberg tables; ``SparkCurateOperator``
(``ray_operators.operators.spark_curate``) submits :mod:`ray_operators.spark.curate_spark_logs`
with ``spark-submit``. The application follows the same stage contract as the Ray jobs (the stage
spec, lineage in snapshot summaries, exactly-once by run key) and parses lines with the very
function the Ray curate stage uses, so both variants produce the same tables.
"""

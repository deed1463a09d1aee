"""The Spark engine of the curate stage: a PySpark application, its catalog configuration, and
the local Spark runtime.

In production, Spark curates raw data into Iceberg tables; ``SparkCurateOperator``
(``ray_operators.operators.spark_curate``) submits :mod:`ray_operators.spark.curate_spark_logs`
with ``spark-submit``. The application runs the curation protocol of :mod:`ray_operators.curation`,
as the Ray curate stage does (discovery, claims, processing rows, parser, commit keys, lineage), and
commits through Iceberg's write-audit-publish; :mod:`ray_operators.spark.conf` maps an ``iceberg``
connection to Spark catalog settings and :mod:`ray_operators.spark.runtime` finds Spark, the Iceberg
runtime jar, Java and the SQLite JDBC driver.
"""

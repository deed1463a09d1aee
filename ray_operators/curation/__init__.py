"""The curation protocol: one specification of the curate stage, implemented by two engines.

- Ray: :mod:`ray_operators.jobs.curate` (a Ray job, ``LakehouseStageOperator(stage="curate")``);
- Spark: :mod:`ray_operators.spark.curate_spark_logs` (``spark-submit``, ``SparkCurateOperator``).

What both engines take from here, so they cannot drift apart:

- :mod:`~ray_operators.curation.protocol`: the tables and their columns, the processing states
  (PROCESSING, SUCCESS, FAILED) and how a run claims raw units (a retry reclaims exactly its own
  claim; a unit whose curated commit a rollback took off the branch is curated again), the keys of
  a run's commits, and the lineage every commit carries;
- :mod:`~ray_operators.curation.spark_logs`: discovery of the raw units across all raw roots, the
  line parser and its quarantine reasons, and how a file becomes records (line numbers, blank
  lines, undecodable bytes);
- :mod:`~ray_operators.curation.spark_logs_fast` and :mod:`~ray_operators.curation.arrow_lines`:
  the same parser vectorized with pyarrow, which hands the row parser every line it cannot vouch
  for, so both give the same tables (the Ray engine's fast path; Spark runs the row parser).

The run key itself is :mod:`ray_operators.contract.run_key`'s (curation is keyed by run), and "is
this run key committed" is :mod:`ray_operators.iceberg_snapshots`'s ancestry walk. Nothing here
imports Airflow, Ray or pyspark.
"""

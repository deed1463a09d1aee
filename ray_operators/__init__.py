"""Airflow provider for AI lakehouse pipelines on Ray Data and Apache Iceberg.

Airflow-side modules (hooks, operators, triggers, links) import no ray, pyiceberg, pyarrow or
torch at module level; ``ray_operators.jobs`` runs on the Ray cluster and imports no Airflow.
"""

__version__ = "0.1.0"

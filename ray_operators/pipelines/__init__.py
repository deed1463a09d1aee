"""Declarative lakehouse pipelines: one YAML spec per pipeline, validated, turned into a DAG.

``spec`` loads and validates (no Airflow), ``graph`` is the Airflow-free task graph the CLI
renders, ``build`` makes the DAG. Parsing specs imports neither ray, pyiceberg, pyarrow nor torch.
"""

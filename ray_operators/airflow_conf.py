"""Airflow settings our operators follow, read where they are used (``airflow.sdk``'s config)."""

from __future__ import annotations


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: what ``deferrable`` defaults to, as for Airflow's own
    operators (Airflow's default is False; ``make demo``, ``make airflow``, the compose file and the
    tests set it to True, so waits happen in the triggerer)."""
    from airflow.sdk.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)

"""Airflow settings our operators follow, read where they are used (``airflow.sdk``'s config)."""

from __future__ import annotations

#: The ``[ray_lakehouse]`` section of Airflow's configuration (``AIRFLOW__RAY_LAKEHOUSE__*``).
SECTION = "ray_lakehouse"
#: Default of ``[ray_lakehouse] resume_hold_seconds`` (see :mod:`ray_operators.triggers._resume`).
DEFAULT_RESUME_HOLD_SECONDS = 10.0


def default_deferrable() -> bool:
    """``[operators] default_deferrable``: what ``deferrable`` defaults to, as for Airflow's own
    operators (Airflow's default is False; ``make demo``, ``make airflow``, the compose file and the
    tests set it to True, so waits happen in the triggerer)."""
    from airflow.sdk.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


def resume_hold_seconds() -> float:
    """``[ray_lakehouse] resume_hold_seconds``: how long after a task defers its trigger holds its
    event (default 10; see :mod:`ray_operators.triggers._resume`). Never negative.

    Only a scheduler that processes executor events needs the hold: ``dag.test()`` runs deferred
    tasks with their triggers in one process, where 0 is safe (the tests set it so).
    """
    from airflow.sdk.configuration import conf

    value = conf.getfloat(SECTION, "resume_hold_seconds", fallback=DEFAULT_RESUME_HOLD_SECONDS)
    return max(float(value), 0.0)

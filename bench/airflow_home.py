"""A throwaway Airflow home per benchmark process, set before Airflow is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

DAGS = Path(__file__).resolve().parent / "dags"


def isolated_airflow_home(prefix: str) -> str:
    """Point Airflow at a fresh temporary home with the benchmark DAGs; returns the home."""
    home = tempfile.mkdtemp(prefix=prefix)
    os.environ.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    return home


def migrate_db() -> None:
    """Create the SQLite metadata database of the current home (``airflow db migrate``)."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

"""Child-process entry point for tests: ``python run_dag.py DAG_ID LOGICAL_DATE[,DATE...] [DAGS_FOLDER]``:
one ``dag.test()`` per date, in order, in this one process."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers.airflow_helpers import run_dag

if __name__ == "__main__":
    extra = {"folder": Path(sys.argv[3])} if len(sys.argv) > 3 else {}
    for date in sys.argv[2].split(","):
        run = run_dag(sys.argv[1], datetime.fromisoformat(date), **extra)
        print(f"DAG RUN STATE {run.state}", flush=True)

"""Example user transforms for the preprocess stage (import paths ``ray_operators.jobs.examples:...``),
and :class:`SlowDataFileIO`, storage whose data files are slow to write."""

from __future__ import annotations

import functools
from typing import Any

#: The catalog property that sets :class:`SlowDataFileIO`'s seconds per data file (default 2).
SLOW_DATA_FILE_SECONDS = "slow-data-file-seconds"


def add_total(batch: Any, *, columns: tuple[str, ...] = ("x", "y")) -> Any:
    """Stateless: a pandas batch gets ``total`` = sum of ``columns``."""
    batch["total"] = sum(batch[c].astype("float64") for c in columns)
    return batch


class Scale:
    """Stateful (one instance per actor): multiplies ``column`` by ``factor``."""

    def __init__(self, column: str = "x", factor: float = 10.0) -> None:
        self.column = column
        self.factor = factor

    def __call__(self, batch: Any) -> Any:
        batch[self.column] = batch[self.column].astype("float64") * self.factor
        return batch


def slow_identity(batch: Any, *, seconds: float = 0.5) -> Any:
    """Stateless and slow: for demonstrating (and testing) a job stopped in the middle of its work."""
    import time

    time.sleep(seconds)
    return batch


#: Log levels as numbers, for :func:`log_features`.
LEVEL_CODES = {"DEBUG": 0, "INFO": 1, "WARN": 2, "WARNING": 2, "ERROR": 3, "FATAL": 4}


def log_features(batch: Any) -> Any:
    """Stateless: curated Spark-log rows (a pandas batch) -> numeric features of each line:
    ``message_length``, ``level_code``, ``is_driver``, and the label ``is_problem`` (WARN or worse)."""
    out = batch[["timestamp", "source_folder"]].copy()
    out["message_length"] = batch["message"].fillna("").str.len().astype("float64")
    out["level_code"] = batch["log_level"].map(LEVEL_CODES).fillna(1).astype("float64")
    out["is_driver"] = (batch["spark_role"] == "driver").astype("float64")
    out["is_problem"] = (out["level_code"] >= 2).astype("int64")
    return out


def __getattr__(name: str) -> Any:
    # Built on first use: the class needs pyiceberg's pyarrow FileIO, which the transforms above
    # (imported where DAG files are parsed) do not.
    if name == "SlowDataFileIO":
        return _slow_data_file_io()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _slow_data_file_io() -> type:
    import time

    from pyiceberg.io.pyarrow import PyArrowFile, PyArrowFileIO

    class SlowDataFileIO(PyArrowFileIO):
        """pyiceberg's pyarrow FileIO, but each data file (``.../data/....parquet``) waits
        ``slow-data-file-seconds`` (a catalog property, default 2) before it is written, as on
        storage under load. A stage's write then lasts seconds: for demonstrating (and testing) a
        job stopped inside its write. Set it as the catalog's ``py-io-impl``:
        ``ray_operators.jobs.examples.SlowDataFileIO``."""

        def new_output(self, location: str) -> PyArrowFile:
            if "/data/" in location and location.endswith(".parquet"):
                time.sleep(float(self.properties.get(SLOW_DATA_FILE_SECONDS, 2)))
            return super().new_output(location)

    SlowDataFileIO.__module__ = __name__
    SlowDataFileIO.__qualname__ = "SlowDataFileIO"
    return SlowDataFileIO

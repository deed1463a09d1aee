"""Example user transforms for the preprocess stage (import paths ``ray_operators.jobs.examples:...``)."""

from __future__ import annotations

from typing import Any


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

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

"""Realistic raw data for the demo, the tests and the benchmarks, generated (nothing is downloaded).

Spark application logs as JSON lines, one folder per application (``spark-<id>/driver.log``,
``executor-N.log``), the way a Kubernetes log shipper writes them, with a few percent of malformed
lines of known kinds so that quarantine counts can be checked exactly.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LEVELS = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
MESSAGES = (
    "Starting task {n} in stage {s}",
    "Finished task {n} in stage {s} ({ms} ms)",
    "Block broadcast_{n} stored as values in memory",
    "Executor lost heartbeat after {ms} ms",
    "Registering block manager {n}",
    "Shuffle write of {n} records",
)
#: The kinds of bad line the generator writes, and the quarantine reason each must get.
MALFORMED = ("bad_json", "missing_field", "bad_timestamp")


def _line(rng: random.Random, app_id: str, role: str, pod: str, when: datetime) -> dict[str, Any]:
    return {
        "timestamp": when.isoformat().replace("+00:00", "Z"),
        "log_level": rng.choice(LEVELS),
        "message": rng.choice(MESSAGES).format(
            n=rng.randint(0, 999), s=rng.randint(0, 20), ms=rng.randint(1, 9000)
        ),
        "kubernetes": {
            "pod_name": pod,
            "namespace_name": "spark-jobs",
            "labels": {
                "app": "spark",
                "spark-app-selector": app_id,
                "spark-role": role,
                "spark-version": "3.5.1",
                "submission-id": f"sub-{app_id}",
            },
        },
    }


def generate_spark_logs(
    root: str | Path,
    *,
    apps: int = 3,
    executors: int = 2,
    lines_per_file: int = 200,
    malformed_fraction: float = 0.03,
    seed: int = 0,
    start: datetime | None = None,
) -> dict[str, Any]:
    """Write ``apps`` application folders under ``root``; return exact counts of what was written.

    Folders are named after the seed so a second call with another seed adds new applications.
    """
    rng = random.Random(seed)
    root = Path(root)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    counts: dict[str, Any] = {"folders": [], "good": 0, "bad": dict.fromkeys(MALFORMED, 0)}
    for a in range(apps):
        app_id = f"{seed:04d}{a:04d}{rng.randrange(16**8):08x}"
        folder = root / f"spark-{app_id}"
        folder.mkdir(parents=True, exist_ok=True)
        counts["folders"].append(folder.name)
        files = {"driver.log": ("driver", f"{app_id}-driver")}
        files.update(
            {f"executor-{e}.log": ("executor", f"{app_id}-exec-{e}") for e in range(1, executors + 1)}
        )
        for filename, (role, pod) in files.items():
            lines = []
            for i in range(lines_per_file):
                when = start + timedelta(seconds=a * 3600 + i)
                record = _line(rng, app_id, role, pod, when)
                if rng.random() < malformed_fraction:
                    kind = MALFORMED[rng.randrange(len(MALFORMED))]
                    counts["bad"][kind] += 1
                    if kind == "bad_json":
                        lines.append(json.dumps(record)[:-7])
                        continue
                    if kind == "missing_field":
                        del record["message"]
                    else:
                        record["timestamp"] = "yesterday at noon"
                else:
                    counts["good"] += 1
                lines.append(json.dumps(record))
            (folder / filename).write_text("\n".join(lines) + "\n")
    counts["bad_total"] = sum(counts["bad"].values())
    return counts


def generate_tabular(rows: int = 2000, *, features: int = 6, seed: int = 0) -> Any:
    """A learnable binary-classification table (pyarrow): ``f0..f{n-1}`` floats, ``label`` int.

    The label is the sign of a fixed linear score plus a little noise, so a small model reaches
    well over 90 % accuracy while chance is 50 %.
    """
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float64")
    weights = np.linspace(1.0, -1.0, features) + 0.3
    label = ((x @ weights + rng.normal(scale=0.3, size=rows)) > 0).astype("int64")
    columns = {f"f{i}": x[:, i] for i in range(features)}
    columns["row_id"] = np.arange(rows, dtype="int64") + seed * 1_000_000
    columns["label"] = label
    return pa.table(columns)

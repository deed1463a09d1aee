"""Snapshot-summary keys: what every lakehouse commit says about where its data came from."""

from __future__ import annotations

#: The identity of one stage run's output (see :mod:`ray_operators.contract.run_key`).
RUN_KEY = "lakehouse.run-key"
DAG_ID = "lakehouse.dag-id"
RUN_ID = "lakehouse.run-id"
TASK_ID = "lakehouse.task-id"
SUBMISSION_ID = "lakehouse.ray-submission-id"
STAGE = "lakehouse.stage"
#: The engine that computed a commit (``ray`` or ``spark``), and a Spark commit's application id.
ENGINE = "lakehouse.engine"
SPARK_APP_ID = "lakehouse.spark-app-id"
#: ``lakehouse.input.<table>``: the snapshot (``123``), range (``1..5``) or list (``1+3``) read.
INPUT_PREFIX = "lakehouse.input."
#: On a commit whose run key was committed before and rolled back off the branch: those snapshot ids.
REPLACES_ROLLED_BACK = "lakehouse.replaces-rolled-back"
#: The fitted preprocessing state a preprocess commit applied: its URI and version.
PREPROCESS_STATE_URI = "lakehouse.preprocess.state-uri"
PREPROCESS_STATE_VERSION = "lakehouse.preprocess.state-version"
#: ``true`` on the overwrite commit of a refit (the whole table rewritten with the new state).
PREPROCESS_REFIT = "lakehouse.preprocess.refit"
#: The model a train or infer commit registered or applied (``name:version``) and its artifact.
MODEL = "lakehouse.model"
MODEL_URI = "lakehouse.model-uri"
#: ``lakehouse.input.raw``: the raw folders a curation read, comma-separated.
RAW_INPUT = INPUT_PREFIX + "raw"


def read_snapshot_ids(value: str) -> list[int]:
    """The snapshots a ``lakehouse.input.<table>`` value says a commit read up to: the pinned
    snapshot (``123``), a range's end (``1..5``: the appends after 1, up to 5) or each snapshot of
    a list (``1+3``). Empty when it names none."""
    text = str(value).rpartition("..")[2]
    return [int(part) for part in text.split("+") if part.strip().lstrip("-").isdigit()]

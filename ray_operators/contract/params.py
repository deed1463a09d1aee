"""Typed per-stage parameters and their defaults: the one place a default is written.

The pipeline spec models take their defaults from here, and the jobs parse ``StageSpec.params``
through :func:`parse`, so a stage run from YAML and the same stage run from a hand-written
operator behave alike. Unknown names are errors that list the known ones.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

#: ``local_max_bytes``' default: a stage whose input files total at most this many bytes runs in
#: its Ray job's driver, on the same code path, without Ray tasks (see
#: :mod:`ray_operators.jobs.execution`); 0 always runs distributed.
DEFAULT_LOCAL_MAX_BYTES = 32 * 1024 * 1024


class ParamsError(ValueError):
    """Stage parameters that do not fit the stage: the message names the parameter."""


@dataclass(frozen=True)
class CurateParams:
    """``format``: ``spark_logs``, ``csv``, ``json`` or ``parquet``; ``schema``/``required``/``pattern``
    for the tabular formats.

    :param fast_path: read and type blocks of lines with pyarrow (``spark_logs``, ``csv``,
        ``json``), handing to the row-by-row parser only the lines (or blocks) it cannot vouch
        for; the tables are the same either way. ``False`` runs the row-by-row parser alone (to
        compare the two, or to measure it).
    :param local_max_bytes: raw files totalling at most this many bytes are parsed and committed
        in the job's driver, without Ray tasks (same parser, same commits; see
        :mod:`ray_operators.jobs.execution`); ``0`` always distributes. Also a preprocess and an
        infer param, over the input's Iceberg data files.
    """

    format: str = "spark_logs"
    schema: dict[str, str] | None = None
    required: list[str] | None = None
    pattern: str | None = None
    fast_path: bool = True
    local_max_bytes: int = DEFAULT_LOCAL_MAX_BYTES


#: The code a categorical column gives a value outside the fitted vocabulary, and a null.
UNSEEN_CATEGORY_CODE = -1


@dataclass(frozen=True)
class PreprocessParams:
    """User ``transforms`` first, then the built-ins, which apply a fitted state (see
    :mod:`ray_operators.jobs.preprocess`).

    :param refit: fit a new state instead of applying the current one, and rewrite the whole
        output table with it in one overwrite commit.
    :param fit_on: what a refit fits on: ``"input"`` (this run's input) or ``"table"`` (the whole
        input table as of the run's input snapshot).
    :param local_max_bytes: see :class:`CurateParams`; a user transform that asks for
        ``num_gpus`` always runs distributed.
    """

    transforms: list[dict[str, Any]] = field(default_factory=list)
    standardize: list[str] = field(default_factory=list)
    minmax: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    tokenize: list[str] = field(default_factory=list)
    refit: bool = False
    fit_on: str = "input"
    local_max_bytes: int = DEFAULT_LOCAL_MAX_BYTES

    @property
    def fitted_columns(self) -> bool:
        return bool(self.standardize or self.minmax or self.categorical)


@dataclass(frozen=True)
class TrainParams:
    feature_columns: list[str] = field(default_factory=list)
    label_column: str | None = None
    num_classes: int = 2
    model_name: str | None = None
    num_workers: int = 1
    use_gpu: bool | str = "auto"
    resources_per_worker: dict[str, float] | None = None
    epochs: int = 5
    batch_size: int = 128
    ingest_batch_size: int | None = None
    read_blocks: int | str = "auto"
    shuffle: bool = True
    seed: int = 0
    lr: float = 0.01
    hidden: int = 32
    holdout: float = 0.2
    #: Where model artifacts go; default ``<warehouse>/models``.
    artifact_root: str | None = None
    #: Ray Train's ``storage_path``; default ``<warehouse>/ray_train`` (shared by every node).
    storage_path: str | None = None
    #: Seconds between the Ray Train controller's polls of its workers
    #: (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``; Ray's default is 2). A worker's ``report`` waits
    #: for the controller to take the previous one, and the end of training is seen at a poll:
    #: at 2 s, eight epochs of a small model cost 16 s of waiting.
    health_check_interval_s: float = 0.5
    #: See :class:`CurateParams`: a feature snapshot this small is read and split in the driver
    #: and handed to Ray Train from memory (training itself always runs in Ray Train's workers).
    local_max_bytes: int = DEFAULT_LOCAL_MAX_BYTES


@dataclass(frozen=True)
class InferParams:
    model_table: str | None = None
    model_name: str | None = None
    model_version: int | str | None = "latest"
    batch_size: int = 256
    min_actors: int = 1
    max_actors: int = 1
    num_gpus: float = 0
    carry_columns: list[str] | None = None
    #: Apply the fitted preprocessing state the model was trained with before predicting (for
    #: inputs that are raw rows, not rows of the feature table).
    apply_preprocess: bool = False
    #: See :data:`DEFAULT_LOCAL_MAX_BYTES`; a pool with ``num_gpus`` always runs distributed.
    local_max_bytes: int = DEFAULT_LOCAL_MAX_BYTES


STAGE_PARAMS: dict[str, type] = {
    "curate": CurateParams,
    "preprocess": PreprocessParams,
    "train": TrainParams,
    "infer": InferParams,
}


def default(stage: str, name: str) -> Any:
    """The default of one parameter (for the spec models)."""
    for f in dataclasses.fields(STAGE_PARAMS[stage]):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return f.default
    raise KeyError(f"{stage} has no parameter {name!r}")


def parse(stage: str, params: dict[str, Any] | None) -> Any:
    """``params`` as the stage's typed parameters; unknown names raise :class:`ParamsError`."""
    kind = STAGE_PARAMS[stage]
    known = [f.name for f in dataclasses.fields(kind)]
    values = {k: v for k, v in dict(params or {}).items() if v is not None}
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = [
            f"{u!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(u, known, 1))
            else repr(u)
            for u in unknown
        ]
        raise ParamsError(f"unknown {stage} stage param(s) {', '.join(hints)}; known: {known}")
    return kind(**values)

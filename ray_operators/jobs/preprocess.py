"""Stage 2, preprocess: Ray Data ``map_batches`` over one pinned input -> a feature table.

Stage params (:class:`ray_operators.contract.params.PreprocessParams`):

- ``transforms``: user transforms, applied first, in order, each
  ``{"fn": "package.module:function_or_class", "batch_size": 1024, "batch_format": "pandas",
  "concurrency": 2, "num_cpus": 1, "kwargs": {...}}``; a class is a stateful transform run in an
  actor pool of ``concurrency`` actors (constructed once per actor with ``kwargs``).
- built-ins, each a list of column names, applied after the user transforms with the stage's
  **fitted state**: ``standardize`` (z-score), ``minmax`` (to [0, 1] on the fitted range),
  ``categorical`` (integer codes from the fitted vocabulary), ``tokenize`` (lower-cased word
  lists; nothing to fit, recorded in the state so that applying a state needs nothing else).
  A column may be named by one built-in only.
- ``refit`` / ``fit_on``: see "Refit" below.

Fitted state
------------
The statistics are fitted **once** and then reused, so every increment of the output table is
scaled alike and category codes never change between increments:

- The first run that has input rows (the output table has no state yet) fits the state on its
  input and stores it as a versioned JSON artifact (never a pickle) next to the output table:
  ``<warehouse>/<namespace>/<table>/preprocess_state/v<N>.json`` (beside the table's own folder,
  the same path whether or not the table exists yet; with a catalog whose ``warehouse`` is a name,
  the table's ``metadata.location``), written through :mod:`ray_operators.jobs.storage` (the
  catalog's own file IO: ``file://``, or ``s3://`` with its endpoint and the node's keys). A version file is never overwritten: when ``vN`` exists and carries this run's run
  key (a retry), it is reused as it is; when it carries another run key, the state takes ``N+1``.
- Concurrent first runs (a backfill's intervals start together) all apply one state: the version
  1 whichever claims it first; a run that finds v1 fitted but not yet committed applies it, and a
  run that loses the race for v1 drops its own fit. So the table never holds two scales; a backfill
  equal row for row to a sequential run needs its first interval to run first
  (``airflow backfill create --max-active-runs 1``).
- Every snapshot the stage commits names the state it applied in its summary
  (:data:`~ray_operators.contract.lineage.PREPROCESS_STATE_URI` and
  :data:`~ray_operators.contract.lineage.PREPROCESS_STATE_VERSION`). The table's *current* state is
  the one named by the newest snapshot *on the branch* that names one (:func:`current_state`; a
  snapshot a rollback took off the branch does not count). Every later run loads it and applies
  it to its increment; a retry of a committed run applies the state its commit named.
- The built-in columns of the stage must be those of the current state: a change (a column
  added to ``standardize``...) fails the run with a message that asks for a refit.
- A stage with nothing to fit (only user transforms, or only ``tokenize``) still writes a state
  (it needs no rows), so every commit of the stage names one. With something to fit, a run
  without input rows before the first fit commits no state; the first rows fit it.
- A table written before states existed has none: its next run fits ``v1`` on that run's input;
  run it with ``refit: true`` once to put the whole table on one scale.

Refit
-----
``refit: true`` (a stage param, or a run's ``refit`` param in the UI) fits a new version ``N+1``
on ``fit_on``: ``"input"``, this run's input, or ``"table"``, the whole input table as of the run's
input snapshot (a range or a list of snapshots: its newest snapshot). It then rewrites the **whole**
output table from the whole input table as of that snapshot in one overwrite commit (marked
:data:`~ray_operators.contract.lineage.PREPROCESS_REFIT`), so the table never holds rows scaled
by two states. Iceberg records that commit as a ``delete`` snapshot followed by an ``append``
snapshot, both carrying the run key and the new state. With a ``slice_filter`` the rewrite still
replaces the whole table; rows without the slice column get this run's slice value.

How the built-ins are fitted and applied
----------------------------------------
- Fit: one aggregation pass, one accumulator per block merged in the driver (no shuffle), for
  the statistics Ray's scalers fit: ``standardize`` as
  :class:`ray.data.preprocessors.StandardScaler` (mean and population std, computed exactly and
  rounded once, :mod:`ray_operators.jobs.exact_stats`, so they do not depend on how the input was
  split into blocks), ``minmax`` as :class:`ray.data.preprocessors.MinMaxScaler` (``Min``,
  ``Max``); their results (``mean(col)``, ``std(col)``, ``min(col)``, ``max(col)``) are the
  numbers stored in the JSON.
  ``categorical``: the sorted distinct non-null values, cast to strings with pyarrow, found with
  Ray's ``Unique`` aggregate, in the same pass, with a non-null ``Count`` of the scaled columns.
- Apply (:func:`apply_state`): one pyarrow ``map_batches`` with pyarrow compute, the same
  formulas as Ray's scalers (``tests/unit/ray_operators/jobs/test_preprocess.py`` checks them against Ray's
  ``transform_batch`` on a scaler whose ``stats_`` were set from the JSON). Not Ray's scalers
  themselves: ``MinMaxScaler`` transforms pandas batches only (nulls come back as NaN), and one
  pass over the built-ins keeps one map stage.
- ``standardize``: ``(x - mean) / std`` as float64, a ``std`` below ``1e-8`` (a constant column:
  std 0) taken as 1 (Ray's rule), so a constant column becomes 0. ``minmax``:
  ``(x - min) / (max - min)``, a span below ``1e-8`` taken as 1, so a constant column becomes 0.
- A column with no values when fitted (all null): ``mean 0, std 1`` and ``min 0, max 1`` are
  stored, so values pass through unchanged (as float64) and nulls stay null. A column whose
  non-null values include NaN cannot be standardized: the fit fails and names it.
- ``categorical``: ``pc.index_in`` of the string-cast value in the vocabulary; a value not in it,
  and a null, get :data:`~ray_operators.contract.params.UNSEEN_CATEGORY_CODE` (``-1``); int64 codes.
- ``tokenize``: ``pc.utf8_lower`` + ``pc.utf8_split_whitespace`` with the empty words dropped: the
  same word lists as Python's ``str.lower().split()`` (a null or empty text is ``[]``), except
  where Python applies full Unicode case mapping: ``İ`` (U+0130) becomes ``i`` (Python: ``i̇``),
  and a capital sigma that ends a word becomes ``σ`` (Python: the final sigma ``ς``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray_operators.contract.lineage import PREPROCESS_REFIT, PREPROCESS_STATE_URI, PREPROCESS_STATE_VERSION
from ray_operators.contract.params import UNSEEN_CATEGORY_CODE, PreprocessParams
from ray_operators.contract.spec import STORAGE_ROOT, StageError, StageSpec, TableInput
from ray_operators.jobs import storage
from ray_operators.jobs.read import read_pinned
from ray_operators.jobs.timing import phase
from ray_operators.jobs.write import commit_exactly_once, ensure_table, find_committed

#: The built-ins, in the order they are applied.
BUILTINS = ("standardize", "minmax", "categorical", "tokenize")
#: The folder under the output table's location that holds the state versions.
STATE_DIR = "preprocess_state"
#: What the state JSON says it is (bumped if its layout ever changes incompatibly).
STATE_FORMAT = "lakehouse.preprocess-state/1"
#: Ray's scalers take a std or span below this as 1 (``ray.data.preprocessors.scaler._EPSILON``).
EPSILON = 1e-8
#: The categorical vocabulary is shown in the job result only up to this size.
DISPLAY_VOCABULARY = 50


def load_callable(path: str) -> Any:
    """``package.module:attribute`` -> the object, with an error that says what is wrong."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise StageError(f"transform {path!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise StageError(f"transform {path!r}: cannot import {module_name!r} ({err})") from err
    try:
        return getattr(module, attr)
    except AttributeError:
        raise StageError(f"transform {path!r}: {module_name} has no {attr!r}") from None


def apply_user_transforms(ds: Any, transforms: list[dict[str, Any]]) -> Any:
    for item in transforms:
        fn = load_callable(item["fn"])
        kwargs: dict[str, Any] = {
            "batch_size": item.get("batch_size", 1024),
            "batch_format": item.get("batch_format", "pandas"),
        }
        if item.get("num_cpus") is not None:
            kwargs["num_cpus"] = item["num_cpus"]
        if item.get("num_gpus") is not None:
            kwargs["num_gpus"] = item["num_gpus"]
        if inspect.isclass(fn):
            kwargs["fn_constructor_kwargs"] = item.get("kwargs") or {}
            kwargs["concurrency"] = item.get("concurrency") or 1
        else:
            if item.get("kwargs"):
                kwargs["fn_kwargs"] = item["kwargs"]
            if item.get("concurrency"):
                kwargs["concurrency"] = item["concurrency"]
        ds = ds.map_batches(fn, **kwargs)
    return ds


# ---- the state: where it lives, loading, the current one -------------------------------------


def state_root(spec: StageSpec, table: Any | None = None) -> str:
    """The folder of the output table's state versions, the same for every run of the table
    (concurrent first runs must find each other's version 1): ``<root>/<namespace>/<table>/
    preprocess_state`` where ``root`` is the catalog's ``lakehouse.storage-root`` or its
    ``warehouse`` when that is a location (``file://``, ``s3://``, a path), else
    ``<table location>/preprocess_state`` (a REST catalog's ``warehouse`` may be a name)."""
    root = storage.storage_root(spec, table)
    warehouse = str(spec.catalog_properties.get("warehouse") or "")
    if spec.catalog_properties.get(STORAGE_ROOT) or storage.is_location(warehouse):
        return storage.join(root, *spec.output_table.split("."), STATE_DIR)
    return storage.join(root, STATE_DIR)


def state_uri(root: str, version: int) -> str:
    return f"{root.rstrip('/')}/v{int(version)}.json"


def _read_json(uri: str, properties: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The JSON at ``uri``, or None when there is no such file."""
    data = storage.read_bytes(uri, properties)
    return None if data is None else json.loads(data.decode())


def load_state(uri: str, properties: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fitted state stored at ``uri`` (a ``v<N>.json`` written by this stage); ``properties``:
    the catalog's (or a table's ``io.properties``), for ``s3://``."""
    try:
        state = _read_json(uri, properties)
    except (OSError, ValueError) as err:
        raise StageError(f"cannot read the preprocessing state {uri}: {err}") from None
    if state is None:
        raise StageError(f"the preprocessing state {uri} does not exist")
    if not isinstance(state, dict) or "transforms" not in state or "version" not in state:
        raise StageError(f"{uri} is not a preprocessing state (no 'version'/'transforms')")
    return state


def state_ref(table: Any, branch: str = "main") -> tuple[str, int] | None:
    """``(uri, version)`` of the table's current state: the one named by the newest snapshot on
    ``branch`` that names one (a rolled-back snapshot does not count), or None."""
    from ray_operators.iceberg_snapshots import ancestors, summary_value

    for snap in ancestors(table.metadata, branch):
        uri = summary_value(snap, PREPROCESS_STATE_URI)
        if uri:
            return uri, int(summary_value(snap, PREPROCESS_STATE_VERSION) or 0)
    return None


def current_state(table: Any, branch: str = "main") -> dict[str, Any] | None:
    """The output table's current fitted state (see :func:`state_ref`), or None when it has none."""
    ref = state_ref(table, branch)
    return load_state(ref[0], table.io.properties) if ref is not None else None


def state_by_version(table: Any, version: int) -> dict[str, Any]:
    """The state version ``version`` of this output table (for a model trained on it): the URI a
    snapshot named for that version, else ``<table location>/preprocess_state/v<version>.json``
    (the place for catalogs whose warehouse is a name)."""
    from ray_operators.iceberg_snapshots import summary_value

    for snap in reversed(table.metadata.snapshots):
        if summary_value(snap, PREPROCESS_STATE_VERSION) == str(int(version)):
            uri = summary_value(snap, PREPROCESS_STATE_URI)
            if uri:
                return load_state(uri, table.io.properties)
    root = storage.join(str(table.metadata.location), STATE_DIR)
    return load_state(state_uri(root, version), table.io.properties)


def _first_version(spec: StageSpec, table: Any | None) -> tuple[str, dict[str, Any]] | None:
    """``(uri, state)`` of version 1 when some run has fitted it already, else None."""
    uri = state_uri(state_root(spec, table), 1)
    try:
        found = _read_json(uri, spec.storage_properties())
    except (OSError, ValueError) as err:
        raise StageError(f"cannot read the preprocessing state {uri}: {err}") from None
    return (uri, load_state(uri, spec.storage_properties())) if found is not None else None


def claim_version(
    root: str, first: int, state: dict[str, Any], properties: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """Store ``state`` as the first free version from ``first`` on; return ``(uri, stored state)``.

    A version file is never overwritten. One that carries the same ``run_key`` is this run's own
    (a retry): it is returned as stored, and nothing is written. One with another run key belongs
    to another run: the next version is tried. After writing, the file is read back, so a writer
    that lost a race for the same version (both found it free) moves on to the next one.
    """
    version = max(int(first), 1)
    for _ in range(1000):
        uri = state_uri(root, version)
        found = _read_json(uri, properties)
        if found is None:
            body = {**state, "version": version}
            storage.write_bytes(uri, _dumps(body).encode(), properties)
            found = _read_json(uri, properties)
        if found is not None and found.get("run_key") == state["run_key"]:
            return uri, found
        version += 1
    raise StageError(f"no free preprocessing state version under {root} after {first}")


def _dumps(state: dict[str, Any]) -> str:
    try:
        return json.dumps(state, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as err:
        raise StageError(f"the fitted state is not valid JSON ({err})") from None


# ---- fitting ---------------------------------------------------------------------------------


def requested(params: PreprocessParams) -> dict[str, list[str]]:
    """The built-in columns the stage asks for, by built-in."""
    return {kind: list(getattr(params, kind) or []) for kind in BUILTINS}


def check_params(params: PreprocessParams) -> None:
    """Built-in columns named once each; ``fit_on`` known."""
    if params.fit_on not in ("input", "table"):
        raise StageError(f"preprocess fit_on must be 'input' or 'table', got {params.fit_on!r}")
    seen: dict[str, str] = {}
    for kind, columns in requested(params).items():
        for column in columns:
            if column in seen:
                raise StageError(
                    f"preprocess column {column!r} is in both {seen[column]} and {kind}: one built-in per column"
                )
            seen[column] = kind


def state_columns(state: dict[str, Any]) -> dict[str, list[str]]:
    transforms = state.get("transforms") or {}
    return {kind: sorted(transforms.get(kind) or []) for kind in BUILTINS}


def check_state_matches(state: dict[str, Any], params: PreprocessParams, uri: str) -> None:
    """The stage's built-in columns must be those the state was fitted for: a change needs a refit."""
    if state_columns(state) != {kind: sorted(cols) for kind, cols in requested(params).items()}:
        raise StageError(
            f"the stage's built-ins {requested(params)} differ from those of its fitted state "
            f"v{state['version']} ({uri}: {state_columns(state)}): run it once with refit: true to fit "
            "a new state and rewrite the table with it"
        )


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(number)
    return number


def transforms_from_stats(
    params: PreprocessParams | dict[str, list[str]],
    stats: dict[str, Any],
    counts: dict[str, int],
    uniques: dict[str, list[Any]],
) -> dict[str, Any]:
    """The ``transforms`` of a state, from what the fit found (pure: unit-tested without Ray).

    :param stats: Ray's scalers' ``stats_``: ``mean(col)``, ``std(col)``, ``min(col)``, ``max(col)``.
    :param counts: the number of non-null values of each scaled column.
    :param uniques: the distinct values (cast to strings, None for null) of each categorical column.
    """
    wanted = params if isinstance(params, dict) else requested(params)
    out: dict[str, Any] = {"standardize": {}, "minmax": {}, "categorical": {}, "tokenize": []}
    # Each scaler: its two statistics, and what a column with no values when fitted stores.
    scalers = {"standardize": (("mean", "std"), (0.0, 1.0)), "minmax": (("min", "max"), (0.0, 1.0))}
    for kind, (names, empty) in scalers.items():
        for column in wanted.get(kind, []):
            found = [stats.get(f"{name}({column})") for name in names]
            if not counts.get(column):
                out[kind][column] = {**dict(zip(names, empty, strict=True)), "count": 0}
                continue
            try:
                values = {name: _finite(v) for name, v in zip(names, found, strict=True)}
            except (TypeError, ValueError):
                shown = ", ".join(f"{name} {v}" for name, v in zip(names, found, strict=True))
                raise StageError(
                    f"{kind} {column!r}: no finite {'/'.join(names)} over its {counts[column]} non-null "
                    f"values ({shown}): the column has NaN or infinite values"
                ) from None
            out[kind][column] = {**values, "count": counts[column]}
    for column in wanted.get("categorical", []):
        vocabulary = sorted({str(v) for v in uniques.get(column) or [] if v is not None})
        out["categorical"][column] = {"vocabulary": vocabulary, "unseen_code": UNSEEN_CATEGORY_CODE}
    out["tokenize"] = list(wanted.get("tokenize", []))
    return out


class _FitColumns:
    """The columns a fit pass needs: scaled columns as they are, categorical ones cast to strings."""

    def __init__(self, scaled: list[str], categorical: list[str]) -> None:
        self.scaled = scaled
        self.categorical = categorical

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        columns = {c: batch.column(c) for c in self.scaled}
        for c in self.categorical:
            columns[c] = pc.cast(batch.column(c), pa.string())
        return pa.table(columns)


def fit_transforms(ds: Any, params: PreprocessParams) -> dict[str, Any]:
    """Fit the built-ins on ``ds`` (materialized; it must have rows when any built-in is fitted).

    One aggregation pass computes every statistic, under the names Ray's own scalers store them
    with: ``StandardScaler``'s mean and population std, exact (:mod:`ray_operators.jobs.exact_stats`:
    the same numbers whatever the blocks, so a table standardized on one node, on two, or in the
    job's driver is the same to the last bit); ``MinMaxScaler``'s ``Min`` and ``Max``; plus the
    non-null counts and the categorical vocabularies (Ray's ``Count`` and ``Unique``). Fitting each
    scaler on its own would run one Dataset execution per scaler.
    """
    from ray.data.aggregate import Count, Max, Min, Unique

    from ray_operators.jobs.exact_stats import ExactMoment

    wanted = requested(params)
    missing = sorted(
        {c for kind in ("standardize", "minmax", "categorical") for c in wanted[kind]} - set(_names(ds))
    )
    if missing:
        raise StageError(f"preprocess columns {missing} are not in the data (columns: {_names(ds)})")
    scaled = wanted["standardize"] + wanted["minmax"]
    if not scaled and not wanted["categorical"]:
        return transforms_from_stats(wanted, {}, {}, {})
    aggs: list[Any] = [
        agg for c in wanted["standardize"] for agg in (ExactMoment(c, "mean"), ExactMoment(c, "std"))
    ]
    for c in wanted["minmax"]:
        aggs += [Min(c), Max(c)]
    aggs += [Count(c, ignore_nulls=True, alias_name=f"count.{c}") for c in scaled]
    aggs += [Unique(c, alias_name=f"unique.{c}") for c in wanted["categorical"]]
    found = aggregate_globally(
        ds.map_batches(_FitColumns(scaled, wanted["categorical"]), batch_format="pyarrow"), aggs
    )
    stats = {k: v for k, v in found.items() if not k.startswith(("count.", "unique."))}
    counts = {c: int(found[f"count.{c}"] or 0) for c in scaled}
    uniques = {c: list(found[f"unique.{c}"] or []) for c in wanted["categorical"]}
    return transforms_from_stats(wanted, stats, counts, uniques)


class _PartialAggregates:
    """``map_batches`` callable: each aggregate's accumulator over one whole block, as one row."""

    def __init__(self, aggs: list[Any]) -> None:
        self.aggs = aggs

    def __call__(self, block: Any) -> Any:
        import pickle

        import pyarrow as pa

        partials = [_plain(agg.accumulate_block(agg.init(None), block)) for agg in self.aggs]
        return pa.table({"partials": pa.array([pickle.dumps(partials)], pa.binary())})


def _plain(value: Any) -> Any:
    """An accumulator as Python values, as it comes back from the block Ray keeps it in (``Unique``
    accumulates a pyarrow array, which its ``merge`` takes as a list)."""
    if hasattr(value, "to_pylist"):
        return value.to_pylist()
    if hasattr(value, "item") and not isinstance(value, list | dict | str | bytes):
        return value.item()  # a numpy scalar
    return value


def aggregate_globally(ds: Any, aggs: list[Any]) -> dict[str, Any]:
    """What ``ds.aggregate(*aggs)`` returns, computed without a shuffle: one map task per block
    runs each aggregate's own ``accumulate_block``, and the driver merges the accumulators with
    the aggregates' ``merge`` and ``finalize``, the steps Ray's aggregation runs per group.

    ``Dataset.aggregate`` runs as a hash shuffle: Ray 2.60 starts aggregator actors for it, which
    cost seconds to start and hold CPUs a while after (a tiny stage spent 3.5 s fitting and 1.7 s
    waiting in the next map). A global aggregate needs no shuffle: one accumulator per block, a
    few bytes each. The accumulators travel pickled, inside the job only (nothing is stored).
    """
    import pickle

    merged = [agg.init(None) for agg in aggs]
    rows = ds.map_batches(_PartialAggregates(aggs), batch_format="pyarrow", batch_size=None).take_all()
    for row in rows:
        for i, (agg, partial) in enumerate(zip(aggs, pickle.loads(row["partials"]), strict=True)):
            merged[i] = agg.merge(merged[i], partial)
    found = {agg.name: agg.finalize(acc) for agg, acc in zip(aggs, merged, strict=True)}
    # Ray hands the result back through a block, where a set (``Unique``'s) becomes a list.
    return {name: list(value) if isinstance(value, set) else value for name, value in found.items()}


def _names(ds: Any) -> list[str]:
    schema = ds.schema()
    return list(schema.names) if schema is not None else []


# ---- applying --------------------------------------------------------------------------------


def standardize_values(values: Any, mean: float, std: float) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    scale = std if std is not None and std >= EPSILON else 1.0
    return pc.divide(pc.subtract(pc.cast(values, pa.float64()), float(mean)), float(scale))


def minmax_values(values: Any, low: float, high: float) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    span = high - low
    span = span if span >= EPSILON else 1.0
    return pc.divide(pc.subtract(pc.cast(values, pa.float64()), float(low)), float(span))


def category_codes(values: Any, vocabulary: list[str], unseen_code: int = UNSEEN_CATEGORY_CODE) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = pc.index_in(pc.cast(values, pa.string()), value_set=pa.array(vocabulary, pa.string()))
    return pc.fill_null(pc.cast(codes, pa.int64()), int(unseen_code))


def tokenize_values(values: Any) -> Any:
    """Lower-cased word lists, as ``str(text).lower().split()`` would give (null -> ``[]``)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([_tokenize_chunk(c) for c in values.chunks], type=pa.list_(pa.string()))
    return _tokenize_chunk(values)


def _tokenize_chunk(values: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return split_words(pc.utf8_lower(pc.fill_null(pc.cast(values, pa.string()), "")))


def split_words(text: Any) -> Any:
    """Python's ``str.split()`` on each string of a pyarrow string array (no nulls)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(text)
    # Arrow's utf8_split_whitespace (26.0.1) reads past the end of the values buffer when the
    # last string ends with whitespace, and what lies there decides the result: "tail\n" came
    # back as one word once in a full test run (apache/arrow#37757 is the same family). A final
    # "x" row keeps every real row off the buffer's end; its word is dropped below.
    words = pc.utf8_split_whitespace(pa.concat_arrays([text, pa.array(["x"], pa.string())]))
    # pyarrow keeps an empty word at a leading or trailing run of whitespace and makes [""] of "":
    # Python's split() drops them.
    flat = pc.list_flatten(words)
    keep = pc.greater(pc.utf8_length(flat), 0)
    parents = pc.list_parent_indices(words).filter(keep).to_numpy(zero_copy_only=False)
    counts = np.bincount(parents, minlength=n + 1)[:n]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), flat.filter(keep).slice(0, int(offsets[-1]))
    )


def apply_transforms(table: Any, transforms: dict[str, Any]) -> Any:
    """The built-ins of a state's ``transforms`` applied to one pyarrow table (pure)."""
    import pyarrow as pa

    needed = [c for kind in BUILTINS for c in (transforms.get(kind) or [])]
    missing = sorted(set(needed) - set(table.column_names))
    if missing:
        raise StageError(f"preprocess columns {missing} are not in the data (columns: {table.column_names})")

    def put(tbl: Any, column: str, values: Any) -> Any:
        return tbl.set_column(tbl.schema.get_field_index(column), pa.field(column, values.type), values)

    for column, s in (transforms.get("standardize") or {}).items():
        table = put(table, column, standardize_values(table.column(column), s["mean"], s["std"]))
    for column, s in (transforms.get("minmax") or {}).items():
        table = put(table, column, minmax_values(table.column(column), s["min"], s["max"]))
    for column, s in (transforms.get("categorical") or {}).items():
        codes = category_codes(
            table.column(column), s["vocabulary"], s.get("unseen_code", UNSEEN_CATEGORY_CODE)
        )
        table = put(table, column, codes)
    for column in transforms.get("tokenize") or []:
        table = put(table, column, tokenize_values(table.column(column)))
    return table


class ApplyState:
    """``map_batches`` callable: a state's built-ins on a pyarrow batch (pure, picklable)."""

    def __init__(self, transforms: dict[str, Any]) -> None:
        self.transforms = transforms

    def __call__(self, batch: Any) -> Any:
        return apply_transforms(batch, self.transforms)


def apply_state(ds: Any, state: dict[str, Any], *, batch_size: int = 4096) -> Any:
    """``ds`` (a Ray Dataset) with the built-ins of ``state`` applied, in pyarrow batches."""
    transforms = state.get("transforms") or {}
    if not any(transforms.get(kind) for kind in BUILTINS):
        return ds
    return ds.map_batches(ApplyState(transforms), batch_format="pyarrow", batch_size=batch_size)


def display_stats(state: dict[str, Any] | None) -> dict[str, Any]:
    """A state's numbers for the job result (long vocabularies cut: the result is size-limited)."""
    if not state:
        return {}
    transforms = state.get("transforms") or {}
    out: dict[str, Any] = {}
    for kind in ("standardize", "minmax"):
        for column, numbers in (transforms.get(kind) or {}).items():
            out[f"{kind}.{column}"] = dict(numbers)
    for column, cat in (transforms.get("categorical") or {}).items():
        vocabulary = cat.get("vocabulary") or []
        shown: dict[str, Any] = {"vocabulary_size": len(vocabulary)}
        if len(vocabulary) <= DISPLAY_VOCABULARY:
            shown["vocabulary"] = list(vocabulary)
        else:
            shown["vocabulary_head"] = list(vocabulary[:DISPLAY_VOCABULARY])
        out[f"categorical.{column}"] = shown
    return out


# ---- the stage -------------------------------------------------------------------------------


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def pinned_snapshot(spec: StageSpec, item: TableInput) -> int:
    """The snapshot an input reads "as of": its snapshot, the end of its range, or the newest of its
    list (by the branch's ancestry, never by comparing ids)."""
    if item.is_list:
        from ray_operators.iceberg_snapshots import ancestors

        ids = {int(s) for s in item.snapshot_ids or []}
        if not ids:
            raise StageError(f"input {item.table} lists no snapshots: nothing to refit on")
        metadata = spec.load_catalog().load_table(item.table).metadata
        for snap in ancestors(metadata):
            if snap.snapshot_id in ids:
                return int(snap.snapshot_id)
        known = [s for s in metadata.snapshots if s.snapshot_id in ids]
        if not known:
            raise StageError(f"none of the snapshots {sorted(ids)} is in {item.table}")
        return int(max(known, key=lambda s: (s.sequence_number or 0, s.timestamp_ms)).snapshot_id)
    if item.to_snapshot_id is not None:  # a range
        return int(item.to_snapshot_id)
    if item.snapshot_id is None:
        raise StageError(f"input {item.table} has neither snapshot_id nor a snapshot range: reads are pinned")
    return int(item.snapshot_id)


def _fitted_on(item: TableInput, scope: str, snapshot_id: int | None, rows: int) -> dict[str, Any]:
    where: dict[str, Any] = {"table": item.table, "scope": scope, "rows": rows}
    if scope == "table":
        where["snapshot_id"] = snapshot_id
    elif item.is_list:
        where["snapshot_ids"] = list(item.snapshot_ids or [])
    elif item.is_range:
        where["from_snapshot_id"] = item.from_snapshot_id
        where["to_snapshot_id"] = item.to_snapshot_id
    else:
        where["snapshot_id"] = item.snapshot_id
    if item.row_filter:
        where["row_filter"] = item.row_filter
    if item.columns:
        where["columns"] = list(item.columns)
    return where


def local_limit(params: PreprocessParams) -> int:
    """The stage's ``local_max_bytes``, or 0 when a user transform asks for a GPU (the driver is
    not given one)."""
    if any(item.get("num_gpus") for item in params.transforms):
        return 0
    return int(params.local_max_bytes)


def _read(spec: StageSpec, item: TableInput, params: PreprocessParams) -> tuple[Any, Any, int]:
    with phase("plan read"):
        ds, files = read_pinned(spec, item, local_max_bytes=local_limit(params))
    with phase("execute: read + user transforms"):
        ds = apply_user_transforms(ds, params.transforms).materialize()
    return ds, files, ds.count()


def _add_constant(batch: Any, *, column: str, value: Any) -> Any:
    import pyarrow as pa

    return batch.append_column(column, pa.array([value] * batch.num_rows))


@dataclass
class _Reads:
    """What a preprocess run read: its input, the rows it rewrites (``target``: the input, or on a
    refit the whole input table as of ``as_of``) and the rows it fits on."""

    ds: Any
    files: Any
    rows_in: int
    target: Any
    target_rows: int
    fit_ds: Any
    fit_rows: int
    as_of: int | None = None


def _check_refit_allowed(spec: StageSpec, committed: Any, refit: bool) -> None:
    from ray_operators.iceberg_snapshots import summary_value

    if refit and committed is not None and summary_value(committed, PREPROCESS_REFIT) != "true":
        # Exactly once by run key would make this refit a silent no-op: say so instead.
        raise StageError(
            f"refit asked for, but run key {spec.run_key} is already committed on {spec.output_table} "
            f"(snapshot {committed.snapshot_id}) by a run that did not refit: a refit needs a run key "
            "of its own (a new run, with other input snapshots or another interval)"
        )


def _read_targets(spec: StageSpec, item: TableInput, params: PreprocessParams, refit: bool) -> _Reads:
    ds, files, rows_in = _read(spec, item, params)
    reads = _Reads(ds, files, rows_in, target=ds, target_rows=rows_in, fit_ds=ds, fit_rows=rows_in)
    if refit:
        # The whole input table as of the run's input snapshot is what the table is rewritten from.
        reads.as_of = pinned_snapshot(spec, item)
        if item.is_list or item.is_range:
            whole = TableInput(
                table=item.table, snapshot_id=reads.as_of, columns=item.columns, row_filter=item.row_filter
            )
            reads.target, _, reads.target_rows = _read(spec, whole, params)
        if params.fit_on == "table":
            reads.fit_ds, reads.fit_rows = reads.target, reads.target_rows
    return reads


def _skipped(spec: StageSpec, item: TableInput, files: Any) -> dict[str, Any]:
    # No rows and no table: there is no schema to create it with. Nothing was written, and a
    # re-run finds the same nothing, so this is still exactly once; the table comes with data.
    print(f"no input rows and {spec.output_table} does not exist yet: nothing to write", flush=True)
    return {
        "stage": "preprocess",
        "input": item.__dict__,
        "incremental_files": files,
        "output": {"table": spec.output_table, "snapshot_id": None, "rows": 0, "skipped": True},
        "rows_in": 0,
        "rows_out": 0,
        "stats": {},
        "state": None,
    }


def _fit_new_state(
    spec: StageSpec,
    params: PreprocessParams,
    item: TableInput,
    out_table: Any | None,
    current: tuple[str, int] | None,
    reads: _Reads,
    refit: bool,
) -> tuple[str, dict[str, Any]]:
    from datetime import UTC, datetime

    with phase("execute: fit"):
        transforms = (
            fit_transforms(reads.fit_ds, params)
            if reads.fit_rows
            else transforms_from_stats(params, {}, {}, {})
        )
    body = {
        "format": STATE_FORMAT,
        "output_table": spec.output_table,
        "run_key": spec.run_key,
        "refit": refit,
        "fitted_at": datetime.now(UTC).isoformat(),
        "fitted_on": _fitted_on(item, params.fit_on if refit else "input", reads.as_of, reads.fit_rows),
        "fitted_with": {
            "standardize": "exact mean and population std (StandardScaler's fit, exactly rounded)",
            "minmax": "ray.data.aggregate Min, Max (MinMaxScaler's fit)",
            "categorical": "ray.data.aggregate.Unique",
        },
        "transforms": transforms,
    }
    first = (current[1] if current is not None else 0) + 1
    uri, state = claim_version(state_root(spec, out_table), first, body, spec.storage_properties())
    if not refit and int(state["version"]) != 1 and (first_fit := _first_version(spec, out_table)):
        # Lost the race for v1 to a concurrent first run: apply its state, not ours.
        uri, state = first_fit
    print(f"preprocess: fitted state v{state['version']} on {reads.fit_rows} rows: {uri}", flush=True)
    return uri, state


def _state_to_apply(
    spec: StageSpec,
    params: PreprocessParams,
    item: TableInput,
    out_table: Any | None,
    committed_uri: str | None,
    reads: _Reads,
    refit: bool,
) -> tuple[str | None, dict[str, Any] | None]:
    """The state this run applies: the one its own commit named (a retry of a committed run), the
    table's current one, or a new fit (first run, or a refit)."""
    current = state_ref(out_table) if out_table is not None else None
    if committed_uri:
        return committed_uri, load_state(committed_uri, spec.storage_properties())
    if current is not None and not refit:
        state = load_state(current[0], spec.storage_properties())
        check_state_matches(state, params, current[0])
        return current[0], state
    if not refit and (first_fit := _first_version(spec, out_table)) is not None:
        # No state on the branch yet, but a concurrent first run (a backfill's other intervals)
        # already fitted one: every first run applies that one, so the table never holds two
        # scales. Which run fits it is whichever claims v1 first.
        uri, state = first_fit
        check_state_matches(state, params, uri)
        print(f"preprocess: applying v1, fitted by a concurrent first run: {uri}", flush=True)
        return uri, state
    if reads.fit_rows or not params.fitted_columns:
        return _fit_new_state(spec, params, item, out_table, current, reads, refit)
    if refit:
        raise StageError(
            f"refit on fit_on={params.fit_on!r}: no rows to fit on"
            + (
                " (this run's input is empty; fit_on: table fits on the whole input table)"
                if item.is_range
                else ""
            )
        )
    # No rows yet and nothing fitted: an empty commit with no state; the first rows fit it.
    return None, None


def _transformed(spec: StageSpec, reads: _Reads, state: dict[str, Any] | None) -> Any:
    target = reads.target
    if state is not None and reads.target_rows:
        target = apply_state(target, state)
    if reads.target_rows and spec.slice_filter and spec.slice_filter["column"] not in target.schema().names:
        # The run's slice (e.g. its data-interval date) tags every row it writes, so an overwrite
        # of that slice replaces exactly this run's output on a replay or a backfill.
        target = target.map_batches(
            _add_constant,
            fn_kwargs={"column": spec.slice_filter["column"], "value": spec.slice_filter["value"]},
            batch_format="pyarrow",
        )
    with phase("execute: apply state"):
        return target.materialize()


def _commit(
    spec: StageSpec,
    target: Any,
    target_rows: int,
    state: dict[str, Any] | None,
    uri: str | None,
    refit: bool,
) -> dict[str, Any]:
    schema = target.schema().base_schema if target_rows else None
    if schema is not None:
        ensure_table(spec, spec.output_table, schema)
    print(target.stats(), flush=True)

    extra: dict[str, str] = {}
    if state is not None and uri is not None:
        extra = {PREPROCESS_STATE_URI: uri, PREPROCESS_STATE_VERSION: str(state["version"])}
    commit_spec = spec
    if refit:
        extra[PREPROCESS_REFIT] = "true"
        if spec.slice_filter:
            # A refit replaces the whole table, whatever slice the run was given.
            commit_spec = StageSpec.from_json({**spec.to_json(), "slice_filter": None})
    return commit_exactly_once(
        commit_spec,
        target if target_rows else None,
        schema=schema,
        extra_properties=extra,
        mode="overwrite" if refit else None,
    )


def run(spec: StageSpec) -> dict[str, Any]:
    if len(spec.inputs) != 1:
        raise StageError(f"preprocess reads exactly one input table, got {len(spec.inputs)}")
    params: PreprocessParams = spec.typed_params()
    check_params(params)
    refit = _truthy(params.refit)
    item = spec.inputs[0]
    with phase("catalog load"):
        catalog = spec.load_catalog()
        out_table = catalog.load_table(spec.output_table) if catalog.table_exists(spec.output_table) else None

    committed = find_committed(out_table, spec.run_key) if out_table is not None else None
    from ray_operators.iceberg_snapshots import summary_value

    committed_uri = summary_value(committed, PREPROCESS_STATE_URI) if committed is not None else None
    _check_refit_allowed(spec, committed, refit)

    reads = _read_targets(spec, item, params, refit)
    if not reads.target_rows and out_table is None:
        return _skipped(spec, item, reads.files)
    uri, state = _state_to_apply(spec, params, item, out_table, committed_uri, reads, refit)
    target = _transformed(spec, reads, state)
    result = _commit(spec, target, reads.target_rows, state, uri, refit)
    return {
        "stage": "preprocess",
        "input": item.__dict__,
        "incremental_files": reads.files,
        "output": result,
        "rows_in": reads.target_rows,
        "rows_out": result["rows"],
        "stats": display_stats(state),
        "state": {
            "uri": uri,
            "version": state["version"],
            "refit": refit,
            "fitted_on": state.get("fitted_on"),
        }
        if state is not None
        else None,
    }

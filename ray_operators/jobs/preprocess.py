"""Stage 2, preprocess: Ray Data ``map_batches`` over one pinned input -> a feature table.

Stage params:
- ``transforms``: user transforms, applied in order, each
  ``{"fn": "package.module:function_or_class", "batch_size": 1024, "batch_format": "pandas",
  "concurrency": 2, "num_cpus": 1, "kwargs": {...}}``; a class is a stateful transform run in an
  actor pool of ``concurrency`` actors (constructed once per actor with ``kwargs``).
- built-ins that need a pass over the data first (statistics are computed in the job and stored
  with the output, in the snapshot summary under ``lakehouse.preprocess.stats``):
  ``standardize`` (z-score), ``minmax`` (to [0, 1]), ``categorical`` (integer codes from the
  sorted vocabulary), ``tokenize`` (lower-cased word lists). Each takes a list of column names.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs.read import read_pinned
from ray_operators.jobs.write import commit_exactly_once, ensure_table

STATS_PROPERTY = "lakehouse.preprocess.stats"


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


def compute_stats(ds: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Every statistic the built-ins need, in one aggregation pass over the data."""
    from ray.data.aggregate import Max, Mean, Min, Std, Unique

    aggs: list[Any] = []
    for column in params.get("standardize", []):
        aggs += [Mean(column, alias_name=f"mean.{column}"), Std(column, ddof=0, alias_name=f"std.{column}")]
    for column in params.get("minmax", []):
        aggs += [Min(column, alias_name=f"min.{column}"), Max(column, alias_name=f"max.{column}")]
    for column in params.get("categorical", []):
        aggs.append(Unique(column, alias_name=f"unique.{column}"))
    if not aggs:
        return {}
    found = ds.aggregate(*aggs)
    stats: dict[str, Any] = {}
    for column in params.get("standardize", []):
        stats[f"standardize.{column}"] = {
            "mean": float(found[f"mean.{column}"]),
            "std": float(found[f"std.{column}"] or 1.0),
        }
    for column in params.get("minmax", []):
        stats[f"minmax.{column}"] = {
            "min": float(found[f"min.{column}"]),
            "max": float(found[f"max.{column}"]),
        }
    for column in params.get("categorical", []):
        values = found[f"unique.{column}"]
        stats[f"categorical.{column}"] = {"vocabulary": sorted({str(v) for v in values if v is not None})}
    return stats


class ApplyBuiltins:
    """The built-in transforms with their precomputed statistics (pure, picklable)."""

    def __init__(self, params: dict[str, Any], stats: dict[str, Any]) -> None:
        self.params = params
        self.stats = stats

    def __call__(self, batch: Any) -> Any:
        for column in self.params.get("standardize", []):
            s = self.stats[f"standardize.{column}"]
            batch[column] = (batch[column].astype("float64") - s["mean"]) / (s["std"] or 1.0)
        for column in self.params.get("minmax", []):
            s = self.stats[f"minmax.{column}"]
            span = (s["max"] - s["min"]) or 1.0
            batch[column] = (batch[column].astype("float64") - s["min"]) / span
        for column in self.params.get("categorical", []):
            import pandas as pd

            vocabulary = self.stats[f"categorical.{column}"]["vocabulary"]
            # Unknown values and nulls get -1 (pandas' code for "not a category").
            values = batch[column].astype("string")
            batch[column] = pd.Categorical(values, categories=vocabulary).codes.astype("int64")
        for column in self.params.get("tokenize", []):
            batch[column] = batch[column].fillna("").map(lambda text: str(text).lower().split())
        return batch


def _add_constant(batch: Any, *, column: str, value: Any) -> Any:
    import pyarrow as pa

    return batch.append_column(column, pa.array([value] * batch.num_rows))


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


def run(spec: StageSpec) -> dict[str, Any]:
    if len(spec.inputs) != 1:
        raise StageError(f"preprocess reads exactly one input table, got {len(spec.inputs)}")
    params = spec.params
    ds, files = read_pinned(spec, spec.inputs[0])
    ds = apply_user_transforms(ds, params.get("transforms", []))
    ds = ds.materialize()
    rows_in = ds.count()
    stats = compute_stats(ds, params) if rows_in else {}
    builtins = [k for k in ("standardize", "minmax", "categorical", "tokenize") if params.get(k)]
    if builtins and rows_in:
        ds = ds.map_batches(ApplyBuiltins(params, stats), batch_format="pandas", batch_size=4096)
    if rows_in and spec.slice_filter and spec.slice_filter["column"] not in ds.schema().names:
        # The run's slice (e.g. its data-interval date) tags every row it writes, so an overwrite
        # of that slice replaces exactly this run's output on a replay or a backfill.
        ds = ds.map_batches(
            _add_constant,
            fn_kwargs={"column": spec.slice_filter["column"], "value": spec.slice_filter["value"]},
            batch_format="pyarrow",
        )
    ds = ds.materialize()
    schema = ds.schema().base_schema if rows_in else None
    if schema is not None:
        ensure_table(spec, spec.output_table, schema)
    elif not spec.load_catalog().table_exists(spec.output_table):
        # No rows and no table: there is no schema to create it with. Nothing was written, and a
        # re-run finds the same nothing, so this is still exactly once; the table comes with data.
        print(f"no input rows and {spec.output_table} does not exist yet: nothing to write", flush=True)
        return {
            "stage": "preprocess",
            "input": spec.inputs[0].__dict__,
            "incremental_files": files,
            "output": {"table": spec.output_table, "snapshot_id": None, "rows": 0, "skipped": True},
            "rows_in": 0,
            "rows_out": 0,
            "stats": stats,
        }
    print(ds.stats(), flush=True)
    result = commit_exactly_once(
        spec,
        ds if rows_in else None,
        schema=schema,
        extra_properties={STATS_PROPERTY: json.dumps(stats, sort_keys=True)[:60_000]},
    )
    return {
        "stage": "preprocess",
        "input": spec.inputs[0].__dict__,
        "incremental_files": files,
        "output": result,
        "rows_in": rows_in,
        "rows_out": result["rows"],
        "stats": stats,
    }

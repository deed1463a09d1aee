"""Stage 4, inference writeback: a model from the registry over a pinned feature snapshot.

Stage params (defaults in ``contract/params.py``): ``model_table`` (the registry the train stage
writes), ``model_name``, ``model_version`` (default: the latest), ``batch_size``,
``min_actors``/``max_actors`` (the actor pool: the model loads once per actor), ``num_gpus`` per
actor (default 0), ``carry_columns`` (input columns copied to the output; default all),
``apply_preprocess`` (the input holds raw rows: apply the fitted preprocessing state the model was
trained with, by the URI and version its registry row names, before predicting).

Output rows: the carried columns, ``prediction``, ``model_name``, ``model_version`` and
``input_snapshot_id``; the snapshot summary also names the model and the input snapshot.
"""

from __future__ import annotations

import json
from typing import Any

from ray_operators.contract.lineage import MODEL, PREPROCESS_STATE_URI, PREPROCESS_STATE_VERSION
from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs.read import read_pinned
from ray_operators.jobs.timing import phase
from ray_operators.jobs.write import commit_exactly_once, ensure_table


class Predictor:
    """Callable class for ``map_batches``: one model per actor, loaded in ``__init__``."""

    def __init__(
        self,
        artifact_uri: str,
        features: list[str],
        hidden: int,
        classes: int,
        tag: dict[str, Any],
        carry: list[str] | None,
        storage: dict[str, str] | None = None,
    ) -> None:
        import torch

        from ray_operators.jobs.train import build_model, load_state

        self.features = features
        self.tag = tag
        self.carry = carry
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = build_model(len(features), hidden, classes)
        self.model.load_state_dict(load_state(artifact_uri, storage))
        self.model.to(self.device).eval()

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import torch

        x = torch.tensor(
            np.stack([batch[c].astype("float32") for c in self.features], axis=1), device=self.device
        )
        with torch.no_grad():
            predicted = self.model(x).argmax(dim=1).cpu().numpy().astype("int64")
        out = batch if self.carry is None else batch[self.carry].copy()
        out["prediction"] = predicted
        for key, value in self.tag.items():
            out[key] = value
        return out


def pick_model(spec: StageSpec) -> dict[str, Any]:
    p = spec.typed_params()
    table = p.model_table
    if not table:
        raise StageError("infer needs params.model_table (the model registry)")
    rows = spec.load_catalog().load_table(table).scan().to_arrow().to_pylist()
    name = p.model_name
    rows = [r for r in rows if name is None or r["model_name"] == name]
    version = p.model_version
    if version not in (None, "latest"):
        rows = [r for r in rows if r["model_version"] == int(version)]
    if not rows:
        raise StageError(f"no model {name or ''} version {version} in {table}")
    return max(rows, key=lambda r: r["model_version"])


def _preprocess_state(spec: StageSpec, model: dict[str, Any]) -> dict[str, Any]:
    """Raw rows: the fitted preprocessing state the model was trained with, by the version its
    registry row names, so inference sees the scale training saw."""
    from ray_operators.jobs.preprocess import load_state

    uri = model.get("preprocess_state_uri")
    if not uri:
        raise StageError(
            f"apply_preprocess: model {model['model_name']} v{model['model_version']} was trained on "
            "features no preprocess stage wrote (its registry row names no preprocessing state)"
        )
    return load_state(uri, spec.storage_properties())


def run(spec: StageSpec) -> dict[str, Any]:
    from ray.data import ActorPoolStrategy

    if len(spec.inputs) != 1 or not spec.inputs[0].identity():
        raise StageError("infer reads exactly one pinned input (a snapshot_id, a range or snapshot_ids)")
    p = spec.typed_params()
    with phase("catalog load + pick model"):
        model = pick_model(spec)
    features = json.loads(model["feature_columns"])
    item = spec.inputs[0]
    with phase("plan read"):
        # A GPU pool runs in Ray's actors; a small CPU-only input runs in the driver.
        ds, _ = read_pinned(spec, item, local_max_bytes=0 if p.num_gpus else p.local_max_bytes)
    state = _preprocess_state(spec, model) if p.apply_preprocess else None
    if state is not None:
        from ray_operators.jobs.preprocess import apply_state

        ds = apply_state(ds, state)
    tag = {
        "model_name": model["model_name"],
        "model_version": int(model["model_version"]),
        "input_snapshot_id": int(item.identity()[-1]),
    }
    predictions = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "artifact_uri": model["artifact_uri"],
            "features": features,
            "hidden": int(model["hidden"]),
            "classes": int(model["num_classes"]),
            "tag": tag,
            "carry": p.carry_columns,
            "storage": spec.storage_properties(),  # no secrets: the nodes bring their own keys
        },
        compute=ActorPoolStrategy(min_size=int(p.min_actors), max_size=int(p.max_actors)),
        num_gpus=float(p.num_gpus),
        batch_size=int(p.batch_size),
        batch_format="pandas",
    )
    with phase("execute: read + predict"):
        predictions = predictions.materialize()
    # One prediction per input row (Predictor maps each batch to a batch of the same rows): the
    # materialized count is the rows read, without a Dataset execution of its own.
    rows_in = predictions.count()
    schema = predictions.schema().base_schema if rows_in else None
    if schema is not None:
        ensure_table(spec, spec.output_table, schema)
    print(predictions.stats(), flush=True)
    result = commit_exactly_once(
        spec,
        predictions if rows_in else None,
        schema=schema,
        extra_properties={
            MODEL: f"{model['model_name']}:{model['model_version']}",
            **(
                {
                    PREPROCESS_STATE_URI: model["preprocess_state_uri"],
                    PREPROCESS_STATE_VERSION: str(state["version"]),
                }
                if state
                else {}
            ),
        },
    )
    return {
        "stage": "infer",
        "output": result,
        "rows_in": rows_in,
        "rows_out": result["rows"],
        "model_name": model["model_name"],
        "model_version": int(model["model_version"]),
    }

"""Test job: the same transforms through Ray Data and through ``LocalDataset`` (the driver).

usage: python local_dataset.py
Reports, for each step, the rows and the Arrow schema both gave, so the test can compare them.
"""

import numpy as np
import pyarrow as pa
import ray
from ray.data.aggregate import Count, Max, Mean, Min, Std, Unique

from ray_operators.contract.result import report_result
from ray_operators.jobs.execution import LocalDataset
from ray_operators.jobs.preprocess import aggregate_globally

schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("color", pa.string())])
blocks = [
    pa.table(
        {
            "id": list(range(0, 23)),
            "x": [i / 3 for i in range(23)],
            "color": ["r", "g", None] * 7 + ["b", "r"],
        }
    ),
    pa.table({"id": [], "x": [], "color": []}, schema=schema),
    pa.table(
        {"id": list(range(23, 40)), "x": [None] * 5 + [float(i) for i in range(12)], "color": ["g"] * 17}
    ),
]


def scale(batch, *, factor):  # pandas
    batch["x"] = batch["x"] * factor
    batch["n"] = len(batch)  # the batch's own size: batch_size must cut alike
    return batch


class Tag:  # a callable class, constructed once per actor (or once in the driver)
    def __init__(self, label):
        self.label = label
        self.calls = 0

    def __call__(self, batch):  # pyarrow
        self.calls += 1
        return batch.append_column("label", pa.array([self.label] * batch.num_rows))


def square(batch):  # numpy dict
    return {**batch, "x2": np.nan_to_num(batch["x"].astype("float64")) ** 2}


def halves(batch):  # a generator of batches
    mid = len(batch["id"]) // 2
    yield {k: v[:mid] for k, v in batch.items()}
    yield {k: v[mid:] for k, v in batch.items()}


def chain(ds):
    ds = ds.map_batches(scale, batch_format="pandas", batch_size=7, fn_kwargs={"factor": 2.0})
    ds = ds.map_batches(Tag, batch_format="pyarrow", fn_constructor_kwargs={"label": "t"}, concurrency=1)
    ds = ds.map_batches(square, batch_format="numpy", batch_size=None)
    return ds.map_batches(halves, batch_format="numpy", batch_size=10)


def rows(ds):
    return sorted(ds.take_all(), key=lambda r: (r["id"], r["n"]))


ray.init()
distributed = chain(ray.data.from_arrow(blocks)).materialize()
local = chain(LocalDataset(lambda: list(blocks))).materialize()
aggs = [Mean("x"), Std("x", ddof=0), Min("id"), Max("id"), Count("x", ignore_nulls=True), Unique("color")]
splits = {}
for name, ds in (
    ("ray", ray.data.from_arrow([pa.concat_tables(blocks)]).materialize()),
    ("local", LocalDataset(lambda: [pa.concat_tables(blocks)])),
):
    train, test = ds.train_test_split(test_size=0.25, seed=0)
    splits[name] = [sorted(r["id"] for r in train.take_all()), sorted(r["id"] for r in test.take_all())]


numeric = pa.table({"a": [float(i) for i in range(37)], "b": list(range(37))})
torch_batches = {}
for name, ds in (
    ("ray", ray.data.from_arrow([numeric.slice(0, 20), numeric.slice(20)])),
    ("local", LocalDataset(lambda: [numeric])),
):
    torch_batches[name] = [
        {k: [str(v.dtype), v.tolist()] for k, v in batch.items()}
        for batch in ds.iter_torch_batches(batch_size=16)
    ]
shards = [ray.get(ref).num_rows for ref in LocalDataset(lambda: [numeric]).equal_shards(3)]
ray_shards = [part.count() for part in ray.data.from_arrow([numeric]).split(3, equal=True)]


def plain(found):
    return {k: sorted(v, key=str) if isinstance(v, list) else v for k, v in found.items()}


report_result(
    {
        "rows": {"ray": rows(distributed), "local": rows(local)},
        "schema": {"ray": str(distributed.schema().base_schema), "local": str(local.schema().base_schema)},
        "count": {"ray": distributed.count(), "local": local.count()},
        "aggregate": {
            "ray": plain(dict(ray.data.from_arrow(blocks).aggregate(*aggs))),
            "local": plain(aggregate_globally(LocalDataset(lambda: list(blocks)), aggs)),
        },
        "split": splits,
        "torch": torch_batches,
        "shards": {"ray": ray_shards, "local": shards},
        "lazy": LocalDataset(lambda: 1 / 0).map_batches(square).schema(fetch_if_missing=False) is None,
    }
)

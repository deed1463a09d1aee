"""Test job: the preprocess fit's shuffle-free aggregation against Ray's own ``Dataset.aggregate``.

usage: python global_aggregate.py
Builds a dataset of several blocks (nulls, an all-null block, an empty block), runs the fit's
aggregates both ways and reports both results.
"""

import pyarrow as pa
import ray
from ray.data.aggregate import Count, Max, Mean, Min, Std, Unique

from ray_operators.contract.result import report_result
from ray_operators.jobs.preprocess import aggregate_globally

schema = pa.schema([("x", pa.float64()), ("n", pa.int64()), ("color", pa.string())])
blocks = [
    pa.table({"x": [1.5, None, -2.25, 8.0], "n": [3, 4, None, 10], "color": ["red", None, "blue", "red"]}),
    pa.table({"x": [None, None], "n": [None, None], "color": [None, None]}, schema=schema),
    pa.table({"x": [], "n": [], "color": []}, schema=schema),
    pa.table({"x": [1e9, 1e9 + 1.0, 3.0], "n": [-7, 0, 2], "color": ["green", "", "blue"]}),
]
ray.init()
ds = ray.data.from_arrow(blocks)
aggs = [Mean("x"), Std("x", ddof=0), Min("n"), Max("n"), Mean("n"), Std("n", ddof=0)]
aggs += [Count("x", ignore_nulls=True, alias_name="count.x"), Unique("color", alias_name="unique.color")]
ours = aggregate_globally(ds, aggs)
rays = ds.aggregate(*aggs)


def plain(found):
    return {k: sorted(v, key=str) if isinstance(v, list) else v for k, v in found.items()}


report_result({"blocks": ds.num_blocks(), "ours": plain(ours), "rays": plain(dict(rays))})

"""Bench job: the preprocess stage's transforms as a plain Ray Data script, for comparison.

usage: python plain_preprocess.py CATALOG_PROPERTIES_JSON CATALOG_NAME SNAPSHOT_ID OUTPUT_TABLE
Reads ``bench.raw`` at the snapshot with ``read_iceberg``, runs the same user transform
(``add_total``), fits and applies ``ray.data.preprocessors`` (``StandardScaler`` on x,
``MinMaxScaler`` on y, ``OrdinalEncoder`` on color: the stage's standardize, min-max and
categorical built-ins) and appends the result with ``write_iceberg``: no run key, no state file,
no exactly-once check. The result is materialized before the write (see below). The bench creates the output table before it submits this job.
"""

import json
import sys
import time

import ray
from ray.data.preprocessors import Chain, MinMaxScaler, OrdinalEncoder, StandardScaler

from ray_operators.jobs.examples import add_total

properties, name, snapshot, output = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
ds = ray.data.read_iceberg(
    table_identifier="bench.raw", catalog_kwargs={"name": name, **properties}, snapshot_id=snapshot
)
ds = ds.map_batches(add_total, batch_format="pandas")
chain = Chain(StandardScaler(columns=["x"]), MinMaxScaler(columns=["y"]), OrdinalEncoder(columns=["color"]))
# Ray 2.60's write_iceberg evolves the table's schema from the first bundle that enters the
# write operator; fused with the transforms, that bundle is the read's (color still a string),
# and the union fails with "Cannot change column type: color: long -> string". Materializing
# first hands the write the transformed blocks.
out = chain.fit_transform(ds).materialize()
out.write_iceberg(output, catalog_kwargs={"name": name, **properties})
print(f"plain preprocess: {time.perf_counter() - started:.2f}s", flush=True)

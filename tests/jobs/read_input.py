"""Test job: read a stage spec's first input through ``read_pinned`` and report its rows.

usage: python read_input.py SPEC_B64
"""

import sys

from ray_operators.contract.result import report_result
from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs.read import read_pinned

spec = StageSpec.decode(sys.argv[1])
try:
    ds, files = read_pinned(spec, spec.inputs[0])
    rows = sorted(ds.take_all(), key=lambda r: r["id"])
    report_result({"rows": rows, "files": files, "columns": list(ds.schema().names) if rows else []})
except StageError as err:
    report_result({"error": str(err)})

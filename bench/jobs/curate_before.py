"""Bench runner: the curate stage as it was before issue 15, timed in a process of its own.

usage: python curate_before.py SOURCE_DIR REQUEST_JSON

``SOURCE_DIR`` holds the package tree of an older commit (``git archive``); it goes first on
``sys.path``, so ``ray_operators`` is that commit's code, workers included (they inherit the
driver's ``PYTHONPATH``, set by the caller). ``REQUEST_JSON``: ``catalog_name``,
``catalog_properties``, ``warm`` (a list of ``[raw_path, output, params]``, untimed) and ``runs``
(the same shape, timed, in order). Prints one JSON line: ``{"seconds": [...]}``.
"""

import json
import sys
import time

sys.path.insert(0, sys.argv[1])
request = json.loads(sys.argv[2])

import ray  # noqa: E402

from ray_operators.contract.spec import StageSpec  # noqa: E402
from ray_operators.jobs import curate  # noqa: E402


def spec(raw: str, output: str, params: dict) -> StageSpec:
    return StageSpec(
        stage="curate",
        catalog_name=request["catalog_name"],
        catalog_properties=request["catalog_properties"],
        output_table=output,
        raw_paths=[raw],
        run={"run_key": f"bench/{output}/run=1", "dag_id": "bench", "run_id": "1", "task_id": "curate"},
        params=params,
    )


@ray.remote
def package_file() -> str:
    import ray_operators

    return ray_operators.__file__


ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
try:
    # The workers must run the older code too, not the installed package.
    for where in (curate.__file__, ray.get(package_file.remote())):
        if not where.startswith(sys.argv[1]):
            raise SystemExit(f"ray_operators came from {where}, not from {sys.argv[1]}")
    for raw, output, params in request["warm"]:
        curate.run(spec(raw, output, params))
    seconds = []
    for raw, output, params in request["runs"]:
        started = time.perf_counter()
        curate.run(spec(raw, output, params))
        seconds.append(time.perf_counter() - started)
        print(f"before issue 15, {output}: {seconds[-1]:.1f}s", file=sys.stderr, flush=True)
finally:
    ray.shutdown()
print(json.dumps({"seconds": seconds}), flush=True)

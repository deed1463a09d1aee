"""Entry point of every lakehouse stage job: ``python -m ray_operators.jobs.run_stage --spec <b64>``.

Decodes the stage spec, runs the stage, prints Ray Data's stats, and reports the stage's result
(committed table and snapshot ids, row counts) through the result channel.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ray_operators.contract.result import report_result
from ray_operators.contract.spec import StageError, StageSpec

STAGES = {
    "curate": "ray_operators.jobs.curate",
    "preprocess": "ray_operators.jobs.preprocess",
    "train": "ray_operators.jobs.train",
    "infer": "ray_operators.jobs.infer",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True, help="URL-safe base64 of the stage spec JSON")
    args = parser.parse_args(argv)
    try:
        spec = StageSpec.decode(args.spec)
        if spec.stage not in STAGES:
            raise StageError(f"unknown stage {spec.stage!r}; known: {sorted(STAGES)}")
    except StageError as err:
        print(f"stage spec error: {err}", file=sys.stderr, flush=True)
        return 2
    import ray

    ray.init()
    print(f"stage {spec.stage}: run key {spec.run_key}, output {spec.output_table}", flush=True)
    try:
        result = importlib.import_module(STAGES[spec.stage]).run(spec)
    except StageError as err:
        print(f"stage {spec.stage} failed: {err}", file=sys.stderr, flush=True)
        return 3
    print(f"stage {spec.stage} result: {result}", flush=True)
    report_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

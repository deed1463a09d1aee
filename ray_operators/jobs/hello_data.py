"""A small real Ray Data job: square a range of integers and report the sums.

usage: python -m ray_operators.jobs.hello_data --rows N
"""

from __future__ import annotations

import argparse

import numpy as np
import ray

from ray_operators.contract.result import report_result


def square(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"id": batch["id"], "square": batch["id"].astype(np.int64) ** 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    ray.init()
    ds = ray.data.range(args.rows).map_batches(square, batch_format="numpy")
    total = int(ds.sum("square"))  # type: ignore[arg-type]  # one column: a number
    rows = ds.count()
    print(ds.stats(), flush=True)
    report_result({"rows": rows, "sum_of_squares": total})


if __name__ == "__main__":
    main()

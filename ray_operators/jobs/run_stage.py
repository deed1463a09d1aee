"""Entry point of every lakehouse stage job: ``python -m ray_operators.jobs.run_stage --spec <b64>``.

Decodes the stage spec, runs the stage, prints Ray Data's stats, and reports the stage's result
(committed table and snapshot ids, row counts) through the result channel.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ray_operators.contract.result import report_result
from ray_operators.contract.spec import StageError, StageSpec
from ray_operators.jobs import timing

#: Set to ``1`` in a Ray node's environment to add :func:`where_it_ran` to every stage result (the
#: production-shape stack does; it costs one state-API call per stage).
REPORT_NODES_ENV = "LAKEHOUSE_REPORT_NODES"

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
    timing.start()
    try:
        spec = StageSpec.decode(args.spec)
        if spec.stage not in STAGES:
            raise StageError(f"unknown stage {spec.stage!r}; known: {sorted(STAGES)}")
    except StageError as err:
        print(f"stage spec error: {err}", file=sys.stderr, flush=True)
        return 2
    with timing.phase("import ray"):
        import ray
    with timing.phase("ray init"):
        ray.init()
    print(f"stage {spec.stage}: run key {spec.run_key}, output {spec.output_table}", flush=True)
    try:
        with timing.phase("import stage"):
            stage = importlib.import_module(STAGES[spec.stage])
        result = stage.run(spec)
    except StageError as err:
        print(f"stage {spec.stage} failed: {err}", file=sys.stderr, flush=True)
        return 3
    if isinstance(result, dict) and os.environ.get(REPORT_NODES_ENV, "") == "1":
        result["ray"] = where_it_ran()
    if isinstance(result, dict):
        result["timings"] = timing.report()
        print(f"stage {spec.stage} timings (s): {result['timings']}", flush=True)
    print(f"stage {spec.stage} result: {result}", flush=True)
    report_result(result)
    return 0


def where_it_ran() -> dict[str, object] | None:
    """Where this job ran: the driver's node, the nodes its tasks and actors ran on (``head`` or
    ``worker``, with a short node id, and how many tasks), and where this package was imported from
    (``runtime_env`` when it was shipped with the job). For reports; None if Ray cannot tell."""
    import ray

    try:
        from ray.util.state import list_tasks

        nodes = {n["NodeID"]: n for n in ray.nodes()}

        def name(node_id: str | None) -> str:
            node = nodes.get(node_id or "", {})
            role = "head" if "node:__internal_head__" in node.get("Resources", {}) else "worker"
            return f"{role}:{(node_id or '?')[:8]}"

        job_id = ray.get_runtime_context().get_job_id()
        counts: dict[str, int] = {}
        filters: list[tuple[str, str, str | bool | int | float]] = [("job_id", "=", job_id)]
        for task in list_tasks(filters=filters, limit=10_000, raise_on_missing_output=False):
            # Where work and actors were placed; not the calls on coordinating actors.
            if task.node_id and task.type in ("NORMAL_TASK", "ACTOR_CREATION_TASK"):
                counts[name(task.node_id)] = counts.get(name(task.node_id), 0) + 1
        return {
            "driver_node": name(ray.get_runtime_context().get_node_id()),
            "task_nodes": dict(sorted(counts.items())),
            # Where this very module was imported from: a runtime_env's py_modules, or a local install.
            "package": "runtime_env" if "runtime_resources" in __file__ else "local",
        }
    except Exception as err:  # diagnostics only: never fail a committed stage for them
        print(f"could not tell where the job ran: {type(err).__name__}: {err}", flush=True)
        return None


def exit_now(code: int) -> None:
    """Leave the driver at once, once its result is reported (or it failed cleanly).

    The stage's commits are made and its result line printed: Ray's shutdown and the interpreter's
    teardown (half a second to a second on a small node, paid by every stage) add nothing. The
    raylet releases a finished driver's workers and objects by itself.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())

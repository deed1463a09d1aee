"""``ray-lakehouse``: validate, render and draw pipeline specs; print their JSON Schema.

Needs no Airflow database and no Ray cluster (it does not import Airflow at all).

  ray-lakehouse validate PATH...            non-zero exit on any error (CI, pre-commit)
  ray-lakehouse render NAME [--path DIR]    resolved spec and each task's operator and parameters
  ray-lakehouse graph NAME --format mermaid|dot
  ray-lakehouse schema [--output FILE]      the JSON Schema for editors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ray_operators.pipelines.errors import PipelineSpecError
from ray_operators.pipelines.loader import LoadedPipeline, find_specs, load_pipeline

DEFAULT_FOLDER = Path("dags") / "pipelines"
SCHEMA_FILE = Path(__file__).with_name("pipeline.schema.json")


def _folders(extra: list[str] | None) -> list[Path]:
    folders = [Path(p) for p in extra or []] or [DEFAULT_FOLDER]
    folders += [Path(p) for p in os.environ.get("RAY_LAKEHOUSE_PIPELINE_DIRS", "").split(os.pathsep) if p]
    return folders


def cmd_validate(args: argparse.Namespace) -> int:
    specs = find_specs(*args.paths)
    missing = [p for p in args.paths if not Path(p).exists()]
    for path in missing:
        print(f"{path}: error: no such file or folder", file=sys.stderr)
    if not specs and not missing:
        print(f"no pipeline specs (*.yaml, *.yml) under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    failed = len(missing)
    names: dict[str, Path] = {}
    for path in specs:
        try:
            loaded = load_pipeline(path)
        except PipelineSpecError as err:
            failed += 1
            print(err, file=sys.stderr)
            continue
        for warning in loaded.warnings:
            print(warning, file=sys.stderr)
        name = loaded.pipeline.name
        if name in names:
            failed += 1
            print(f"{path}:1:1: error: pipeline name {name!r} is also used by {names[name]}", file=sys.stderr)
            continue
        names[name] = path
        print(f"{path}: ok ({name}, {len(loaded.pipeline.stages)} stages)")
    print(f"{len(specs)} spec(s), {failed} with errors", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _find(name: str, folders: list[Path]) -> LoadedPipeline:
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_pipeline(candidate)
    for path in find_specs(*folders):
        if path.stem == name:
            return load_pipeline(path)
    for path in find_specs(*folders):
        try:
            loaded = load_pipeline(path)
        except PipelineSpecError:
            continue
        if loaded.pipeline.name == name:
            return loaded
    raise LookupError(f"no pipeline named {name!r} under {', '.join(map(str, folders))}")


def cmd_render(args: argparse.Namespace) -> int:
    from ray_operators.pipelines.graph import build_graph

    loaded = _find(args.name, _folders(args.path))
    graph = build_graph(loaded.pipeline)
    if args.json:
        print(
            json.dumps(
                {"spec": loaded.pipeline.model_dump(mode="json", by_alias=True), "graph": graph.to_json()},
                indent=2,
                default=str,
            )
        )
        return 0
    import yaml

    print(f"# {loaded.path}")
    print(
        yaml.safe_dump(
            loaded.pipeline.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=False
        )
    )
    print(graph.render())
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from ray_operators.pipelines.graph import build_graph

    graph = build_graph(_find(args.name, _folders(args.path)).pipeline)
    sys.stdout.write(graph.mermaid() if args.format == "mermaid" else graph.dot())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from ray_operators.pipelines.models import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ray-lakehouse", description="Declarative Ray lakehouse pipelines")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate spec files or folders")
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_validate)
    for name, func, helptext in (
        ("render", cmd_render, "the resolved spec and its tasks"),
        ("graph", cmd_graph, "the task graph as mermaid or dot"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("name", help="pipeline name or spec file")
        p.add_argument("--path", action="append", help=f"spec folder (default {DEFAULT_FOLDER})")
        if name == "graph":
            p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
        else:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
    p = sub.add_parser("schema", help="print the JSON Schema of a pipeline spec")
    p.add_argument("--output", help="write it to this file")
    p.set_defaults(func=cmd_schema)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PipelineSpecError as err:
        print(err, file=sys.stderr)
        return 1
    except LookupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

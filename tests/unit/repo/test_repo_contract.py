"""The README's two commands, the Makefile and CI agree; the compose file is structurally sound."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.helpers.paths import REPO


def test_readme_starts_with_exactly_the_two_setup_commands():
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    for target in ("demo", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no {target} target"


def test_ci_runs_make_test():
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_compose_file_has_airflow_and_ray_with_health_checks_and_secret_wiring():
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    services = compose["services"]
    for name in (
        "postgres",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "ray-head",
    ):
        assert name in services, name
        assert "healthcheck" in services[name], f"{name} has no health check"
    env = services["airflow-scheduler"]["environment"]
    assert "AIRFLOW_CONN_RAY_DEFAULT" in env
    # The token comes from .env, never a literal in the file.
    assert "${RAY_AUTH_TOKEN" in env["AIRFLOW_CONN_RAY_DEFAULT"]
    assert services["ray-head"]["environment"]["RAY_AUTH_MODE"] == "token"


def test_every_make_target_the_readme_names_exists():
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    named = set(re.findall(r"`make (?:-s )?([a-z][a-z-]*)", readme)) | set(
        re.findall(r"\bmake ([a-z][a-z-]+)", readme)
    )
    assert {"demo", "test", "airflow", "bench"} <= named
    for target in named:
        assert re.search(rf"^{target}:", makefile, re.M), (
            f"README names `make {target}`, the Makefile has no such target"
        )


def test_one_version_a_changelog_and_typed_package():
    """The version has one source (ray_operators.__version__); the package says it is typed."""
    import tomllib
    from importlib.metadata import version

    import ray_operators

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ray_operators.__version__"}
    assert version("airflow-provider-ray-lakehouse") == ray_operators.__version__
    assert (REPO / "ray_operators" / "py.typed").exists()
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["ray_operators"]
    assert "## Unreleased" in (REPO / "CHANGELOG.md").read_text()


def test_pre_commit_runs_ruff_and_validates_the_shipped_specs():
    hooks = {
        hook["id"]: hook
        for repo in yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())["repos"]
        for hook in repo["hooks"]
    }
    assert hooks["ruff-check"]["entry"].startswith("ruff check")
    assert hooks["ruff-format"]["entry"].startswith("ruff format")
    assert hooks["mypy"]["entry"] == "mypy" and hooks["mypy"]["pass_filenames"] is False  # pyproject's files
    validate = hooks["ray-lakehouse-validate"]
    assert validate["entry"] == "ray-lakehouse validate"
    specs = [p.relative_to(REPO).as_posix() for p in (REPO / "dags" / "pipelines").glob("*.yaml")]
    assert specs and all(re.search(validate["files"], spec) for spec in specs)


def test_unit_tests_need_no_ray_head_and_no_airflow_database():
    """What `make test-unit` runs: no test or fixture under tests/unit asks for the services'
    fixtures or runs a DAG."""
    import ast

    paths = sorted((REPO / "tests" / "unit").rglob("*.py"))
    assert len([p for p in paths if p.name.startswith("test_")]) >= 30
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                used = {a.arg for a in node.args.args} & {"airflow_db", "ray_head", "hook"}
                assert not used, f"{path.name}:{node.lineno} {node.name} asks for {used}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_dag":
                raise AssertionError(f"{path.name}:{node.lineno} runs a DAG")


def _package_modules() -> list[Path]:
    return sorted(p for p in (REPO / "ray_operators").rglob("*.py") if p.name != "__init__.py")


def test_make_test_runs_mypy_strict_on_the_pipelines_and_the_contract():
    import tomllib

    makefile = (REPO / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") :].split("\n\n", 1)[0]
    assert "$(VENV)/bin/mypy" in lint and re.search(r"^test: lint", makefile, re.M)
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["files"] == ["ray_operators"]
    (strict,) = [o for o in mypy["overrides"] if "ray_operators.pipelines.*" in o["module"]]
    assert "ray_operators.contract.*" in strict["module"]
    for flag in (
        "disallow_untyped_defs",
        "disallow_untyped_calls",
        "disallow_any_generics",
        "warn_return_any",
    ):
        assert strict[flag] is True, flag


def test_unit_tests_mirror_the_source_tree():
    """tests/unit/ray_operators/<package>/test_<module>.py tests ray_operators/<package>/<module>.py."""
    root = REPO / "tests" / "unit" / "ray_operators"
    tests = sorted(root.rglob("test_*.py"))
    assert len(tests) >= 30
    for test in tests:
        module = test.parent.relative_to(root) / (test.name.removeprefix("test_"))
        assert (REPO / "ray_operators" / module).is_file(), f"{test.relative_to(REPO)} mirrors no module"
    assert not list((REPO / "tests" / "unit").glob("test_*.py")), "unit tests live under a package path"


def test_no_function_in_the_package_is_longer_than_80_lines():
    import ast

    long = []
    for path in _package_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_readme_layout_names_every_part_of_the_tree():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout and boundaries") :]
    block = section.split("```", 2)[1]
    named = set(re.findall(r"[\w.]+/?", block))
    package = REPO / "ray_operators"
    for entry in sorted(package.iterdir()):
        if entry.name.startswith("__") or entry.name == "py.typed":
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            assert f"{entry.name}/" in named, f"the layout does not name ray_operators/{entry.name}/"
        elif entry.suffix == ".py":
            assert entry.name in named, f"the layout does not name ray_operators/{entry.name}"
    for pipeline_module in (package / "pipelines").glob("*.py"):
        if pipeline_module.name != "__init__.py":
            assert pipeline_module.name in named, f"the layout does not name pipelines/{pipeline_module.name}"
    for folder in ("plugins", "dags", "docs", "docker", "bench", "tests"):
        assert f"{folder}/" in named
    for line in block.splitlines():
        for token in re.findall(r"(?:^|\s)([\w]+/)(?=\s)", line):
            top = REPO / token if not line.startswith("  ") else None
            if top is not None:
                assert top.is_dir(), f"the layout names {token}, which is not in the tree"
    for sub in (
        "unit/ray_operators",
        "unit/repo",
        "integration",
        "helpers",
        "dags",
        "dags_scheduler",
        "jobs",
    ):
        assert (REPO / "tests" / sub).is_dir() and f"{sub.rsplit('/', 1)[-1]}/" in named

"""The README's two commands, the Makefile and CI agree; the compose file is structurally sound."""

from __future__ import annotations

import re

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
    validate = hooks["ray-lakehouse-validate"]
    assert validate["entry"] == "ray-lakehouse validate"
    specs = [p.relative_to(REPO).as_posix() for p in (REPO / "dags" / "pipelines").glob("*.yaml")]
    assert specs and all(re.search(validate["files"], spec) for spec in specs)


def test_unit_tests_need_no_ray_head_and_no_airflow_database():
    """What `make test-unit` runs: no test or fixture under tests/unit asks for the services'
    fixtures or runs a DAG."""
    import ast

    for path in (REPO / "tests" / "unit").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                used = {a.arg for a in node.args.args} & {"airflow_db", "ray_head", "hook"}
                assert not used, f"{path.name}:{node.lineno} {node.name} asks for {used}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_dag":
                raise AssertionError(f"{path.name}:{node.lineno} runs a DAG")

"""The README's two commands, the Makefile and CI agree; the compose file is structurally sound."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


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

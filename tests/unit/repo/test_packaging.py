"""The provider is registered with Airflow, the plugin loads, and the import boundaries hold."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import REPO

HEAVY = {"ray", "pyiceberg", "pyarrow", "torch", "pandas", "numpy", "pyspark"}


def test_provider_entry_point_registers_ray_connection_hook_and_link():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-ray-lakehouse" in manager.providers
    hook = manager.hooks["ray"]
    assert hook.hook_class_name == "ray_operators.hooks.ray.RayJobsHook"
    assert hook.connection_testable
    behaviour = manager.field_behaviours["ray"]
    assert behaviour["relabeling"]["password"] == "Ray auth token"
    assert "ray_operators.links.ray.RayJobLink" in manager.extra_links_class_names
    # We reuse the Iceberg provider's connection type instead of defining a second one.
    assert manager.hooks["iceberg"].hook_class_name.startswith("airflow.providers.apache.iceberg")


def test_plugin_registers_the_ray_job_extra_link():
    from airflow import plugins_manager

    names = {plugin["name"]: plugin for plugin in plugins_manager.get_plugin_info()}
    assert "ray_lakehouse" in names, names.keys()
    links = plugins_manager.get_operator_extra_links()
    assert any("RayJobLink" in str(link) for link in links)


def test_the_ray_connection_form_has_its_extra_fields():
    """Airflow 3.2+ ``conn-fields``: the form shows them; the hook reads them by these names."""
    from airflow.providers_manager import ProvidersManager

    widgets = ProvidersManager().connection_form_widgets
    fields = {w.field_name: w for name, w in widgets.items() if name.startswith("extra__ray__")}
    assert set(fields) == {"dashboard_url", "auth_header", "verify", "request_timeout"}
    assert fields["request_timeout"].field["value"] == 30.0
    assert fields["auth_header"].field["schema"]["enum"] == ["authorization", "x-ray-authorization", None]
    assert not any(w.is_sensitive for w in fields.values())


def test_plugin_adds_the_lineage_views_without_loading_the_api_server():
    """The nav page and the DAG-run tab; the app is built at its first request, so loading the
    plugin (every Airflow process does) imports none of the API server's modules."""
    code = (
        "import json, sys\n"
        "from airflow import plugins_manager\n"
        "apps, _ = plugins_manager.get_fastapi_plugins()\n"
        "views, _ = plugins_manager._get_ui_plugins()\n"
        "print(json.dumps({'apps': [(a['name'], a['url_prefix']) for a in apps], 'views': views,\n"
        "  'api': sorted(m for m in sys.modules if m.startswith('airflow.api_fastapi.core_api.security'))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert ["ray_lakehouse_lineage", "/ray-lakehouse"] in got["apps"]
    assert {(v["destination"], v["href"]) for v in got["views"]} == {
        ("nav", "/ray-lakehouse/lineage"),
        ("dag_run", "/ray-lakehouse/lineage/run?dag_id={DAG_ID}&run_id={RUN_ID}"),
    }
    assert all(v["url_route"] for v in got["views"])  # the UI shows a tab only with a url_route
    assert got["api"] == []


def test_operator_template_fields_and_link():
    from ray_operators.operators.ray_job import RayJobOperator

    assert set(RayJobOperator.template_fields) == {
        "entrypoint",
        "runtime_env",
        "entrypoint_num_cpus",
        "entrypoint_num_gpus",
        "entrypoint_memory",
        "entrypoint_resources",
        "metadata",
    }
    assert [link.name for link in RayJobOperator.operator_extra_links] == ["Ray Job"]


def test_airflow_side_modules_import_no_heavy_packages():
    modules = [
        "ray_operators.hooks.ray",
        "ray_operators.operators.ray_job",
        "ray_operators.triggers.ray_job",
        "ray_operators.links.ray",
        "ray_operators.get_provider_info",
        "ray_operators.sensors.iceberg",
        "ray_operators.triggers.iceberg",
        "ray_operators.iceberg_catalog",
        "ray_operators.assets",
        "ray_operators.iceberg_snapshots",
        "ray_operators.lineage.web",
        "ray_operators.lineage.naming",
    ]
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(json.dumps(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def imported_names(path: Path) -> list[str]:
    """Every module a file imports, wherever the import stands (module level or in a function)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_ray_side_job_code_never_imports_airflow():
    for path in (REPO / "ray_operators" / "jobs").rglob("*.py"):
        for name in imported_names(path):
            assert not name.startswith("airflow"), f"{path}: imports {name}"
            # Ray-side code may share only modules that are themselves Airflow-free.
            if name.startswith("ray_operators") and not name.startswith(SHARED_WITH_RAY):
                raise AssertionError(f"{path}: imports {name} from the Airflow side")


#: What Ray-side code may import from this package: itself, the contract, the snapshot lineage, the
#: curation protocol.
SHARED_WITH_RAY = (
    "ray_operators.jobs",
    "ray_operators.contract",
    "ray_operators.iceberg_snapshots",
    "ray_operators.curation",
)


def test_the_curation_protocol_is_engine_neutral():
    """Both curate engines import it: no Airflow, Ray or Spark, and nothing of the package but the
    contract, the snapshot lineage and the one file-IO rule (``jobs/storage.py``)."""
    for path in (REPO / "ray_operators" / "curation").rglob("*.py"):
        for name in imported_names(path):
            assert name.split(".")[0] not in ("airflow", "ray", "pyspark"), f"{path}: imports {name}"
            if name.startswith("ray_operators"):
                assert name.startswith(
                    ("ray_operators.contract", "ray_operators.curation", "ray_operators.jobs.storage")
                ), f"{path}: the curation protocol imports {name}"


def test_the_contract_and_snapshot_lineage_import_neither_airflow_nor_ray():
    shared = [
        *(REPO / "ray_operators" / "contract").rglob("*.py"),
        REPO / "ray_operators" / "iceberg_snapshots.py",
    ]
    for path in shared:
        for name in imported_names(path):
            root = name.split(".")[0]
            assert root not in ("airflow", "ray"), f"{path}: imports {name}"
            if name.startswith("ray_operators"):
                assert name.startswith(("ray_operators.contract", "ray_operators.iceberg_snapshots")), (
                    f"{path}: the shared contract imports {name}"
                )


def test_the_provider_never_imports_the_devstack():
    """Local stacks are for demos and tests: a deployed provider must not depend on them."""
    package = REPO / "ray_operators"
    for path in package.rglob("*.py"):
        if path.is_relative_to(package / "devstack"):
            continue
        for name in imported_names(path):
            assert not name.startswith("ray_operators.devstack"), f"{path}: imports {name}"


def test_lineage_routes_run_in_the_thread_pool_not_on_the_event_loop():
    """Plain ``def`` routes: FastAPI runs them in its thread pool, so the catalogs' and the
    database's blocking calls never stall the API server's event loop."""
    import inspect

    from fastapi.routing import APIRoute

    from ray_operators.lineage.web import create_app

    routes = [r for r in create_app().routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} == {"/lineage", "/lineage/run", "/api/lineage", "/api/lineage/run"}
    for route in routes:
        assert not inspect.iscoroutinefunction(route.endpoint), route.path
        assert route.dependencies, f"{route.path} has no access check"

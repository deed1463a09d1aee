"""`make airflow`: the embedded stack with the real Airflow scheduler, triggerer and web UI.

The same state as `make demo` (``.local/``: SqlCatalog + warehouse, raw data, an embedded Ray head
with token auth), served by ``airflow standalone`` on localhost with the pipelines of
``dags/pipelines`` loaded. Airflow's metadata lives in a private PostgreSQL cluster
(``.local/postgres``, kept between runs; a throwaway one where its server user cannot reach that
folder), so CLI commands beside the scheduler never find it locked; SQLite in the Airflow home
where no PostgreSQL server is installed. Trigger runs from the UI (with params), watch the
sensors defer, run ``airflow backfill create`` in another shell (``make airflow-shell`` prints the
environment to use). Ctrl-C stops everything it started, by pid.

Login: user ``admin``; Airflow's simple auth manager generates the password on first start into
``.local/airflow/simple_auth_manager_passwords.json.generated``; this command prints it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from ray_operators.devstack.demo import generate_batch, prepare, without_dag_test_hold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="runtime state (default: PROJECT/.local)"
    )
    parser.add_argument("--port", type=int, default=8080, help="UI port (a free one when this is taken)")
    parser.add_argument("--rows", type=int, default=3000, help="samples in the first raw batch")
    args = parser.parse_args(argv)

    project = args.project_dir.resolve()
    root = (args.state_dir or project / ".local").resolve()
    env = prepare(root, project)
    if not list((root / "raw" / "samples").glob("batch-*.csv")):
        batch = generate_batch(root, args.rows)
        print(f"==> Raw batch {batch['batch']} generated under {root / 'raw'}", flush=True)

    from ray_operators.devstack.ports import free_port
    from ray_operators.devstack.ray_cluster import LocalRayHead
    from ray_operators.devstack.standalone import StandaloneAirflow

    postgres = _start_postgres(root)
    head = stack = None
    try:
        head = LocalRayHead(workdir=root / "ray").start()
        print(f"==> Ray head with token auth; dashboard {head.address}", flush=True)
        env.update(head.connection_env("ray_default"))
        os.environ.update(env)
        stack = StandaloneAirflow(
            home=root / "airflow",
            dags_folder=project / "dags",
            plugins_folder=project / "plugins",
            env=without_dag_test_hold(env),
            database_url=postgres.url if postgres else None,
        )
        stack.port = args.port if _free(args.port) else free_port()
        print(
            f"==> Starting Airflow (scheduler, triggerer, dag-processor, api-server) on {stack.url}",
            flush=True,
        )
        stack.start(timeout=300)
        stack.wait_api()
        dags = stack.wait_parsed({"lakehouse", "spark_logs", "curate_samples", "features_on_snapshot"})
        try:
            password = stack.password(timeout=30)
        except RuntimeError:
            password = f"(see {stack.passwords_path})"
        print(f"\n    Airflow UI: {stack.url}   login: admin / {password}", flush=True)
        print(f"    pipelines: {', '.join(sorted(dags))}", flush=True)
        print(
            f"    Iceberg lineage: {stack.url}/plugin/iceberg-lineage (and a tab on every DAG run)",
            flush=True,
        )
        print(
            '    shell:      eval "$(make -s airflow-env)" then e.g. airflow backfill create ...', flush=True
        )
        _write_env_file(root, stack.environment())
        print("    Ctrl-C stops everything.\n", flush=True)
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"] and stack.process and stack.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        print("==> Stopping Airflow, the Ray head" + (" and PostgreSQL" if postgres else ""), flush=True)
        if stack is not None:
            stack.stop()
        if head is not None:
            head.stop()
        if postgres is not None:
            postgres.stop()


def _start_postgres(root: Path):
    """Airflow's metadata database: PostgreSQL under ``root/postgres`` when possible."""
    from ray_operators.devstack.postgres import (
        INSTALL_HINT,
        LocalPostgres,
        find_postgres_bin,
        server_can_reach,
    )

    if find_postgres_bin() is None:
        print(f"==> No PostgreSQL server ({INSTALL_HINT}): Airflow's metadata in SQLite", flush=True)
        return None
    workdir = root / "postgres"
    if server_can_reach(workdir):
        server = LocalPostgres(workdir=workdir).start()
        print(
            f"==> PostgreSQL (Airflow's metadata) on 127.0.0.1:{server.port}, data in {workdir}", flush=True
        )
    else:
        server = LocalPostgres().start()
        print(
            f"==> PostgreSQL (Airflow's metadata) on 127.0.0.1:{server.port}, in a temporary folder: its "
            f"server user cannot reach {workdir}, so the metadata is not kept between runs",
            flush=True,
        )
    return server


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_env_file(root: Path, env: dict[str, str]) -> None:
    """``.local/airflow.env``: what an `airflow` CLI in another shell needs to reach this stack."""
    keep = {k: v for k, v in env.items() if k.startswith(("AIRFLOW", "LAKEHOUSE_", "RAY_"))}
    lines = [f"export {k}={_quote(v)}" for k, v in sorted(keep.items())]
    path = root / "airflow.env"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the Ray token


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


if __name__ == "__main__":
    sys.exit(main())

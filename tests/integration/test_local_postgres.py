"""LocalPostgres kept between runs (``make airflow``'s ``.local/postgres``): a second start on the
same folder finds its databases, takes a new port, and keeps one copy of each setting."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from ray_operators.devstack.postgres import INSTALL_HINT, LocalPostgres, find_postgres_bin, server_can_reach

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    find_postgres_bin() is None, reason=f"PostgreSQL server binaries not found: {INSTALL_HINT}"
)
def test_a_kept_data_folder_starts_again_with_its_databases():
    # A folder the server's user can reach (pytest's own temporary root is private to root).
    base = Path(tempfile.mkdtemp(prefix="lakehouse-pg-kept-"))
    base.chmod(0o755)
    try:
        workdir = base / "postgres"
        first = LocalPostgres(workdir=workdir, database="airflow").start()
        try:
            first.create_database("kept")
        finally:
            first.stop()
        assert (workdir / "data" / "PG_VERSION").exists()  # a given workdir is never removed

        again = LocalPostgres(workdir=workdir, database="airflow").start()
        try:
            assert {"airflow", "kept"} <= again.databases()
            auto = (workdir / "data" / "postgresql.auto.conf").read_text().splitlines()
            ports = [line for line in auto if line.startswith("port ")]
            assert ports == [f"port = {again.port}"], auto
        finally:
            again.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_server_can_reach_needs_search_permission_on_every_ancestor(tmp_path):
    if os.geteuid() != 0:
        # Not root: the server runs as this user, who can reach its own folders.
        assert server_can_reach(tmp_path / "postgres")
        return
    # As root the server runs as an unprivileged user: it needs search permission on every
    # ancestor. An open folder (0755 below /tmp) is reachable; one only root may enter is not,
    # and neither is anything below it.
    base = Path(tempfile.mkdtemp(prefix="lakehouse-pg-reach-"))
    try:
        base.chmod(0o755)
        (base / "private").mkdir(mode=0o700)
        (base / "private").chmod(0o700)
        assert all(p.stat().st_mode & stat.S_IXOTH for p in base.parents)
        assert server_can_reach(base / "postgres")
        assert server_can_reach(base / "not" / "yet" / "made")
        assert not server_can_reach(base / "private" / "postgres")
        assert not server_can_reach(base / "private")
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""A throwaway PostgreSQL server on loopback, for the real-scheduler tests (``airflow standalone``).

SQLite allows one writer at a time, and the scheduler, dag-processor, triggerer and API server all
write: CLI commands run beside them (``airflow backfill create``) then find the database locked.
PostgreSQL has no such limit. :class:`LocalPostgres` runs its own cluster from the server binaries
(Debian's ``postgresql-15`` installs them under ``/usr/lib/postgresql/15/bin``, off ``PATH``):
its own data and socket folders, a free ``127.0.0.1`` port, ``trust`` authentication (local only,
throwaway data). ``initdb`` and ``pg_ctl`` refuse to run as root: as root the server runs as an
unprivileged system user (``lakehouse-pg``, created when missing; ``nobody`` when it cannot be).
It is stopped with ``pg_ctl stop -m fast``, then by its postmaster's pid, never by name.

Only the standard library is imported here; clients connect with the URL (psycopg2 driver).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

#: What to install where no server binaries are found.
INSTALL_HINT = (
    "install the server with `apt-get install postgresql-15` (initdb, pg_ctl, postgres under "
    "/usr/lib/postgresql/15/bin) and its drivers psycopg2-binary and asyncpg with `pip install -e .[dev]`"
)
#: The system user the server runs as when this process is root.
SERVER_USER = "lakehouse-pg"
_TOOLS = ("initdb", "pg_ctl", "postgres")


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None where there is none.

    Looked for in ``$LAKEHOUSE_PG_BIN``, next to ``pg_ctl`` on ``PATH``, then in Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest version first).
    """
    candidates: list[Path] = []
    if os.environ.get("LAKEHOUSE_PG_BIN"):
        candidates.append(Path(os.environ["LAKEHOUSE_PG_BIN"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.is_dir()]
    candidates.extend(sorted(debian, key=version, reverse=True))
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in _TOOLS):
            return folder
    return None


def _server_user() -> pwd.struct_passwd:
    """The unprivileged user a root process runs the server as (created when missing)."""
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    if os.access(useradd, os.X_OK):
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    try:  # created now, or by a concurrent session between the two look-ups
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return pwd.getpwnam("nobody")


class LocalPostgres:
    """
    A PostgreSQL cluster of its own, on ``127.0.0.1``, with one database created at start.

    :param workdir: folder for the data directory, the socket directory and ``postgres.log``;
        the server's user must be able to reach it. Default: a fresh private folder in the system
        temporary directory, removed on :meth:`stop`.
    :param port: TCP port (default: a free one).
    :param database: the database created at start (:attr:`url` points at it).
    :param bin_dir: the server binaries (default: :func:`find_postgres_bin`).
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        port: int | None = None,
        database: str = "airflow",
        bin_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir) if workdir else None
        self.port = port or 0
        self.database = database
        self.bin_dir = Path(bin_dir) if bin_dir else None
        self.pid: int | None = None
        self.user = ""  # the server's OS user, also its superuser role
        self._run_as: list[str] = []
        self._owns_workdir = False

    # -- paths and URLs ----------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._workdir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._workdir() / "sock"

    @property
    def log_path(self) -> Path:
        return self._workdir() / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of :attr:`database` (Airflow's ``sql_alchemy_conn``)."""
        return self.database_url(self.database)

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{name}"

    def _workdir(self) -> Path:
        if self.workdir is None:
            raise RuntimeError("LocalPostgres is not started")
        return self.workdir

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> LocalPostgres:
        if self.pid is not None:
            return self
        self.bin_dir = self.bin_dir or find_postgres_bin()
        if self.bin_dir is None:
            raise RuntimeError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
        if os.geteuid() == 0:
            account = _server_user()
            self._run_as = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", account.pw_name, "--"]
        else:
            account = pwd.getpwuid(os.geteuid())
            self._run_as = []
        self.user = account.pw_name
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.workdir, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
            os.chmod(self.workdir, 0o700)

        from ray_operators.devstack.ports import free_port  # standard library only, like this module

        self.port = self.port or free_port()
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                self._server_tool(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                )
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.socket_dir}'",
                # Scheduler, dag-processor, triggerer, API server workers: a pool each.
                "max_connections": "200",
            }
            # Throwaway data (a temporary workdir) needs no durability; a kept one does.
            durable = "off" if self._owns_workdir else "on"
            settings.update(fsync=durable, synchronous_commit=durable, full_page_writes=durable)
            # postgresql.auto.conf is read last: these win over anything earlier. A data directory
            # kept from an earlier start gets them again (a new port): rewritten, not appended.
            auto = self.data_dir / "postgresql.auto.conf"
            kept = [
                line
                for line in (auto.read_text().splitlines() if auto.exists() else [])
                if line.split("=", 1)[0].strip() not in settings
            ]
            auto.write_text(
                "\n".join([*kept, *(f"{key} = {value}" for key, value in settings.items())]) + "\n"
            )
            self._server_tool(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
                timeout=timeout + 30,
            )
            self.pid = self._postmaster_pid()
            if self.database not in self.databases():
                self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown, then its pid), and remove a temporary workdir."""
        pid, self.pid = self.pid, None
        if pid is None and self.workdir is not None and (self.data_dir / "postmaster.pid").exists():
            pid = self._postmaster_pid()  # start() failed after the server came up
        if pid is not None:
            subprocess.run(
                [
                    *self._run_as,
                    str(self._tool("pg_ctl")),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(timeout)),
                    "stop",
                ],
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout + 30,
                check=False,
            )
            _stop_pid(pid, timeout=10)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._owns_workdir = False

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (it must not exist); returns its SQLAlchemy URL.

        :param template: copy this database (``createdb -T``: a file-level copy, far quicker than
            building the same schema again); nothing may be connected to it meanwhile.
        """
        for each in (name, template):
            if each is not None and not re.fullmatch(r"[a-z_][a-z0-9_]*", each):
                raise ValueError(f"not a plain database name: {each!r}")
        done = self._client("createdb", *(("-T", template) if template else ()), name)
        if done.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.database_url(name)

    def databases(self) -> set[str]:
        """The names of the cluster's databases."""
        done = self._client("psql", "-d", "postgres", "-Atc", "SELECT datname FROM pg_database")
        if done.returncode != 0:
            raise RuntimeError(f"listing databases failed: {done.stderr.strip()}")
        return set(done.stdout.split())

    def dump(self, name: str) -> str:
        """Database ``name`` as SQL text (``pg_dump``): every row of every table, to audit it."""
        done = self._client("pg_dump", name, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"pg_dump {name} failed: {done.stderr.strip()}")
        return done.stdout

    # -- helpers -----------------------------------------------------------------------------
    def _client(self, tool: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a client tool (``createdb``, ``psql``, ``pg_dump``) against this server over TCP."""
        return subprocess.run(
            [str(self._tool(tool)), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )

    def _tool(self, name: str) -> Path:
        assert self.bin_dir is not None
        return self.bin_dir / name

    def _server_tool(self, name: str, *args: str, timeout: float = 120.0) -> None:
        """Run ``initdb``/``pg_ctl`` as the server's user; fail with its output and the log."""
        done = subprocess.run(
            [*self._run_as, str(self._tool(name)), *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{name} exited {done.returncode}: {done.stdout}{done.stderr}\n{log}".strip())

    def _postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_can_reach(path: Path) -> bool:
    """Whether the server's OS user may use ``path`` as its workdir: as root the server runs as
    :data:`SERVER_USER`, which needs search permission on every existing ancestor (a private
    home or pytest's ``/tmp/pytest-of-root`` refuses it)."""
    if os.geteuid() != 0:
        return True
    import stat

    account = _server_user()
    groups = {account.pw_gid, *(g.gr_gid for g in _groups_of(account.pw_name))}
    for folder in [path, *path.parents]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            continue  # created by start(), owned by the server's user
        if info.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _groups_of(user: str) -> list:
    import grp

    return [g for g in grp.getgrall() if user in g.gr_mem]


def _stop_pid(pid: int, timeout: float) -> None:
    """Wait for the postmaster ``pid`` to exit; SIGQUIT (immediate shutdown), then SIGKILL."""
    for sig in (None, signal.SIGQUIT, signal.SIGKILL):
        if sig is not None:
            if not _is_postgres(pid):
                return
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_postgres(pid):
                return
            time.sleep(0.1)


def _is_postgres(pid: int) -> bool:
    """Whether ``pid`` is (still) a live postgres process, not a reused pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and cmdline.split(b"\0")[0].rsplit(b"/", 1)[-1] in (b"postgres", b"postmaster")

"""Where a local Spark runtime lives: ``spark-submit``, the Iceberg Spark runtime jar, Java and the
SQLite JDBC driver. Imports no pyspark (the Airflow side calls this when it builds a submit).

``make install`` puts Spark 3.5.9 (PyPI ``pyspark==3.5.9``) and the Iceberg 1.10.2 Spark runtime
jar (PyPI ``snowpark-connect-deps-iceberg==1.0.2``) in ``.venv/spark``, apart from the
environment's own packages: the Airflow Spark provider depends on ``pyspark-client`` 4.x, which
installs into the same ``pyspark`` folder. ``spark-submit`` puts its own ``pyspark.zip`` first on
the driver's ``PYTHONPATH``, so the driver runs Spark 3.5.9's Python side with this environment's
other packages.

Overrides: ``RAY_LAKEHOUSE_SPARK_HOME`` (a folder laid out like ``.venv/spark``), ``SPARK_HOME``,
``JAVA_HOME``, ``RAY_LAKEHOUSE_SQLITE_JDBC_JAR``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

#: The Spark this project runs and tests with, and the Iceberg runtime built for it.
SPARK_VERSION = "3.5.9"
#: What ``make install`` puts in ``.venv/spark`` (``python -m ray_operators.spark.runtime install``).
#: Exactly 1.0.2 of the jar package: 1.0.3 strips shaded classes and ``CREATE TABLE`` fails.
REQUIREMENTS = (f"pyspark=={SPARK_VERSION}", "snowpark-connect-deps-iceberg==1.0.2")
ICEBERG_RUNTIME_JAR = "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
#: Debian's ``libxerial-sqlite-jdbc-java`` installs it here.
SQLITE_JDBC_JARS = ("/usr/share/java/sqlite-jdbc.jar", "/usr/share/java/xerial-sqlite-jdbc.jar")
INSTALL_HINT = (
    "make install puts Spark and the Iceberg runtime in .venv/spark; Java 17 comes from Debian "
    "openjdk-17-jre-headless and the SQLite JDBC driver from libxerial-sqlite-jdbc-java "
    "(apt-get install openjdk-17-jre-headless libxerial-sqlite-jdbc-java)"
)


@dataclass(frozen=True)
class SparkRuntime:
    spark_home: Path
    iceberg_jar: Path
    java_home: Path | None
    sqlite_jdbc_jar: Path | None

    @property
    def spark_submit(self) -> Path:
        return self.spark_home / "bin" / "spark-submit"

    @property
    def python_path(self) -> list[str]:
        """What ``spark-submit`` puts first on a Python driver's path (for in-process sessions)."""
        lib = self.spark_home / "python" / "lib"
        return [str(p) for p in sorted(lib.glob("*.zip"))]

    def jars(self) -> list[str]:
        return [str(p) for p in (self.iceberg_jar, self.sqlite_jdbc_jar) if p is not None]

    def env(self) -> dict[str, str]:
        """The environment ``spark-submit`` runs with: this runtime first on ``PATH``, this Python as
        the driver's and executors' Python."""
        env = {
            "SPARK_HOME": str(self.spark_home),
            "PATH": f"{self.spark_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
        }
        if self.java_home is not None:
            env["JAVA_HOME"] = str(self.java_home)
        return env


def _root() -> Path:
    if value := os.environ.get("RAY_LAKEHOUSE_SPARK_HOME"):
        return Path(value)
    return Path(sys.prefix) / "spark"


def java_home() -> Path | None:
    if value := os.environ.get("JAVA_HOME"):
        return Path(value)
    java = shutil.which("java")
    if java is None:
        return None
    return Path(os.path.realpath(java)).parent.parent


def sqlite_jdbc_jar() -> Path | None:
    if value := os.environ.get("RAY_LAKEHOUSE_SQLITE_JDBC_JAR"):
        return Path(value)
    return next((Path(p) for p in SQLITE_JDBC_JARS if Path(p).is_file()), None)


def missing(sqlite: bool = True) -> str | None:
    """What a local Spark run lacks, in words, or None when everything is there. ``sqlite``: the
    SQLite JDBC driver counts (for a pyiceberg SqlCatalog on a sqlite file)."""
    root = _root()
    home = Path(os.environ["SPARK_HOME"]) if os.environ.get("SPARK_HOME") else root / "pyspark"
    problems = []
    if not (home / "bin" / "spark-submit").is_file():
        problems.append(f"no spark-submit under {home}")
    if not (root / "snowpark_connect_deps_iceberg" / "jars" / ICEBERG_RUNTIME_JAR).is_file():
        problems.append(f"no {ICEBERG_RUNTIME_JAR} under {root}")
    java = java_home()
    if java is None or not (java / "bin" / "java").exists():
        problems.append("no Java (java on PATH or JAVA_HOME)")
    if sqlite and sqlite_jdbc_jar() is None:
        problems.append(f"no SQLite JDBC jar ({SQLITE_JDBC_JARS[0]})")
    return "; ".join(problems) + f". {INSTALL_HINT}" if problems else None


def local_runtime(sqlite: bool = False) -> SparkRuntime | None:
    """The local Spark runtime, or None when :func:`missing` names something (the SQLite JDBC
    driver only with ``sqlite``; it is on the runtime's jars whenever it is installed)."""
    if missing(sqlite) is not None:
        return None
    root = _root()
    home = Path(os.environ["SPARK_HOME"]) if os.environ.get("SPARK_HOME") else root / "pyspark"
    return SparkRuntime(
        spark_home=home,
        iceberg_jar=root / "snowpark_connect_deps_iceberg" / "jars" / ICEBERG_RUNTIME_JAR,
        java_home=java_home(),
        sqlite_jdbc_jar=sqlite_jdbc_jar(),
    )


def install(target: Path | None = None) -> None:
    """``pip install --target`` the Spark runtime (kept apart from the environment's packages)."""
    import subprocess

    target = target or _root()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--target", str(target), *REQUIREMENTS],
        check=True,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        install()
    elif sys.argv[1:] == ["check"]:
        print(missing() or "Spark runtime: ready")
    else:
        raise SystemExit("usage: python -m ray_operators.spark.runtime install|check")

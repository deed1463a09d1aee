"""Where a run's CPU goes, by kind of process: every process's CPU time (``/proc/PID/stat``)
sampled every 2 s until STOPFILE exists, added up by kind (Ray's raylet and GCS, Airflow's
services, Spark's JVMs...), written to OUT as JSON with the machine's busy core-seconds.

usage: python bench/cpu_by_process.py OUT.json STOPFILE &  (run the suite, then touch STOPFILE)

Processes already running when it starts count from then; a process's last <2 s before it exits
are missed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

HZ = os.sysconf("SC_CLK_TCK")

#: (kind, words any of which in the command line makes a process that kind), first match wins.
#: Workers come before the raylet: a worker's command line names the raylet's socket.
KINDS: list[tuple[str, tuple[str, ...]]] = [
    ("jvm (spark)", ("/bin/java", "spark-class")),
    ("ray agents (dashboard agent, runtime env agent)", ("DashboardAgent", "RuntimeEnvAgent")),
    ("ray workers (tasks, actors)", ("ray::", "default_worker.py")),
    ("ray core (raylet, gcs)", ("raylet", "gcs_server")),
    (
        "ray services (dashboard, agents, monitors)",
        ("dashboard", "log_monitor", "monitor.py", "client.server", "ray start"),
    ),
    ("job drivers (ray stage, pyspark)", ("ray_operators.jobs", "curate_spark_logs", "spark_wap_race")),
    ("devstack drivers (demo, make airflow)", ("ray_operators.devstack",)),
    (
        "airflow services",
        tuple(
            f"airflow {c}"
            for c in ("scheduler", "triggerer", "dag-processor", "api-server", "serve-logs", "standalone")
        ),
    ),
    ("airflow cli, tasks, dags test", ("airflow",)),
    ("pytest processes", ("pytest", "exec(eval(sys.stdin", "execnet")),
    ("postgres", ("postgres",)),
    ("seaweedfs", ("weed",)),
    ("browser", ("chrom", "playwright")),
    ("install, lint", ("pip", "mypy", "ruff")),
]


def kind(command: str) -> str:
    for name, words in KINDS:
        if any(word in command for word in words):
            return name
    return "other: " + command.split(" ")[0].split("/")[-1][:30]


def cpu_ticks(pid: str) -> tuple[int, str]:
    """A process's user + system clock ticks so far, and its start time (``/proc/PID/stat``)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), fields[19]


def busy_core_seconds() -> float:
    values = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = values[:7]
    return (user + nice + system + irq + softirq) / HZ


def main(out: str, stopfile: str) -> None:
    seen: dict[tuple[str, str], list] = {}  # (pid, start time) -> [ticks counted, kind]
    totals: Counter[str] = Counter()
    started, busy = time.time(), busy_core_seconds()
    first = True
    while not os.path.exists(stopfile):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                ticks, start = cpu_ticks(pid)
                key = (pid, start)
                if key not in seen:
                    command = open(f"/proc/{pid}/cmdline").read().replace("\0", " ").strip()
                    if not command:  # a kernel thread: its name
                        command = open(f"/proc/{pid}/comm").read().strip()
                    # Running before the sampling started: counted from now, not since it started.
                    seen[key] = [ticks if first else 0, kind(command)]
                counted, name = seen[key]
                if ticks > counted:
                    totals[name] += (ticks - counted) / HZ
                    seen[key][0] = ticks
            except (OSError, IndexError, ValueError):
                pass  # gone between the listing and the read
        first = False
        time.sleep(2)
    result = {
        "seconds": time.time() - started,
        "busy_core_s": busy_core_seconds() - busy,
        "by_kind": dict(totals.most_common()),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

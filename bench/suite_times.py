"""Where a test run's time went, per test file, from pytest's JUnit XML (``--junitxml``).

usage: python bench/suite_times.py RUN.xml [--cpu CPU.log] [--serial]

Prints one row per file: wall seconds (every phase of its tests: setup, call, teardown, which hold
its module fixtures), tests, and the slowest test. With ``--cpu`` (lines ``EPOCH cpu USER NICE
SYSTEM IDLE IOWAIT IRQ SOFTIRQ ...`` sampled from /proc/stat every few seconds during a serial run,
``--serial``) it also splits each file's wall time into CPU (the machine's busy core-seconds while
the file ran, un-niced work only) and waiting (the rest of the two cores' time).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import datetime


def _cpu_samples(path: str) -> list[tuple[float, float]]:
    """``(epoch, busy core-seconds so far)``: user + system + irq + softirq (not nice, idle, iowait)."""
    out = []
    hz = 100.0
    for line in open(path):
        parts = line.split()
        if len(parts) < 9 or parts[1] != "cpu":
            continue
        user, _nice, system, _idle, _iowait, irq, softirq = (int(x) for x in parts[2:9])
        out.append((float(parts[0]), (user + system + irq + softirq) / hz))
    return out


def _busy_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s[0] <= end]
    if not samples or samples[0][0] > start or len(inside) < 2:
        return None
    return inside[-1][1] - inside[0][1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("junit")
    parser.add_argument("--cpu")
    parser.add_argument("--serial", action="store_true")
    args = parser.parse_args()
    root = ET.parse(args.junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    clock = datetime.fromisoformat(suite.get("timestamp", "")).timestamp() if args.serial else 0.0
    files: dict[str, dict] = defaultdict(
        lambda: {"wall": 0.0, "tests": 0, "slowest": (0.0, ""), "span": None}
    )
    for case in suite.iter("testcase"):
        name = case.get("classname", "").replace(".", "/") + ".py"
        seconds = float(case.get("time", 0))
        entry = files[name]
        entry["wall"] += seconds
        entry["tests"] += 1
        entry["slowest"] = max(entry["slowest"], (seconds, case.get("name", "")))
        if args.serial:
            start = clock
            clock += seconds
            span = entry["span"]
            entry["span"] = (start if span is None else span[0], clock)
    samples = _cpu_samples(args.cpu) if args.cpu else []
    total = sum(e["wall"] for e in files.values())
    print(f"{'wall s':>8} {'cpu s':>7} {'wait s':>7} {'tests':>5}  file (slowest test)")
    for name, e in sorted(files.items(), key=lambda kv: -kv[1]["wall"]):
        cpu = _busy_between(samples, *e["span"]) if samples and e["span"] else None
        shown = (
            f"{cpu:7.0f} {max(2 * e['wall'] - cpu, 0) / 2:7.0f}" if cpu is not None else f"{'-':>7} {'-':>7}"
        )
        print(f"{e['wall']:8.1f} {shown} {e['tests']:5d}  {name} ({e['slowest'][1]} {e['slowest'][0]:.0f} s)")
    print(f"{total:8.1f} s in {sum(e['tests'] for e in files.values())} tests")


if __name__ == "__main__":
    main()

"""Where a test run's time went, per test file, from pytest's JUnit XML (``--junitxml``).

usage: python bench/suite_times.py RUN.xml [--cpu CPU.log --serial] [--before BASE.xml] [--write NOTE]

Prints one row per file: wall seconds (every phase of its tests: setup, call, teardown, which hold
its module fixtures), tests, and the slowest test. With ``--cpu`` (lines ``EPOCH cpu USER NICE
SYSTEM IDLE ...`` sampled from /proc/stat every few seconds during a serial run, ``--serial``) it
also splits each file's wall time into CPU (the machine's busy core-seconds while the file ran,
un-niced work only) and waiting (the rest of two cores' time, per core). With ``--before`` it puts
an earlier run's figures beside each file; ``--write NOTE`` writes the comparison into
bench/RESULTS.md (section "The test suite (issue 27)"), NOTE saying which runs these are.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


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


def read_run(path: str, serial: bool = False) -> tuple[dict[str, dict[str, Any]], float]:
    """``(file -> {wall, tests, slowest, span}, the session's wall seconds)``."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    clock = datetime.fromisoformat(suite.get("timestamp", "")).timestamp() if serial else 0.0
    files: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"wall": 0.0, "tests": 0, "slowest": (0.0, ""), "span": None}
    )
    for case in suite.iter("testcase"):
        name = case.get("classname", "").replace(".", "/") + ".py"
        seconds = float(case.get("time", 0))
        entry = files[name]
        entry["wall"] += seconds
        entry["tests"] += 1
        entry["slowest"] = max(entry["slowest"], (seconds, case.get("name", "")))
        if serial:
            start = clock
            clock += seconds
            span = entry["span"]
            entry["span"] = (start if span is None else span[0], clock)
    return dict(files), float(suite.get("time", 0))


def _markdown(files: dict, session: float, before: dict | None, before_session: float, note: str) -> str:
    rows = ["| file | before (s) | after (s) |", "|---|---:|---:|"]
    names = sorted(set(files) | set(before or {}), key=lambda n: -(files.get(n) or {"wall": 0})["wall"])
    unit_after = sum(e["wall"] for n, e in files.items() if n.startswith("tests/unit/"))
    unit_before = sum(e["wall"] for n, e in (before or {}).items() if n.startswith("tests/unit/"))
    for name in names:
        if name.startswith("tests/unit/"):
            continue
        was = (before or {}).get(name, {"wall": 0.0})["wall"]
        now = files.get(name, {"wall": 0.0})["wall"]
        rows.append(f"| `{name}` | {was:.0f} | {now:.0f} |")
    rows.append(f"| `tests/unit/` (all files) | {unit_before:.0f} | {unit_after:.0f} |")
    test_time = sum(e["wall"] for e in files.values())
    before_time = sum(e["wall"] for e in (before or {}).values())
    tests = sum(e["tests"] for e in files.values())
    before_tests = sum(e["tests"] for e in (before or {}).values())
    return (
        f"Written by `bench/suite_times.py` from two runs' `--junitxml`: {note}\n\n"
        f"- pytest's wall time: {before_session / 60:.1f} min before, {session / 60:.1f} min after.\n"
        f"- Test time, all files added up: {before_time:.0f} s before ({before_tests} tests), "
        f"{test_time:.0f} s after ({tests} tests); after, two workers run it side by side.\n\n"
        + "\n".join(rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("junit")
    parser.add_argument("--cpu")
    parser.add_argument("--serial", action="store_true")
    parser.add_argument("--before")
    parser.add_argument("--write", metavar="NOTE")
    args = parser.parse_args()
    files, session = read_run(args.junit, args.serial)
    before, before_session = read_run(args.before) if args.before else (None, 0.0)
    samples = _cpu_samples(args.cpu) if args.cpu else []
    total = sum(e["wall"] for e in files.values())
    print(f"{'wall s':>8} {'cpu s':>7} {'wait s':>7} {'before':>7} {'tests':>5}  file (slowest test)")
    for name, e in sorted(files.items(), key=lambda kv: -kv[1]["wall"]):
        cpu = _busy_between(samples, *e["span"]) if samples and e["span"] else None
        split = (
            f"{cpu:7.0f} {max(2 * e['wall'] - cpu, 0) / 2:7.0f}" if cpu is not None else f"{'-':>7} {'-':>7}"
        )
        was = f"{before[name]['wall']:7.0f}" if before and name in before else f"{'-':>7}"
        slowest = f"{e['slowest'][1]} {e['slowest'][0]:.0f} s"
        print(f"{e['wall']:8.1f} {split} {was} {e['tests']:5d}  {name} ({slowest})")
    print(
        f"{total:8.1f} s of test time in {sum(e['tests'] for e in files.values())} tests; session {session:.0f} s"
    )
    if args.write:
        from bench.results import write_section

        write_section(
            "The test suite (issue 27)", _markdown(files, session, before, before_session, args.write)
        )


if __name__ == "__main__":
    main()

"""Where a stage job's time goes: named phases, reported with the stage's result (``timings``).

A phase is timed with ``with phase("catalog load"): ...``; a phase entered again adds to its
total (and counts the times). :func:`report` gives seconds per phase, in the order they first
started, plus ``driver start`` (the driver process's creation to the stage runner's first line:
interpreter start-up and its imports) and ``total``. Imports nothing heavy; safe in any process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_phases: dict[str, list[float]] = {}
_started: list[float] = []


def start() -> None:
    """Mark the stage runner's start (and forget earlier phases: one stage per process)."""
    _phases.clear()
    _started[:] = [time.perf_counter(), _driver_start_s()]


@contextmanager
def phase(name: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        spent = _phases.setdefault(name, [0.0, 0])
        spent[0] += time.perf_counter() - began
        spent[1] += 1


def report() -> dict[str, float]:
    """Seconds per phase (``name xN`` when a phase ran N times), with ``driver start`` and ``total``."""
    out: dict[str, float] = {}
    if _started:
        out["driver start"] = round(_started[1], 3)
    for name, (seconds, times) in _phases.items():
        out[name if times == 1 else f"{name} x{times}"] = round(seconds, 3)
    if _started:
        out["total"] = round(_started[1] + time.perf_counter() - _started[0], 3)
    return out


def _driver_start_s() -> float:
    """Seconds since this process was created (0.0 where the OS does not say).

    On Linux from ``/proc/self/stat`` (start time in clock ticks since boot) against the boot-time
    clock; psutil's ``create_time`` adds the boot time, which Linux gives in whole seconds.
    """
    import os

    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0

"""What ``make test`` says about the run itself: skips under CI, and where the time went.

- Under ``CI=true`` a skip is a failure unless the test is in :data:`SKIP_ALLOWLIST`: a missing
  service (PostgreSQL, Java, chromium, SeaweedFS) must not turn whole suites green unseen. The
  failure keeps the skip's reason, which names what to install.
- Every run ends with the slowest test files, their time beside their budget in
  ``tests/README.md`` (a report, never a failure: no test asserts on wall time).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

#: Tests that may skip under CI, each with its reason: ``nodeid prefix -> why the skip is legitimate
#: on every CI machine``. Empty today: the GPU paths run on CPU by configuration and never skip.
SKIP_ALLOWLIST: dict[str, str] = {}

BUDGETS = Path(__file__).resolve().parents[1] / "README.md"
_BUDGET_ROW = re.compile(r"^\|\s*`(tests/[^`]+\.py)`\s*\|\s*(\d+)\s*\|")


def under_ci(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """``CI`` set to a true value (``true``, ``1``, ``yes``), as CI services set it."""
    return environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def allowed_skip(nodeid: str, allowlist: dict[str, str] = SKIP_ALLOWLIST) -> str | None:
    """The allowlist's reason for skipping ``nodeid``, or None when its skip must fail under CI."""
    nodeid = re.sub(r"@[\w-]+$", "", nodeid)  # pytest-xdist's group suffix, where it adds one
    for prefix, why in allowlist.items():
        if (
            nodeid == prefix
            or nodeid.startswith(prefix.rstrip(":") + "::")
            or nodeid.startswith(prefix + "[")
        ):
            return why
    return None


def skip_reason(longrepr: object) -> str:
    """The reason of a skip report (pytest keeps ``(path, line, "Skipped: reason")``)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def ci_skip_failure(nodeid: str, reason: str) -> str:
    return (
        f"{nodeid} skipped under CI=true: {reason}\n"
        "CI runs every test: install what the reason names (.ci/run installs the Debian packages), "
        "or add the test to SKIP_ALLOWLIST in tests/helpers/suite_report.py with why its skip is "
        "legitimate on every CI machine."
    )


def budgets(path: Path = BUDGETS) -> dict[str, int]:
    """``file -> seconds`` from the budget table in tests/README.md."""
    found: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            match = _BUDGET_ROW.match(line)
            if match:
                found[match.group(1)] = int(match.group(2))
    return found


class FileTimes:
    """Seconds spent per test file: every phase (setup, call, teardown) of its tests, which holds
    its module fixtures' start and stop too."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, nodeid: str, duration: float) -> None:
        self.seconds[nodeid.split("::", 1)[0]] += duration

    def slowest(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.seconds.items(), key=lambda kv: -kv[1])[:count]

    def lines(self, count: int = 15, budget: dict[str, int] | None = None) -> list[str]:
        budget = budgets() if budget is None else budget
        total = sum(self.seconds.values())
        out = [f"{'seconds':>8}  {'budget':>6}  file   (all files: {total:.0f} s of test time)"]
        for name, seconds in self.slowest(count):
            limit = budget.get(name)
            flag = "  OVER BUDGET" if limit is not None and seconds > limit else ""
            shown = f"{limit:>6}" if limit is not None else f"{'-':>6}"
            out.append(f"{seconds:8.1f}  {shown}  {name}{flag}")
        unbudgeted = sorted(n for n in self.seconds if n not in budget and n.startswith("tests/integration/"))
        if unbudgeted:
            out.append(f"integration files without a budget in tests/README.md: {', '.join(unbudgeted)}")
        return out


#: Files that must share a lane (one worker runs them one after the other), with why.
SAME_LANE: list[tuple[set[str], str]] = [
    (
        {"tests/integration/test_demo.py", "tests/integration/test_production_shape.py"},
        "both use the session's two `make demo` runs (tests/helpers/demo_runs.py): one worker runs them once",
    ),
]
#: Seconds assumed for a file without a budget: a unit file, or a new file not measured yet.
DEFAULT_SECONDS = {"tests/unit/": 2, "tests/integration/": 60}


def lanes(files: list[str], count: int, budget: dict[str, int] | None = None) -> dict[str, int]:
    """``file -> lane`` (0 .. count-1): the longest first, each to the lane with the least time so
    far, the files of a :data:`SAME_LANE` set as one. The same answer on every worker."""
    budget = budgets() if budget is None else budget

    def cost(name: str) -> int:
        if name in budget:
            return budget[name]
        return next((s for prefix, s in DEFAULT_SECONDS.items() if name.startswith(prefix)), 10)

    units: list[list[str]] = []
    placed: set[str] = set()
    for together, _why in SAME_LANE:
        unit = sorted(together & set(files))
        if unit:
            units.append(unit)
            placed.update(unit)
    units += [[name] for name in sorted(set(files) - placed)]
    units.sort(key=lambda unit: (-sum(cost(n) for n in unit), unit))
    load = [0] * count
    lane_of: dict[str, int] = {}
    for unit in units:
        lane = min(range(count), key=lambda i: (load[i], i))
        load[lane] += sum(cost(n) for n in unit)
        for name in unit:
            lane_of[name] = lane
    return lane_of


def lane_scheduler(config: Any, log: Any) -> Any:
    """An xdist scheduler whose work units are the :func:`lanes`: each worker runs one lane, its
    files whole and in collection order. (xdist's ``loadgroup`` would need ``xdist_group`` marks,
    which pytest 9.2 drops from node ids: pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):  # type: ignore[misc]
        lane_of: dict[str, int] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.lane_of is None:
                files = sorted({_file_of(n) for n in self.collection})
                self.lane_of = lanes(files, max(len(self.nodes), 1))
            return f"lane{self.lane_of[_file_of(nodeid)]}"

    return LaneScheduling(config, log)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def fast_jvm_options(existing: str | None) -> str:
    """``JAVA_TOOL_OPTIONS`` for the JVMs the tests start (spark-submit, local mode): the caller's
    options, plus C1-only JIT and the serial collector where the caller chose neither. (Two
    collectors on one command line stop the JVM: "multiple garbage collectors selected".)"""
    options = (existing or "").split()
    if not any(o.startswith("-XX:TieredStopAtLevel=") or o == "-XX:-TieredCompilation" for o in options):
        options.append("-XX:TieredStopAtLevel=1")
    if not any(o.startswith("-XX:+Use") and o.endswith("GC") for o in options):
        options.append("-XX:+UseSerialGC")
    return " ".join(options)

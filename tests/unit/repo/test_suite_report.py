"""What make test says about the run itself (tests/helpers/suite_report.py): a skip under CI=true
fails unless allowlisted, the time report and its budgets, and the lanes of the two workers."""

from __future__ import annotations

import pytest

from tests.helpers import suite_report
from tests.helpers.paths import REPO

SKIPPING = """
import pytest

def test_needs_a_service():
    pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql-15")

@pytest.mark.skipif(True, reason="no weed binary")
def test_marked():
    pass

def test_runs():
    assert True
"""
#: The inner run uses the suite's own hook, nothing else of tests/conftest.py.
INNER_CONFTEST = "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"


def _inner(pytester, monkeypatch, ci: str | None):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=SKIPPING)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_outside_ci_a_skip_is_a_skip(pytester, monkeypatch):
    _inner(pytester, monkeypatch, None).assert_outcomes(passed=1, skipped=2)


def test_under_ci_every_skip_fails_with_its_install_hint(pytester, monkeypatch):
    result = _inner(pytester, monkeypatch, "true")
    # A skip in the test body fails it; a skip at setup (a skipif mark, a fixture) is an error.
    result.assert_outcomes(passed=1, failed=1, errors=1)
    text = result.stdout.str()
    assert (
        "skipped under CI=true: PostgreSQL server binaries not found: apt-get install postgresql-15" in text
    )
    assert "skipped under CI=true: no weed binary" in text


MODULE_SKIP = """
import pytest

pytest.importorskip("a_module_nobody_installed")

def test_never_collected():
    pass
"""


def test_under_ci_a_module_skipped_at_collection_fails(pytester, monkeypatch):
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"
    )
    pytester.makepyfile(test_module_skip=MODULE_SKIP)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "skipped under CI=true: could not import 'a_module_nobody_installed'" in result.stdout.str()
    monkeypatch.delenv("CI")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=1)


def test_under_ci_an_allowlisted_skip_stays_a_skip(pytester, monkeypatch):
    monkeypatch.setitem(suite_report.SKIP_ALLOWLIST, "test_inner.py::test_marked", "legitimate everywhere")
    _inner(pytester, monkeypatch, "1").assert_outcomes(passed=1, failed=1, skipped=1)


@pytest.mark.parametrize(
    ("value", "ci"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("", False), ("false", False)],
)
def test_under_ci_reads_the_ci_variable(value, ci):
    assert suite_report.under_ci({"CI": value}) is ci


def test_allowed_skip_matches_a_test_and_its_parameters_not_a_prefix_of_its_name():
    allow = {"tests/a.py::test_gpu": "no GPU on CI"}
    assert suite_report.allowed_skip("tests/a.py::test_gpu", allow) == "no GPU on CI"
    assert suite_report.allowed_skip("tests/a.py::test_gpu[cuda]", allow) == "no GPU on CI"
    assert suite_report.allowed_skip("tests/a.py::test_gpu_other", allow) is None
    assert suite_report.allowed_skip("tests/a.py::test_cpu", allow) is None
    assert suite_report.allowed_skip("tests/b.py::test_x", {"tests/b.py": "whole file"}) == "whole file"
    # pytest-xdist's group suffix is not part of the test's name; an id with "@" in it stays whole.
    assert suite_report.allowed_skip("tests/a.py::test_gpu@lane1", allow) == "no GPU on CI"
    assert suite_report.allowed_skip("tests/a.py::test_gpu[a@b]", {"tests/a.py::test_gpu[a@b]": "x"}) == "x"


def test_every_integration_file_has_a_budget_and_every_budget_a_file():
    budget = suite_report.budgets()
    files = {str(p.relative_to(REPO)) for p in (REPO / "tests" / "integration").glob("test_*.py")}
    assert files <= set(budget), sorted(files - set(budget))
    assert set(budget) <= {str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")}


def test_a_file_over_two_minutes_says_why_in_its_docstring():
    import ast

    for name, seconds in suite_report.budgets().items():
        if seconds > 120:
            doc = ast.get_docstring(ast.parse((REPO / name).read_text())) or ""
            assert "Time:" in doc, f"{name} has a budget of {seconds} s: its docstring needs a 'Time:' note"


def test_the_time_report_flags_a_file_over_its_budget():
    times = suite_report.FileTimes()
    times.add("tests/integration/test_a.py::test_one", 50.0)
    times.add("tests/integration/test_a.py::test_two", 30.0)
    times.add("tests/integration/test_b.py::test_one", 10.0)
    lines = times.lines(budget={"tests/integration/test_a.py": 60, "tests/integration/test_b.py": 20})
    assert "80.0" in lines[1] and "test_a.py  OVER BUDGET" in lines[1]
    assert "test_b.py" in lines[2] and "OVER" not in lines[2]


def test_lanes_balance_by_budget_and_keep_same_lane_files_together(monkeypatch):
    monkeypatch.setattr(suite_report, "SAME_LANE", [({"c.py", "d.py"}, "share a service")])
    budget = {"a.py": 100, "b.py": 90, "c.py": 30, "d.py": 30, "e.py": 50}
    lane = suite_report.lanes(sorted(budget), 2, budget)
    assert lane["c.py"] == lane["d.py"]
    assert lane["a.py"] != lane["b.py"]
    loads = [sum(budget[f] for f in budget if lane[f] == i) for i in (0, 1)]
    assert loads == [150, 150]
    assert suite_report.lanes(sorted(budget), 2, budget) == lane  # the same on every worker


RECORDING = """
import os
from pathlib import Path

def test_{i}_one():
    Path("ran").mkdir(exist_ok=True)
    (Path("ran") / "{name}-one").write_text(os.environ["PYTEST_XDIST_WORKER"])

def test_{i}_two():
    (Path("ran") / "{name}-two").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_two_workers_run_whole_files_in_the_lanes_of_the_budgets(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # test_a and test_b share a lane: xdist's own file scheduling would send them to two workers
    # (a to the first, b to the second, then c and d), so a pass here needs the lane scheduler.
    pytester.makeconftest(
        "from tests.helpers import suite_report\n"
        "suite_report.SAME_LANE.append(({'test_a.py', 'test_b.py'}, 'the test pairs them'))\n"
        "from tests.conftest import pytest_configure  # noqa: E402, F401\n"
    )
    names = ["test_a", "test_b", "test_c", "test_d"]
    pytester.makepyfile(**{name: RECORDING.format(i=i, name=name) for i, name in enumerate(names)})
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    ran = {p.name: p.read_text() for p in (pytester.path / "ran").iterdir()}
    for name in names:
        assert ran[f"{name}-one"] == ran[f"{name}-two"], ran  # a file stays on one worker
    assert ran["test_a-one"] == ran["test_b-one"] != ran["test_c-one"] == ran["test_d-one"], ran
    pair = [({"test_a.py", "test_b.py"}, "the test pairs them")]
    monkeypatch.setattr(suite_report, "SAME_LANE", pair)
    expected = suite_report.lanes([f"{name}.py" for name in names], 2)
    by_lane = {lane: {ran[f"{n}-one"] for n in names if expected[f"{n}.py"] == lane} for lane in (0, 1)}
    assert all(len(workers) == 1 for workers in by_lane.values()), by_lane  # a lane is one worker
    assert by_lane[0] != by_lane[1]  # and the two lanes ran on the two workers


def test_the_tests_jvm_options_keep_a_collector_or_jit_the_caller_chose():
    assert suite_report.fast_jvm_options(None) == "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    assert suite_report.fast_jvm_options("-Xmx2g") == "-Xmx2g -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    assert suite_report.fast_jvm_options("-XX:+UseG1GC") == "-XX:+UseG1GC -XX:TieredStopAtLevel=1"
    assert suite_report.fast_jvm_options("-XX:+UseParallelGC -XX:TieredStopAtLevel=4") == (
        "-XX:+UseParallelGC -XX:TieredStopAtLevel=4"
    )

"""The job entry point (ray_operators.jobs.run_stage): a bad spec fails before Ray starts."""

from __future__ import annotations

from tests.helpers.stage_specs import stage_spec


def test_run_stage_rejects_a_bad_spec_before_starting_ray(capsys):
    from ray_operators.jobs.run_stage import main

    assert main(["--spec", stage_spec(stage="nope").encode()]) == 2
    assert "unknown stage 'nope'" in capsys.readouterr().err

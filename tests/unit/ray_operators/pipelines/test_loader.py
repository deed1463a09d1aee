"""Pipeline specs: the valid examples load, and every invalid spec fails at the right place.

Each invalid case marks its offending line with ``#!`` and names the token the column must point
at; the error must carry that file, line and column, the message, and the suggestion.
"""

from __future__ import annotations

import re

import pytest

from ray_operators.pipelines.errors import PipelineSpecError
from ray_operators.pipelines.loader import find_specs, load_pipeline
from tests.helpers.paths import EXAMPLES
from tests.helpers.specs import BASE

TRAIN = (
    BASE
    + """\
  - name: fit
    kind: train
    features: feat.events
    feature_columns: [x]
    label_column: y
    model_name: clf
    registry: ml.models
"""
)


# (id, yaml, token the column points at, message pattern, suggestion pattern or None)
INVALID = [
    (
        "unknown-top-key",
        BASE + "schedual: '@daily'  #!\n",
        "schedual",
        r"unknown key `schedual`",
        "did you mean `schedule`",
    ),
    (
        "unknown-stage-key",
        BASE + "    standardise: [x]  #!\n",
        "standardise",
        r"unknown key `standardise`",
        "did you mean `standardize`",
    ),
    (
        "unknown-resources-key",
        BASE + "    resources: {num_gpu: 1}  #!\n",
        "num_gpu",
        r"unknown key `num_gpu`",
        "did you mean `num_gpus`",
    ),
    (
        "unknown-transform-key",
        BASE + "    transforms:\n      - fn: mod:fn\n        batch_sise: 10  #!\n",
        "batch_sise",
        r"unknown key `batch_sise`",
        "did you mean `batch_size`",
    ),
    (
        "unknown-output-key",
        BASE.replace("    output: feat.events\n", "    output:\n      tabel: feat.events  #!\n"),
        "tabel",
        r"unknown key `tabel`",
        "did you mean `table`",
    ),
    (
        "bad-kind",
        BASE.replace("kind: preprocess", "kind: preprocss  #!"),
        "preprocss",
        r"unknown stage kind `preprocss`",
        "did you mean `preprocess`",
    ),
    (
        "missing-kind",
        BASE.replace("    kind: preprocess\n", "").replace("  - name: prep", "  - name: prep  #!"),
        "name",
        r"stage needs a `kind`",
        None,
    ),
    (
        "bad-mode",
        BASE.replace(
            "    output: feat.events\n", "    output:\n      table: feat.events\n      mode: apend  #!\n"
        ),
        "apend",
        r"`apend` is not allowed here; expected one of append, overwrite, upsert",
        "did you mean `append`",
    ),
    (
        "upsert-without-keys",
        BASE.replace(
            "    output: feat.events\n", "    output:\n      table: feat.events  #!\n      mode: upsert\n"
        ),
        "table",
        r"mode `upsert` needs `keys`",
        None,
    ),
    (
        "table-without-namespace",
        BASE.replace("input: raw.events", "input: events  #!"),
        "events",
        r"`events` is not valid here: a table is `namespace.table`",
        None,
    ),
    ("bad-cron", BASE + "schedule: every day  #!\n", "every", r"is not a cron expression", None),
    ("bad-preset", BASE + "schedule: '@daly'  #!\n", "'@daly'", r"unknown preset '@daly'", None),
    (
        "cron-and-on-snapshot",
        BASE + "schedule:\n  cron: '@daily'  #!\n  on_snapshot: [raw.events]\n",
        "cron",
        r"either `cron` or `on_snapshot`, not both",
        None,
    ),
    (
        "empty-on-snapshot",
        BASE + "schedule:\n  on_snapshot: []  #!\n",
        "on_snapshot",
        r"needs at least one table",
        None,
    ),
    (
        "duplicate-stage-name",
        BASE + "  - name: prep  #!\n    kind: preprocess\n    input: raw.events\n    output: feat.other\n",
        "prep",
        r"duplicate stage name `prep` \(first used by stage 1\)",
        None,
    ),
    (
        "depends-on-unknown",
        BASE
        + "  - name: prep2\n    kind: preprocess\n    depends_on: [prpe]  #!\n    input: raw.events\n    output: feat.b\n",
        "prpe",
        r"`depends_on` names no stage `prpe`",
        "did you mean `prep`",
    ),
    (
        "self-dependency",
        BASE.replace("    kind: preprocess\n", "    kind: preprocess\n    depends_on: prep  #!\n"),
        "prep  #!",
        r"stage `prep` depends on itself",
        None,
    ),
    (
        "cycle",
        BASE.replace("    kind: preprocess\n", "    kind: preprocess\n    depends_on: [b]  #!\n")
        + "  - name: b\n    kind: preprocess\n    depends_on: [prep]\n    input: raw.events\n    output: feat.b\n",
        "[b]",
        r"dependency cycle: prep -> b -> prep",
        None,
    ),
    (
        "train-without-features",
        TRAIN.replace("    features: feat.events\n", "").replace("  - name: fit", "  - name: fit  #!"),
        "name: fit",
        r"train stage `fit` has no `features` input",
        "add `features:",
    ),
    (
        "infer-without-model",
        BASE + "  - name: score  #!\n    kind: infer\n    input: feat.events\n    output: ml.preds\n",
        "name: score",
        r"infer stage `score` has no model",
        None,
    ),
    ("missing-name", BASE.replace("name: demo\n", "") + "#!\n", None, r"missing required key `name`", None),
    (
        "missing-start-date",
        "name: demo  #!\n" + BASE.split("\n", 2)[2],
        "name",
        r"missing required key `start_date`",
        None,
    ),
    (
        "bad-start-date",
        BASE.replace("start_date: 2026-01-01", "start_date: yesterday  #!"),
        "yesterday",
        r"start_date",
        None,
    ),
    ("negative-retries", BASE + "retries: -1  #!\n", "-1", r"greater than or equal to 0", None),
    ("bad-duration", BASE + "retry_delay: 5 minutes  #!\n", "5 minutes", r"is not a duration", None),
    ("no-stages", "name: demo\nstart_date: 2026-01-01\nstages: []  #!\n", "[]", r"at least 1 item", None),
    (
        "transform-path",
        BASE + "    transforms:\n      - fn: mymod.fn  #!\n",
        "mymod.fn",
        r"a transform is `package.module:function`",
        None,
    ),
    (
        "bad-batch-format",
        BASE + "    transforms:\n      - fn: mod:fn\n        batch_format: arrow  #!\n",
        "arrow",
        r"`arrow` is not allowed here",
        "did you mean `pyarrow`",
    ),
    (
        "actor-pool-order",
        BASE + "  - name: score\n    kind: infer\n    model: clf\n    registry: ml.models\n"
        "    input: feat.events\n    output: ml.preds\n    actors: {min_size: 3, max_size: 1}  #!\n",
        "{min_size",
        r"max_size \(1\) is smaller than min_size \(3\)",
        None,
    ),
    (
        "use-gpu-value",
        TRAIN + "    use_gpu: sometimes  #!\n",
        "sometimes",
        r"use_gpu",
        None,
    ),
    (
        "duplicate-yaml-key",
        BASE + "name: again  #!\n",
        "name",
        r"duplicate key 'name' \(first at line 1\)",
        None,
    ),
    (
        "invalid-yaml",
        BASE.replace("    input: raw.events\n", "    input: [raw.events  #!\n"),
        None,
        r"not valid YAML",
        None,
    ),
    (
        "unset-env-var",
        BASE.replace("input: raw.events", "input: ${RAY_LAKEHOUSE_TEST_UNSET}  #!"),
        "${RAY",
        r"environment variable RAY_LAKEHOUSE_TEST_UNSET is not set",
        "export RAY_LAKEHOUSE_TEST_UNSET",
    ),
    (
        "python-tag",
        BASE + "description: !!python/object/apply:os.system ['true']  #!\n",
        "!!python",
        r"YAML tag .* is not allowed",
        None,
    ),
    (
        "bad-stage-name",
        BASE.replace("  - name: prep", "  - name: pre-process  #!"),
        "pre-process",
        r"names start with a letter",
        None,
    ),
    (
        "sense-start-from",
        BASE + "  - name: wait\n    kind: sense\n    table: raw.events\n    start_from: lastest  #!\n",
        "lastest",
        r"`lastest` is not allowed here",
        "did you mean `latest`",
    ),
    ("zero-epochs", TRAIN + "    epochs: 0  #!\n", "0  #!", r"greater than or equal to 1", None),
    (
        "param-type",
        BASE + "params:\n  day:\n    type: str  #!\n",
        "str",
        r"`str` is not allowed here",
        "did you mean `string`",
    ),
    ("merge-key", BASE + "base: &b {owner: x}\nother:\n  <<: *b  #!\n", "<<", r"merge keys", None),
    ("not-a-mapping", "- name: demo  #!\n", "-", r"a pipeline spec is a mapping", None),
    (
        "csv-without-schema",
        BASE
        + "  - name: cur  #!\n    kind: curate\n    raw_paths: raw\n    format: csv\n    output: cur.t\n",
        "name",
        r"^`stages\[1\]`: format `csv` needs a `schema`",
        None,
    ),
    (
        "slice-without-interval",
        BASE.replace(
            "    output: feat.events\n",
            "    output:\n      table: feat.events\n      slice_column: day  #!\n",
        ),
        "day",
        r"`slice_column` needs a time-based schedule",
        None,
    ),
    (
        "bad-column-type",
        BASE + "  - name: cur\n    kind: curate\n    raw_paths: raw\n    format: csv\n"
        "    schema: {a: integr}  #!\n    output: cur.t\n",
        "integr",
        r"`integr` is not allowed here",
        None,
    ),
]


def _expected(text: str, token: str | None) -> tuple[int, int | None]:
    for number, line in enumerate(text.splitlines(), start=1):
        if "#!" in line:
            return number, (line.index(token) + 1 if token else None)
    raise AssertionError("case has no #! marker")


def test_the_corpus_is_big_enough():
    assert len(INVALID) >= 30
    assert len({case[0] for case in INVALID}) == len(INVALID)


@pytest.mark.parametrize(
    ("case", "text", "token", "message", "suggestion"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_spec_reports_file_line_column_message_and_suggestion(
    tmp_path, monkeypatch, case, text, token, message, suggestion
):
    monkeypatch.delenv("RAY_LAKEHOUSE_TEST_UNSET", raising=False)
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(PipelineSpecError) as err:
        load_pipeline(path)
    line, column = _expected(text, token)
    matching = [i for i in err.value.issues if re.search(message, i.message)]
    assert matching, f"no issue matches {message!r}: {[i.message for i in err.value.issues]}"
    issue = matching[0]
    assert issue.file == str(path)
    if case in ("missing-name", "not-a-mapping"):
        assert (issue.line, issue.column) == (1, 1)
    elif case == "invalid-yaml":
        assert issue.line >= line  # YAML reports where it noticed: at or after the open bracket
    else:
        assert (issue.line, issue.column) == (line, column), issue.format()
    if suggestion:
        assert issue.suggestion and suggestion in issue.suggestion
    # The formatted error shows the offending line with a caret under the column.
    shown = issue.format()
    assert shown.startswith(f"{path}:{issue.line}:{issue.column}: error: ")
    assert f"> {issue.line} |" in shown.replace(f"> {issue.line:>2} |", f"> {issue.line} |")


def test_every_error_in_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        BASE.replace("kind: preprocess", "kind: preprocess\n    standardise: [x]")
        + "schedual: '@daily'\nretries: -2\n"
    )
    with pytest.raises(PipelineSpecError) as err:
        load_pipeline(path)
    messages = [i.message for i in err.value.issues]
    assert any("standardise" in m for m in messages)
    assert any("schedual" in m for m in messages)
    assert any("greater than or equal to 0" in m for m in messages)
    assert [i.line for i in err.value.issues] == sorted(i.line for i in err.value.issues)


def test_reading_a_table_nothing_writes_or_watches_is_a_warning(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(TRAIN.replace("features: feat.events", "features: feat.event"))
    loaded = load_pipeline(path)
    warnings = [w for w in loaded.warnings if "feat.event`" in w.message]
    assert warnings and warnings[0].severity == "warning"
    assert warnings[0].line == 10 and "did you mean `feat.events`" in (warnings[0].suggestion or "")


def test_env_vars_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("RAW_NS", "landing")
    path = tmp_path / "sub" / "demo.yaml"
    path.parent.mkdir()
    path.write_text(
        "name: demo\nstart_date: 2026-01-01\nstages:\n"
        "  - name: cur\n    kind: curate\n    raw_paths: [../raw, s3://bucket/x, /abs]\n"
        "    output: ${RAW_NS}.logs\n    description: costs $${NOT_A_VAR}\n"
    )
    stage = load_pipeline(path).pipeline.stages[0]
    assert stage.output.table == "landing.logs"
    assert stage.raw_paths == [str((tmp_path / "raw").resolve()), "s3://bucket/x", "/abs"]
    assert stage.description == "costs ${NOT_A_VAR}"


def test_shipped_examples_are_valid_and_clean():
    specs = find_specs(EXAMPLES)
    assert {p.stem for p in specs} >= {"spark_logs", "lakehouse", "features_on_snapshot", "curate_samples"}
    for path in specs:
        loaded = load_pipeline(path)
        assert not loaded.warnings, [w.format() for w in loaded.warnings]
        assert loaded.pipeline.name == path.stem
